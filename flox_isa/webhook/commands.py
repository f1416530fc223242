"""`flox-isa` commands of the webhook component."""

from typing import Any


def register(commands: Any) -> None:
    """Add `flox-isa webhook` to the parser (not yet)."""


def register_explain_pod(targets: Any) -> None:
    """Add `flox-isa explain pod` to the parser (not yet)."""

"""`flox-isa` commands of the operator component."""

from typing import Any


def register(commands: Any) -> None:
    """Add this component's commands to the `flox-isa` parser (none yet)."""

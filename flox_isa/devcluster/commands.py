"""`flox-isa` commands of the devcluster component."""

from typing import Any


def register(commands: Any) -> None:
    """Add this component's commands to the `flox-isa` parser (none yet)."""

"""Reading the user's input files, with errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flox_isa.isa.catalog import Catalog, CatalogError, default_catalog, parse_catalog


class InputError(Exception):
    """Unreadable or malformed user input; the CLI prints it and exits 2."""


def read_text(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text") from None


def read_yaml(path: str | Path, what: str) -> Any:
    """YAML or JSON from a file."""
    try:
        return yaml.safe_load(read_text(path, what))
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {str(path)!r} is not valid YAML or JSON: {exc}") from None


def load_catalog(path: str | Path | None) -> Catalog:
    """The catalog in `path`, or the default catalog when no path is given."""
    if path is None:
        return default_catalog()
    try:
        return parse_catalog(read_text(path, "catalog"))
    except CatalogError as exc:
        raise InputError(f"{path}: {exc}") from None

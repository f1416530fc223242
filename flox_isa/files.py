"""Reading the user's input files, with errors that say what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

from flox_isa.isa.catalog import Catalog, CatalogError, default_catalog, parse_catalog
from flox_isa.isa.yamltext import MAX_CHARS, YamlTextError, load_documents, strip_bom


class InputError(Exception):
    """Unreadable or malformed user input; the CLI prints it and exits 2."""


STDIN: Final = "-"


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 text file, or standard input for "-" (a byte-order mark dropped), refused
    above the size limit."""
    try:
        if str(path) == STDIN:
            data = sys.stdin.buffer.read(MAX_CHARS + 1)
        else:
            with Path(path).open("rb") as file:
                data = file.read(MAX_CHARS + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_CHARS:
        raise InputError(
            f"{what} {str(path)!r} is larger than the limit of {MAX_CHARS // (1024 * 1024)} MiB"
        )
    try:
        return strip_bom(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text") from None


def read_documents(path: str | Path, what: str) -> list[Any]:
    """Every non-empty YAML (or JSON) document in a file."""
    try:
        return load_documents(read_text(path, what))
    except YamlTextError as exc:
        raise InputError(f"{what} {str(path)!r} {exc}") from None


def load_catalog(path: str | Path | None) -> Catalog:
    """The catalog in `path`, or the default catalog when no path is given."""
    if path is None:
        return default_catalog()
    try:
        return parse_catalog(read_text(path, "catalog"))
    except CatalogError as exc:
        raise InputError(f"{path}: {exc}") from None

"""YAML/JSON text -> documents, with limits: the one YAML reader of every input file.

Pure (text in, values out). A byte-order mark is dropped; empty documents are
skipped; nesting deeper than MAX_DEPTH, more than MAX_VALUES values (alias bombs)
or text over MAX_CHARS is refused with a message that says which limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import yaml

MAX_CHARS: Final = 128 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_VALUES: Final = 5_000_000
BOM: Final = "\ufeff"


class YamlTextError(ValueError):
    """Text that is not YAML/JSON within the limits; the message is one line."""


def strip_bom(text: str) -> str:
    return text.removeprefix(BOM)


def load_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML (or JSON) stream."""
    if len(text) > MAX_CHARS:
        raise YamlTextError(
            f"is {len(text) // (1024 * 1024)} MiB; the limit is {MAX_CHARS // (1024 * 1024)} MiB"
        )
    try:
        documents = [d for d in yaml.safe_load_all(strip_bom(text)) if d is not None]
    except yaml.YAMLError as exc:
        raise YamlTextError(f"is not valid YAML or JSON: {_one_line(exc)}") from None
    except RecursionError:
        raise YamlTextError(f"is nested too deeply (the limit is {MAX_DEPTH} levels)") from None
    for document in documents:
        check_limits(document)
    return documents


def load_one(text: str) -> Any:
    """The one document of `text` (None when it is empty)."""
    documents = load_documents(text)
    if len(documents) > 1:
        raise YamlTextError(f"holds {len(documents)} YAML documents; expected one")
    return documents[0] if documents else None


def check_limits(value: object) -> None:
    """Refuse values nested deeper than MAX_DEPTH or with more than MAX_VALUES parts."""
    stack: list[tuple[object, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise YamlTextError(f"holds more than {MAX_VALUES} values (YAML aliases?)")
        if isinstance(item, str):
            _check_encodable(item)
            continue
        if isinstance(item, Mapping):
            children: list[object] = [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if depth >= MAX_DEPTH and children:
            raise YamlTextError(f"is nested too deeply (the limit is {MAX_DEPTH} levels)")
        stack.extend((child, depth + 1) for child in children)


def _check_encodable(text: str) -> None:
    """A `\\ud800` escape in JSON or YAML yields a lone surrogate: not text any model takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise YamlTextError(
            f"holds a string that is not valid Unicode (a lone surrogate escape): {text[:40]!r}"
        ) from None


def field_name(part: object) -> str:
    """A key or index as it reads in a one-line message (odd keys quoted, e.g. '\\n')."""
    text = str(part)
    return text if text and text.isprintable() and " " not in text else repr(text)


def _one_line(exc: yaml.YAMLError) -> str:
    return " ".join(str(exc).split())

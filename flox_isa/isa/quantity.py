"""Kubernetes resource quantities ("500m", "2Gi", "1e3"): one parser for every reader."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

_QUANTITY: Final = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"
)
_SUFFIX: Final = {
    None: Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}  # fmt: skip


def parse_quantity(value: object) -> Decimal:
    """The value of a quantity (an int or float is taken as written); ValueError if malformed."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from None


def quantity_or_none(value: object) -> Decimal | None:
    try:
        return parse_quantity(value)
    except ValueError:
        return None

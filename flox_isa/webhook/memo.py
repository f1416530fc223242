"""A bounded memo: the oldest entry goes when a new one would exceed the size."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def bounded_put(memo: OrderedDict[_K, _V], key: _K, value: _V, size: int) -> None:
    """`memo[key] = value`, dropping the oldest entry first when `memo` holds `size`.

    One at a time: clearing a full memo at once paused the webhook (~0.1 s for 4,096
    answers). An OrderedDict, as a dict's oldest entry is found by scanning past the
    entries deleted before it."""
    if key not in memo and len(memo) >= size:
        memo.popitem(last=False)
    memo[key] = value

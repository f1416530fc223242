"""A debouncing work queue of TicketWorker keys (client-go's workqueue, in asyncio).

A key added several times before it is due is processed once; a key never
runs twice at once (added while running, it runs again after); failures
come back with exponential backoff. Bursts of node events thus become one
reconcile per TicketWorker.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, backoff_base: float = 0.5, backoff_max: float = 60.0) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._running: set[K] = set()
        self._again: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._wakeup = asyncio.Event()
        self._seq = 0
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K, delay: float = 0.0) -> None:
        """Schedule `key` in `delay` seconds, unless it is already due sooner."""
        at = self._now() + delay
        if key in self._running:
            self._again[key] = min(at, self._again.get(key, at))
            return
        if key in self._due and self._due[key] <= at:
            return
        self._due[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        self._wakeup.set()

    def forget(self, key: K) -> None:
        """Drop a key (its object is gone): pending runs and its failure count."""
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next due key, marked running until `done`."""
        while True:
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # superseded or forgotten entry
            if self._heap and self._heap[0][0] <= self._now():
                _, _, key = heapq.heappop(self._heap)
                del self._due[key]
                self._running.add(key)
                return key
            self._wakeup.clear()
            timeout = self._heap[0][0] - self._now() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def done(self, key: K, *, failed: bool = False) -> float | None:
        """Finish a run; a failed key comes back after its backoff (returned)."""
        self._running.discard(key)
        again = self._again.pop(key, None)
        backoff = None
        if failed:
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            backoff = min(self._backoff_max, self._backoff_base * 2 ** (count - 1))
            self.add(key, backoff)
        else:
            self._failures.pop(key, None)
        if again is not None:
            self.add(key, max(0.0, again - self._now()))
        return backoff

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

"""Is the placement controller alive? Judged from its Lease, on the reader's own clock.

The placement loop renews the Lease `flox-isa-placement` only while its caches are
synced and it makes progress. The webhook polls that one Lease (RBAC: `get` on it by
name) and gates pods only while it saw the record change within the Lease's duration,
measured by its own monotonic clock (never by the writer's timestamps: clocks skew).
Hysteresis: gating starts after two changes seen (a renewal observed, not a stale
record left behind), and stops once no change was seen for a whole duration.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flox_isa.isa import names

log = logging.getLogger("flox_isa.heartbeat")

CHANGES_TO_TRUST = 2
NOT_FOUND = 404


@dataclass
class Heartbeat:
    """Pure: feed it the Lease records seen and the reader's clock; ask `alive`."""

    duration: float
    _last: Hashable | None = None
    _changed_at: float | None = None
    _changes: int = 0

    def observe(self, record: Hashable | None, now: float) -> None:
        """A poll's result: the record (None: no Lease, or not our protocol)."""
        if record is None:
            self._last, self._changed_at, self._changes = None, None, 0
            return
        if record != self._last:
            if self._changed_at is not None and now - self._changed_at > self.duration:
                self._changes = 0  # it went stale: trust must be earned again
            self._last, self._changed_at = record, now
            self._changes += 1

    def alive(self, now: float) -> bool:
        if self._changed_at is None or now - self._changed_at > self.duration:
            return False
        return self._changes >= CHANGES_TO_TRUST


def lease_record(lease: Mapping[str, Any]) -> Hashable | None:
    """What changes on each renewal, if the Lease speaks our placement protocol."""
    metadata = lease.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if annotations.get(names.PLACEMENT_PROTOCOL_ANNOTATION) != names.PLACEMENT_PROTOCOL:
        return None
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return None  # released: the controller has stopped
    return (spec.get("holderIdentity"), spec.get("renewTime"), metadata.get("resourceVersion"))


@dataclass
class LeaseWatcher:
    """Polls one Lease in a daemon thread; `alive()` is safe to call from any thread."""

    read: Callable[[], Mapping[str, Any] | None]  # None: the Lease does not exist
    duration: float
    poll: float = 1.0
    on_change: Callable[[bool], None] = lambda alive: None
    _beat: Heartbeat = field(init=False)
    _alive: bool = field(init=False, default=False)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _thread: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._beat = Heartbeat(self.duration)

    def alive(self) -> bool:
        return self._alive

    def check(self) -> bool:
        """One poll; the new verdict."""
        try:
            lease = self.read()
            record = lease_record(lease) if lease is not None else None
        except Exception as exc:  # a failed poll is "not seen changing"
            log.warning("placement lease poll failed", extra={"fields": {"error": repr(exc)}})
        else:
            self._beat.observe(record, time.monotonic())
        alive = self._beat.alive(time.monotonic())
        if alive != self._alive:
            self._alive = alive
            log.info(
                "late binding " + ("on" if alive else "off"),
                extra={"fields": {"placementControllerAlive": alive}},
            )
            self.on_change(alive)
        return alive

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="placement-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self.check()
            if self._stop.wait(self.poll):
                return


def lease_reader(
    api_client: Any, namespace: str, name: str
) -> Callable[[], Mapping[str, Any] | None]:
    """A GET of one Lease as plain JSON; None when it does not exist."""
    from kubernetes import client  # noqa: PLC0415 - only the webhook's command needs it
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    coordination = client.CoordinationV1Api(api_client)

    def read() -> Mapping[str, Any] | None:
        try:
            response = coordination.read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=5
            )
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise
        lease: Mapping[str, Any] = json.loads(response.data)  # type: ignore[attr-defined]
        return lease

    return read

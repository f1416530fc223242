"""Leader election on a coordination.k8s.io Lease, the way client-go does it.

One replica holds the Lease and renews it every `retry` seconds; the others
poll. A holder that cannot renew within `renew_deadline` gives up (and must
stop acting) before the Lease can expire for the others (`duration`), so two
replicas never act at once. On a clean exit the holder releases the Lease and
a standby takes over at its next poll instead of waiting for expiry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flox_isa.kube.rest import REQUEST_ERRORS, ApiError, Rest

log = logging.getLogger("flox_isa.lease")

CONFLICT = 409
NOT_FOUND = 404


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0
    annotations: Mapping[str, str] = field(default_factory=dict)  # kept on the Lease


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    """MicroTime, as the API server wants it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def can_take(spec: Mapping[str, Any], identity: str, now: dt.datetime) -> bool:
    """May `identity` take or renew a Lease with this spec? Pure."""
    holder = spec.get("holderIdentity") or ""
    if not holder or holder == identity:
        return True
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = float(spec.get("leaseDurationSeconds") or 0)
    return renewed is None or now >= renewed + dt.timedelta(seconds=duration)


def taken_spec(spec: Mapping[str, Any], config: LeaseConfig, now: dt.datetime) -> dict[str, Any]:
    """The spec after `config.identity` takes or renews the Lease. Pure."""
    renewing = spec.get("holderIdentity") == config.identity
    stamp = format_time(now)
    return {
        "holderIdentity": config.identity,
        "leaseDurationSeconds": round(config.duration),
        "acquireTime": spec.get("acquireTime") if renewing else stamp,
        "renewTime": stamp,
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if renewing else 1),
    }


class LeaderElector:
    """`await acquire()` blocks until leader; `await hold()` returns when leadership is lost."""

    def __init__(self, api: Rest, config: LeaseConfig) -> None:
        self.api = api
        self.config = config
        self._path = (
            f"/apis/coordination.k8s.io/v1/namespaces/{config.namespace}/leases/{config.name}"
        )
        # Event-loop time of the last Lease request that reached the API server (taken or
        # not): what readiness reads, leader and standby alike.
        self.last_contact: float | None = None

    async def try_take(self) -> bool:
        """One attempt to take or renew; optimistic concurrency via resourceVersion."""
        now = now_utc()
        try:
            lease = await self.api.get(self._path)
        except ApiError as exc:
            if exc.status != NOT_FOUND:
                raise
            return await self._create(now)
        spec = lease.get("spec") or {}
        if not can_take(spec, self.config.identity, now):
            return False
        lease["spec"] = taken_spec(spec, self.config, now)
        if self.config.annotations:
            metadata = lease.setdefault("metadata", {})
            metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                       **self.config.annotations}  # fmt: skip
        try:
            await self.api.put(self._path, lease)
        except ApiError as exc:
            if exc.status == CONFLICT:
                return False  # someone else wrote it first
            raise
        return True

    async def _create(self, now: dt.datetime) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.config.name,
                "namespace": self.config.namespace,
                "annotations": dict(self.config.annotations),
            },
            "spec": taken_spec({}, self.config, now),
        }
        try:
            await self.api.post(self._path.rsplit("/", 1)[0], body)
        except ApiError as exc:
            if exc.status == CONFLICT:
                return False
            raise
        return True

    async def acquire(self) -> None:
        log.info(
            "waiting for leadership",
            extra={"lease": self.config.name, "identity": self.config.identity},
        )
        while not await self._attempt():
            await asyncio.sleep(self.config.retry)
        log.info(
            "became leader", extra={"lease": self.config.name, "identity": self.config.identity}
        )

    async def hold(self) -> None:
        """Renew until a renewal has failed for `renew_deadline` seconds, then return."""
        last = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.config.retry)
            loop_now = asyncio.get_running_loop().time()
            if await self._attempt():
                last = loop_now
            elif loop_now - last >= self.config.renew_deadline:
                log.error(
                    "lost leadership: could not renew the lease", extra={"lease": self.config.name}
                )
                return

    async def release(self) -> None:
        """Hand the Lease over at once (only if we still hold it)."""
        try:
            lease = await self.api.get(self._path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.config.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1}
            await self.api.put(self._path, lease)
            log.info("released leadership", extra={"lease": self.config.name})
        except REQUEST_ERRORS as exc:
            log.warning("could not release the lease: %s", exc)

    async def _attempt(self) -> bool:
        try:
            taken = await self.try_take()
        except REQUEST_ERRORS as exc:
            log.warning("lease request failed: %s", exc)
            return False
        self.last_contact = asyncio.get_running_loop().time()
        return taken

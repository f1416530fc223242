"""The reconcile loop: caches, a work queue, and the writes (`operator.writes`).

kopf keeps the watches and in-memory indexes of TicketWorkers and managed
Deployments; the node inventory (kube.inventory, a plain list+watch shared
with the webhook) publishes the fleet grouped by look-alike nodes. Every
change enqueues the TicketWorker keys it may affect; workers reconcile each
key level-based from the caches: decide (pure), write, publish status.
Reconciling an unchanged world makes no request at all.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import functools
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from flox_isa.isa.catalog import Catalog
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.fleet import FeatureGroup
from flox_isa.isa.fleet_index import FleetIndex
from flox_isa.isa.planning import eligible_groups
from flox_isa.isa.replan import Memory
from flox_isa.kube.rest import REQUEST_ERRORS, Rest
from flox_isa.operator.capacity import Rooms
from flox_isa.operator.diff import Action, Create, describe
from flox_isa.operator.placement import Planner
from flox_isa.operator.reconcile import (
    APPLY_FAILED,
    Capacity,
    Decision,
    build_status,
    decide,
    move_message,
    status_changed,
)
from flox_isa.operator.render import Owner
from flox_isa.operator.writes import (
    NAMESPACE_TERMINATING_SKIP,
    ForeignDeploymentError,
    Writer,
    namespace_terminating,
    send_event,
    ticketworker_event,
)

log = logging.getLogger("flox_isa.operator")

Key = tuple[str, str]  # (namespace, TicketWorker name)


class IndexView(Protocol):
    """A kopf index (read side): key -> store of values."""

    def get(self, key: Any, default: Any = None) -> Any: ...

    def __iter__(self) -> Any: ...


@dataclass
class Settings:
    catalog: Catalog
    identity: str = "flox-isa-operator"
    workers: int = 16  # reconciles are I/O-bound: 16 in flight halve a fleet-change burst vs 8
    debounce: float = 0.05  # coalesce the events of one write burst
    fleet_debounce: float = 0.1  # coalesce node churn; a longer burst costs reconciles, not writes
    status_debounce: float = 1.0  # coalesce rollout progress into one status write
    capacity_debounce: float = 5.0  # coalesce other pods' churn (the room) into one re-plan
    resync: float = 300.0  # re-check everything now and then (drift we cannot watch)
    growable: frozenset[str] | None = None  # variants whose pools can grow (None: all)


@dataclass
class Stats:
    reconciles: int = 0
    writes: int = 0
    failures: int = 0
    last_write: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    # "namespace/name" of the TicketWorkers whose last written status says Degraded=True.
    degraded: set[str] = field(default_factory=set)


class Controller:
    def __init__(self, settings: Settings, api: Rest) -> None:
        self.settings = settings
        self.api = api
        self.fleet = FleetIndex()
        self.queue: Any = None  # a WorkQueue, made in the running loop by start()
        self.synced = asyncio.Event()  # kopf has listed TicketWorkers and Deployments
        self.fleet_listed = asyncio.Event()  # the node inventory has listed the Nodes
        self.stats = Stats()
        self._ticketworkers: IndexView | None = None
        self._deployments: IndexView | None = None
        # Deployments we created that the index has not shown yet (client-go's
        # expectations): key -> name -> (created at, as the API server returned it).
        # Without them a reconcile in the watch's lag creates each one again.
        self._unseen: dict[Key, dict[str, tuple[float, dict[str, Any]]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self.writer = Writer(api)
        # Capacity-aware planning (None: room-blind, as before it): the room, and what
        # calm re-planning remembers per TicketWorker.
        self.capacity: Planner | None = None
        self.capacity_synced: asyncio.Event | None = None
        self.rooms: Rooms | None = None
        self._memory: dict[Key, Memory] = {}

    # -- fed by kopf handlers -------------------------------------------------------------

    def attach(self, ticketworkers: IndexView, deployments: IndexView) -> None:
        self._ticketworkers = ticketworkers
        self._deployments = deployments

    def attach_capacity(self, planner: Planner, synced: asyncio.Event) -> None:
        """Plan by the room `planner` accounts (its pod watch sets `synced` once listed)."""
        self.capacity = planner
        self.capacity_synced = synced
        self.rooms = Rooms(planner, self.settings.catalog)
        planner.pod_listeners.append(self.pod_changed)

    def pod_changed(self, key: Key | None) -> None:
        """A pod changed: a TicketWorker's own (its status, at once), and the room of all."""
        if key is not None and self._ticketworkers is not None and self.ticketworker(key):
            self._enqueue(key, self.settings.status_debounce)
        for other in self.keys():
            self._enqueue(other, self.settings.capacity_debounce)

    def fleet_changed(self, fleet: FleetIndex) -> None:
        """A new fleet snapshot (only when something a decision reads changed)."""
        self.fleet = fleet
        self.fleet_listed.set()
        for key in self.keys():
            self._enqueue(key, self.settings.fleet_debounce)

    def ticketworker_changed(self, key: Key) -> None:
        self._enqueue(key, self.settings.debounce)

    def ticketworker_gone(self, key: Key) -> None:
        self._memory.pop(key, None)
        if self.rooms is not None:
            self.rooms.forget(key)
        if self.queue is not None:
            self.queue.forget(key)
        log.info("ticketworker deleted; the garbage collector removes its Deployments",
                 extra={"ticketworker": "/".join(key)})  # fmt: skip

    def deployment_changed(
        self, key: Key, *, status_only: bool = False, name: str = "", version: str = ""
    ) -> None:
        """Spec edits and deletions are drift: react at once; rollout progress can wait,
        and so can the echo of our own write (`version` is what we wrote)."""
        self._unseen.get(key, {}).pop(name, None)  # the index has caught up with it
        echo = self.writer.echo(key[0], name, version)
        quick = not (status_only or echo)
        self._enqueue(key, self.settings.debounce if quick else self.settings.status_debounce)

    def _enqueue(self, key: Key, delay: float) -> None:
        if self.queue is not None:
            self.queue.add(key, delay)

    def keys(self) -> list[Key]:
        return list(self._ticketworkers or ())

    # -- workers --------------------------------------------------------------------------

    def start(self) -> None:
        from flox_isa.operator.workqueue import WorkQueue  # noqa: PLC0415 - needs a running loop

        self.queue = WorkQueue[Key]()
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.settings.workers)]
        self._tasks.append(asyncio.create_task(self._resync()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync)
            for key in self.keys():
                self._enqueue(key, 0.0)

    async def _worker(self, number: int) -> None:
        await self.synced.wait()
        await self.fleet_listed.wait()
        if self.capacity_synced is not None:
            await self.capacity_synced.wait()
        while True:
            key = await self.queue.get()
            failed = False
            try:
                await self.reconcile(key)
            except RETRYABLE as exc:
                failed = True
                log.warning(
                    "reconcile failed, will retry: %s", exc, extra={"ticketworker": "/".join(key)}
                )
            except Exception:
                failed = True
                log.exception(
                    "reconcile crashed, will retry", extra={"ticketworker": "/".join(key)}
                )
            finally:
                backoff = self.queue.done(key, failed=failed)
                if failed:
                    self.stats.failures += 1
                    log.info("retrying in %.1fs", backoff, extra={"ticketworker": "/".join(key)})

    # -- one reconcile --------------------------------------------------------------------

    def groups_for(self, constraints: Constraints) -> tuple[FeatureGroup, ...]:
        """Eligible node groups (remembered by the fleet index, per fleet version)."""
        return eligible_groups(self.fleet, constraints)

    def ticketworker(self, key: Key) -> dict[str, Any] | None:
        store = self._ticketworkers.get(key) if self._ticketworkers is not None else None
        return next(iter(store), None) if store is not None else None

    def deployments(self, key: Key) -> dict[str, dict[str, Any]]:
        """The TicketWorker's Deployments: the index's, and those we created that it has
        not shown yet (for at most UNSEEN_SECONDS)."""
        store = self._deployments.get(key) if self._deployments is not None else None
        found = {d["metadata"]["name"]: d for d in (store or ())}
        unseen = self._unseen.get(key)
        if unseen:
            now = time.monotonic()
            for name, (created, written) in list(unseen.items()):
                if name in found or now - created > UNSEEN_SECONDS:
                    del unseen[name]
                else:
                    found[name] = written
            if not unseen:
                del self._unseen[key]
        return found

    async def reconcile(self, key: Key) -> None:
        tw = self.ticketworker(key)
        if tw is None or (tw.get("metadata") or {}).get("deletionTimestamp"):
            return
        self.stats.reconciles += 1
        actual = self.deployments(key)
        capacity = None
        if self.capacity is not None and self.rooms is not None:
            capacity = Capacity(
                functools.partial(self.rooms.room_for, key),
                tuple(self.capacity.owned.get(key, {}).values()),
                self._memory.get(key, Memory()),
                dt.datetime.now(dt.UTC),
                self.settings.growable,
            )
        decision = decide(tw, self.settings.catalog, self.groups_for, actual, capacity)
        if decision.memory is not None:
            self._memory[key] = decision.memory
        if self.rooms is not None and decision.room is not None and decision.plan is not None:
            assert decision.spec is not None
            demand = decision.spec.template.spec.demand()
            planned = {s.variant.name: s.replicas for s in decision.plan.shares}
            self.rooms.claim(key, decision.room, planned, demand)
        if decision.recheck is not None:
            self._enqueue(key, decision.recheck)
        # One TicketWorker's Deployments are independent: write them concurrently.
        outcomes = await asyncio.gather(
            *(self._write(decision.owner, a) for a in decision.actions), return_exceptions=True
        )
        refused = sum(namespace_terminating(o) for o in outcomes)
        if refused:  # creates its namespace's deletion refused: no status, no retry
            log.info(NAMESPACE_TERMINATING_SKIP, extra={"ticketworker": "/".join(key),
                                                        "writes": refused})  # fmt: skip
            return
        failures: list[str] = []
        transient: list[BaseException] = []
        done: dict[str, list[str]] = {}
        for action, outcome in zip(decision.actions, outcomes, strict=True):
            if isinstance(outcome, RETRYABLE):
                failures.append(
                    str(outcome)
                    if isinstance(outcome, ForeignDeploymentError)
                    else f"{type(action).__name__.lower()} Deployment {action.name}: {outcome}"
                )
                transient.append(outcome)  # retried with backoff
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            self._written(key, action, outcome, actual)
            reason, message = describe(action, decision.summary)
            log.info(message, extra={"ticketworker": "/".join(key), "reason": reason})
            done.setdefault(reason, []).append(message)
        for reason, messages in done.items():  # one Event per kind of change, not per write
            event = self._event(decision.owner, "Normal", reason, "; ".join(messages),
                                after=self.settings.status_debounce)  # fmt: skip
            self._background(event)
        if transient:
            await self._publish(tw, decision, actual, failures)
            raise transient[0]
        if decision.moves and decision.spec is not None:
            bound = decision.spec.replan.unschedulable_seconds
            for move in decision.moves:
                message = move_message(move, decision.room, bound)
                log.info(message, extra={"ticketworker": "/".join(key), "reason": "Moved"})
                self._background(self._event(decision.owner, "Normal", "MovedReplicas", message))
        if done:
            # A burst of writes (a fleet change touches every TicketWorker) goes first;
            # the status follows once it has settled, from the next reconcile.
            self._enqueue(key, self.settings.status_debounce)
            return
        await self._publish(tw, decision, actual, failures)

    def _written(
        self,
        key: Key,
        action: Action,
        outcome: dict[str, Any] | None,
        actual: dict[str, dict[str, Any]],
    ) -> None:
        """Take a write's outcome (the object now, None: deleted) into what we know."""
        if outcome is None:
            actual.pop(action.name, None)
            self._unseen.get(key, {}).pop(action.name, None)
            return
        actual[action.name] = outcome
        if isinstance(action, Create):
            self._unseen.setdefault(key, {})[action.name] = (time.monotonic(), outcome)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Events are best effort: post them without holding up the reconcile."""
        task = asyncio.create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, owner: Owner, action: Action) -> dict[str, Any] | None:
        """Make one write; the object as the API server now has it (None: deleted)."""
        self.stats.writes += 1
        self.stats.last_write = time.monotonic()
        kind = type(action).__name__
        self.stats.counts[kind] = self.stats.counts.get(kind, 0) + 1
        return await self.writer.deployment(owner, action)

    async def _publish(
        self,
        tw: Mapping[str, Any],
        decision: Decision,
        actual: Mapping[str, Mapping[str, Any]],
        failures: list[str],
    ) -> None:
        previous = tw.get("status") or {}
        status = build_status(decision, actual, previous, _now(), failures)
        if not status_changed(status, previous):
            return
        owner = decision.owner
        if not await self.writer.status(owner, status, previous):
            return  # deleted meanwhile
        self.stats.writes += 1
        key = f"{owner.namespace}/{owner.name}"
        if _condition(status, "Degraded").get("status") == "True":
            self.stats.degraded.add(key)
        else:
            self.stats.degraded.discard(key)
        self._background(self._degraded_event(owner, previous, status))

    async def _degraded_event(
        self, owner: Owner, previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        """A Warning Event when Degraded turns True or its message changes."""
        new = _condition(status, "Degraded")
        old = _condition(previous, "Degraded")
        if new.get("status") != "True":
            return
        if old.get("status") == "True" and old.get("message") == new.get("message"):
            return
        await self._event(
            owner, "Warning", str(new.get("reason") or APPLY_FAILED), str(new.get("message") or "")
        )

    async def _event(
        self, owner: Owner, kind: str, reason: str, message: str, *, after: float = 0.0
    ) -> None:
        """Post an Event; `after` seconds late when it must not compete with a burst of writes."""
        request = ticketworker_event(
            owner, kind, reason, message, self.settings.identity, stamp=_now()
        )
        await asyncio.sleep(after)
        await send_event(self.api, request)


RETRYABLE: Final = (ForeignDeploymentError, *REQUEST_ERRORS)
# How long a Deployment we created stands in for the index's view of it (the watch lags
# seconds behind a loaded API server; past this the index is trusted again).
UNSEEN_SECONDS: Final = 60.0


def snapshot(
    body: Mapping[str, Any], keep: Iterable[str] = ("metadata", "spec", "status")
) -> dict[str, Any]:
    """A plain, private copy of what we read of an object (kopf's bodies are live views)."""
    return {
        k: copy.deepcopy(dict(body[k]) if isinstance(body[k], Mapping) else body[k])
        for k in keep
        if k in body
    }


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""The placement controller: each gated pod gets the best allowed variant that has room.

Its own loop in the operator process (leader only), on the operator's API client
(`Rest`): one pod list+watch over every namespace feeds the capacity ledger
(`isa.capacity`) and the pods gated by us; the node inventory feeds the fleet. Pods
whose only gate left is ours are placed in order of priority, then age: for each,
`isa.placement.place` picks the variant, its room is reserved at once (client-go's
"expectations": written, not yet seen), and one PUT with the read resourceVersion
pins the pod and removes the gate. A refused write releases the reservation; the
watch brings the pod's new version back. After a relist (a new leader) the ledger is
rebuilt from the API alone: ungated, unbound pinned pods are reserved again.

The Lease `flox-isa-placement` is renewed by this loop only while its caches are
synced and it makes progress: the webhook gates pods only while it sees that
(`kube.heartbeat`), so a stopped controller never leaves new pods gated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flox_isa.isa import names
from flox_isa.isa.capacity import Ledger, Resources, effective_request
from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.constraints import Constraints, constraints_of
from flox_isa.isa.contract import (
    is_environment,
    pinned_candidates,
    read_generations,
    widest_allowed,
)
from flox_isa.isa.fleet_index import FleetIndex, NodeMember, index_nodes
from flox_isa.isa.inputs import ConflictError, InvalidInputError, parse_variants, parse_workload
from flox_isa.isa.nodes import node_state
from flox_isa.isa.offer import Offer, OfferIndex
from flox_isa.isa.placement import (
    DEFAULT_WHEN_FULL,
    Placement,
    RoomProbe,
    WhenFull,
    as_admission,
    parse_when_full,
    place,
    placement_gates,
    ranked_candidates,
    ungated,
)
from flox_isa.isa.recovery import base_spec, recoverable, recreating_owner, unschedulable_condition
from flox_isa.kube.lease import LeaderElector, LeaseConfig
from flox_isa.kube.rest import REQUEST_ERRORS, ApiError, Rest
from flox_isa.kube.watch import ListWatch
from flox_isa.operator.defaults import DEFAULT_WRITE_CONCURRENCY
from flox_isa.operator.events import event
from flox_isa.operator.writes import delete_pod, send_event, update_pod

log = logging.getLogger("flox_isa.placement")

DONE_PHASES: Final = frozenset({"Succeeded", "Failed"})
RETRY_SECONDS: Final = 2.0
IDLE_WAKE_SECONDS: Final = 1.0


@dataclass
class PlacementSettings:
    catalog: Catalog
    lease_namespace: str
    identity: str
    when_full: WhenFull = DEFAULT_WHEN_FULL
    growable: frozenset[str] | None = None  # None: every variant's pool can grow
    max_gate_age: float = 120.0  # older gated pods are placed as admission would
    lease_duration: float = 15.0
    progress_timeout: float = 30.0  # no placement for this long while pods wait: stop renewing
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    event_flush: float = 5.0  # spill Events are aggregated per owner over this window
    # `flox-isa ungate --all`: our gate goes even while others remain, and a pod no
    # eligible node offers a variant for is pinned to the widest fit, as admission would.
    release_all: bool = False
    # Recovery (opt-in, `isa.recovery`): pods we placed that stay Unschedulable longer
    # than this while another allowed variant has room are deleted (None: off). Their
    # owner's new pods skip the variant that failed for as long.
    recover_after: float | None = None
    recovery_interval: float = 5.0


@dataclass
class PlacementMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.gated = Gauge(
            "flox_isa_placement_gated_pods",
            "Pods gated by flox-isa, waiting for placement.",
            registry=self.registry,
        )
        self.placements = Counter(
            "flox_isa_placement_placements",
            "Pods placed, by variant, reason (room, spill, wait, full, timeout), spilled from.",
            ["variant", "reason", "spilled_from"],
            registry=self.registry,
        )
        self.conflicts = Counter(
            "flox_isa_placement_write_conflicts",
            "Placement writes refused because the pod changed since it was read.",
            registry=self.registry,
        )
        self.oldest_gated = Gauge(
            "flox_isa_placement_oldest_gated_seconds",
            "Age of the oldest pod gated by flox-isa (0: none).",
            registry=self.registry,
        )
        self.recoveries = Counter(
            "flox_isa_placement_recoveries",
            "Placed pods deleted for their controller to recreate: Unschedulable on a"
            " variant while another had room.",
            ["from_variant", "to_variant"],
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "flox_isa_placement_write_seconds",
            "One placement write (the PUT that pins a pod and removes the gate), succeeded.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.gate_seconds = Histogram(
            "flox_isa_placement_gate_seconds",
            "Pod creation to ungate.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )


@dataclass
class Stats:
    placed: int = 0
    writes: int = 0
    conflicts: int = 0
    failures: int = 0
    recovered: int = 0
    write_seconds: float = 0.0  # summed over the writes that succeeded
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PodInputs:
    """What a pod's annotations ask of its placement."""

    workload: Workload
    allowed: Sequence[Variant]
    when_full: WhenFull
    environment: str  # as the user wrote it (before a variant was chosen)
    generations: Mapping[str, int] | None


@dataclass(frozen=True, slots=True)
class Chosen:
    """One pod's placement, ready to write."""

    pod: Mapping[str, Any]
    placement: Placement
    body: dict[str, Any]  # the update (built once the pod is sure to go)
    asked: PodInputs
    # Nodes this pod could take room on that pods placed earlier may still need: while
    # one of them holds a reservation not yet bound, the pod waits (see `plan_batch`).
    contested: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Recovery:
    """One stuck pod to recreate: its variant, the one with room, the nodes it failed on."""

    pod: Mapping[str, Any]
    variant: str
    target: str
    failed_nodes: frozenset[str]


def uid_of(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


def variant_of(pod: Mapping[str, Any]) -> str:
    """The `isa.flox.dev/variant` label ("" when unset)."""
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(names.VARIANT_LABEL) or "")


def created_at(pod: Mapping[str, Any]) -> dt.datetime:
    text = (pod.get("metadata") or {}).get("creationTimestamp")
    if not text:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def age_seconds(pod: Mapping[str, Any], wall: dt.datetime) -> float:
    """How long ago, at `wall`, the pod was created (how long it has been gated)."""
    return (wall - created_at(pod)).total_seconds()


def placement_order(pod: Mapping[str, Any]) -> tuple[int, str, str]:
    """Higher priority first, then older, then by name (deterministic)."""
    metadata = pod.get("metadata") or {}
    priority = int((pod.get("spec") or {}).get("priority") or 0)
    return (-priority, str(metadata.get("creationTimestamp") or ""), str(metadata.get("name")))


def constraints_of_pod(pod: Mapping[str, Any]) -> Constraints:
    """Where the pod may be scheduled (`isa.constraints`), read from its spec."""
    return constraints_of(pod.get("spec") or {})


def owner_of(pod: Mapping[str, Any]) -> dict[str, str]:
    """What an Event about this pod's placement is about: its controller, else the pod."""
    metadata = pod.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("controller"):
            return {"apiVersion": str(ref.get("apiVersion")), "kind": str(ref.get("kind")),
                    "name": str(ref.get("name")), "namespace": namespace,
                    "uid": str(ref.get("uid"))}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "name": str(metadata.get("name")),
            "namespace": namespace, "uid": uid_of(pod)}  # fmt: skip


class Planner:
    """The placement decisions, no I/O: what counts where (the ledger), the pods gated by
    us, and for each the variant with room. Fed pod and fleet changes; `PlacementController`
    adds the watch, the writes and the heartbeat; `preview` answers for one pod."""

    def __init__(self, settings: PlacementSettings) -> None:
        self.settings = settings
        self.fleet = FleetIndex()
        self.ledger = Ledger()
        self.gated: dict[str, Mapping[str, Any]] = {}  # uid -> latest body, gated by us
        self._pinned: dict[str, Mapping[str, Any]] = {}  # unbound, pinned, room not reserved
        self._skip: dict[str, str] = {}  # uid -> resourceVersion we cannot place (bad input)
        self._retry_at: dict[str, float] = {}
        self._stuck: dict[str, Mapping[str, Any]] = {}  # uid -> placed by us, Unschedulable
        # owner uid -> (until, nodes): where recovery saw the owner's pods fail to schedule
        self._avoid: dict[str, tuple[float, frozenset[str]]] = {}
        self._holding = False  # the last batch held pods back until reserved room binds
        self._offers: OfferIndex | None = None
        self._allocatable: dict[str, Resources] = {}
        # TicketWorker (namespace, name) -> uid -> its pod (latest body): the operator
        # plans by room without counting a TicketWorker's own pods as others' load.
        self.owned: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
        self._owner: dict[str, tuple[str, str]] = {}  # uid -> its TicketWorker
        self.pod_listeners: list[Callable[[tuple[str, str] | None], None]] = []

    @property
    def allocatable(self) -> Mapping[str, Resources]:
        """Each node's allocatable resources, in capacity units."""
        return self._allocatable

    def _changed(self) -> None:
        """Something may now be placeable (the controller wakes its loop)."""

    def _pod_seen(self, pod: Mapping[str, Any], gone: bool = False) -> None:
        """Index a TicketWorker's pod; tell the listeners (the TicketWorker's key, or None
        for another pod: the room changed)."""
        uid = uid_of(pod)
        metadata = pod.get("metadata") or {}
        name = (metadata.get("labels") or {}).get(names.TICKETWORKER_LABEL)
        key = (str(metadata.get("namespace") or ""), str(name)) if name else None
        before = self._owner.pop(uid, None)
        if before is not None:
            self.owned.get(before, {}).pop(uid, None)
            if not self.owned.get(before, True):
                del self.owned[before]
        if key is not None and not gone:
            self.owned.setdefault(key, {})[uid] = pod
            self._owner[uid] = key
        for listener in self.pod_listeners:
            listener(key or before)

    # -- inputs ---------------------------------------------------------------------------

    def fleet_changed(self, fleet: FleetIndex) -> None:
        self.fleet = fleet
        self._offers = None
        self._allocatable = {m.name: dict(m.allocatable) for g in fleet.groups for m in g.members}
        self._changed()

    def replace_pods(self, pods: list[dict[str, Any]]) -> None:
        """A full list: rebuild everything from it (nothing in memory survives a relist)."""
        self.ledger = Ledger()
        self.gated.clear()
        self._pinned.clear()
        self._stuck.clear()
        self.owned.clear()
        self._owner.clear()
        listeners, self.pod_listeners = self.pod_listeners, []
        for pod in pods:
            self._apply(pod)
            self._pod_seen(pod, (pod.get("status") or {}).get("phase") in DONE_PHASES)
        self.pod_listeners = listeners
        for listener in listeners:
            listener(None)
        self._changed()

    def pod_changed(self, kind: str, pod: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._forget(uid_of(pod))
        else:
            self._apply(pod)
        done = (pod.get("status") or {}).get("phase") in DONE_PHASES
        self._pod_seen(pod, kind == "DELETED" or done)

    def _forget(self, uid: str) -> None:
        self.ledger.release(uid)
        self.gated.pop(uid, None)
        self._pinned.pop(uid, None)
        self._skip.pop(uid, None)
        self._retry_at.pop(uid, None)
        self._stuck.pop(uid, None)

    def _apply(self, pod: Mapping[str, Any]) -> None:
        """Count one pod where it counts (see `isa.capacity`)."""
        uid = uid_of(pod)
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        if status.get("phase") in DONE_PHASES:
            self._forget(uid)
            return
        try:
            requests = effective_request(spec)
        except ValueError as exc:  # the API server validated it: never expected
            log.warning("pod skipped", extra={"uid": uid, "error": str(exc)})
            return
        self._stuck.pop(uid, None)
        if spec.get("nodeName"):
            self.gated.pop(uid, None)
            self._pinned.pop(uid, None)
            before = self.ledger.entry(uid)
            self.ledger.bind(uid, str(spec["nodeName"]), requests)
            if self._holding and before is not None and before.kind == "reserved":
                self._awaited_bind()
            return
        if names.PLACEMENT_GATE in placement_gates(pod):
            self.gated[uid] = pod
            self._changed()
            return
        self.gated.pop(uid, None)
        nominated = status.get("nominatedNodeName")
        if nominated:
            priority = int(spec.get("priority") or 0)
            self.ledger.count(uid, str(nominated), requests, "nominated", priority)
        elif unschedulable_condition(pod) is not None:
            self.ledger.release(uid)  # the scheduler found no room: it holds none
            self._pinned.pop(uid, None)
            if self.settings.recover_after is not None:
                self._stuck[uid] = pod
        elif self.ledger.entry(uid) is None and self._is_pinned(pod):
            self._pinned[uid] = pod

    @staticmethod
    def _is_pinned(pod: Mapping[str, Any]) -> bool:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return names.VARIANT_LABEL in labels and not placement_gates(pod)

    # -- decisions ------------------------------------------------------------------------

    def offers(self) -> OfferIndex:
        if self._offers is None or self._offers.fleet is not self.fleet:
            self._offers = OfferIndex(self.fleet, self.settings.catalog)
        return self._offers

    def placeable(self) -> list[Mapping[str, Any]]:
        """Gated pods whose only gate left is ours, in placement order."""
        now = time.monotonic()
        ready = [
            pod
            for uid, pod in self.gated.items()
            if (self.settings.release_all or set(placement_gates(pod)) == {names.PLACEMENT_GATE})
            and self._skip.get(uid) != (pod.get("metadata") or {}).get("resourceVersion")
            and self._retry_at.get(uid, 0.0) <= now
        ]
        return sorted(ready, key=placement_order)

    def plan_batch(self) -> list[Chosen]:
        """Choose for every placeable pod, reserving room as it goes (no I/O).

        Within a batch room only shrinks and reservations only grow: once a pod of a
        template is left gated, so are its siblings (one choice per template, not per
        pod, while a burst waits for binds)."""
        self._reserve_pinned()
        pending = self.placeable()
        room = RoomFinder(self.ledger, self._allocatable)
        chosen: list[Chosen] = []
        wall = dt.datetime.now(dt.UTC)
        reserved = {entry.node for _, entry in self.ledger.reservations()}
        held: set[tuple[str, ...]] = set()
        self._holding = False
        for pod in pending:
            key = self._template_key(pod, wall)
            if key is not None and key in held:
                continue
            found = self.choose(pod, room, wall)
            if found is not None and found.contested & reserved and self._may_hold(pod, wall):
                # A spilled (or roomless) pod's selector also matches better nodes whose
                # room pods placed before it still need: the scheduler could give it that
                # room first. It waits for those binds (each wakes the loop); a one-shot
                # `ungate --all` sees no binds and places everything at once.
                self._holding = True
                found = None
            if found is None:
                if key is not None:
                    held.add(key)
                continue
            uid = uid_of(pod)
            if found.placement.node is not None:
                self.ledger.reserve(uid, found.placement.node, room.demand_of(pod))
                reserved.add(found.placement.node)
            self.gated.pop(uid, None)
            chosen.append(self._with_body(found))
        return chosen

    def _awaited_bind(self) -> None:
        """A pod placed on room that held pods back got bound: they may go now."""
        self._changed()

    def _overdue(self, pod: Mapping[str, Any], wall: dt.datetime) -> bool:
        """Gated longer than the maximum gate age: placed as admission would."""
        return age_seconds(pod, wall) > self.settings.max_gate_age

    def _may_hold(self, pod: Mapping[str, Any], wall: dt.datetime) -> bool:
        """Hold a spill back for binds only while it is younger than half the maximum gate
        age: when the scheduler is slow (minutes at 5,000 nodes), a spill held until the
        maximum age would be placed as admission would, on the full best pool."""
        if self.settings.release_all:
            return False
        return age_seconds(pod, wall) < self.settings.max_gate_age / 2

    def _template_key(self, pod: Mapping[str, Any], wall: dt.datetime) -> tuple[str, ...] | None:
        """Pods with one key get one choice: same owner, same template revision, both past
        the maximum gate age (and past half of it) or neither (None: a pod of its own)."""
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        revision = labels.get("pod-template-hash") or labels.get("controller-revision-hash")
        owner = recreating_owner(pod)
        if not revision or owner is None:
            return None
        old = self._overdue(pod, wall)
        holdable = self._may_hold(pod, wall)
        return (str(owner.get("uid")), str(revision), str(old), str(holdable),
                str(metadata.get("namespace")))  # fmt: skip

    def inputs(self, pod: Mapping[str, Any]) -> PodInputs | None:
        """What the pod's annotations ask for (None: bad input, left alone, logged)."""
        metadata = pod.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        uid = uid_of(pod)
        try:
            workload = parse_workload(annotations.get(names.WORKLOAD_ANNOTATION))
            allowed = parse_variants(annotations.get(names.VARIANTS_ANNOTATION),
                                     self.settings.catalog)  # fmt: skip
            when_full = parse_when_full(annotations.get(names.WHEN_FULL_ANNOTATION),
                                        self.settings.when_full)  # fmt: skip
            environment = str(
                annotations.get(names.BASE_ENVIRONMENT_ANNOTATION)
                or annotations.get(names.ENVIRONMENT_ANNOTATION)
                or ""
            )
            if not is_environment(environment):
                raise InvalidInputError(f"{names.ENVIRONMENT_ANNOTATION} {environment!r}")
            generations = read_generations(annotations.get(names.GENERATIONS_ANNOTATION),
                                           self.settings.catalog)  # fmt: skip
            allowed = pinned_candidates(environment, allowed, generations)
        except (InvalidInputError, ConflictError) as exc:  # edited after admission: wait
            self._skip[uid] = str(metadata.get("resourceVersion") or "")
            log.warning("pod cannot be placed", extra={"uid": uid, "error": str(exc)})
            return None
        return PodInputs(workload, allowed, when_full, environment, generations)

    def choose(self, pod: Mapping[str, Any], room: RoomFinder, wall: dt.datetime) -> Chosen | None:
        """The pod's placement, its update not built yet (None: left gated, logged)."""
        uid = uid_of(pod)
        asked = self.inputs(pod)
        if asked is None:
            return None
        workload, allowed = asked.workload, asked.allowed
        constraints = constraints_of_pod(pod)
        offer = self.offers().offer(constraints)
        ranked = ranked_candidates(allowed, offer, workload)
        if not ranked and self.settings.release_all:
            try:
                ranked = [widest_allowed(constraints, allowed, workload)]
            except ConflictError as exc:
                log.warning("gated pod cannot be placed", extra={"uid": uid, "error": str(exc)})
                return None
        if not ranked:  # no eligible node offers an allowed variant: wait for the fleet
            return None
        if self._overdue(pod, wall):
            placement = as_admission(ranked)
        else:
            probe = room.probe(pod, offer, self._failed_nodes(pod))
            placement = place(ranked, probe, asked.when_full, self.settings.growable)
        contested = self._contested(placement, ranked, offer, room)
        return Chosen(pod, placement, {}, asked, contested)

    @staticmethod
    def _with_body(found: Chosen) -> Chosen:
        asked = found.asked
        body = ungated(found.pod, found.placement, asked.environment, asked.workload,
                       asked.generations)  # fmt: skip
        return dataclasses.replace(found, body=body)

    def _failed_nodes(self, pod: Mapping[str, Any]) -> frozenset[str]:
        """Nodes where recovery saw this pod's owner's pods fail to schedule (recently)."""
        owner = recreating_owner(pod)
        if owner is None or not self._avoid:
            return frozenset()
        until, nodes = self._avoid.get(str(owner.get("uid")), (0.0, frozenset()))
        return nodes if until > time.monotonic() else frozenset()

    @staticmethod
    def _contested(
        placement: Placement, ranked: Sequence[Variant], offer: Offer, room: RoomFinder
    ) -> frozenset[str]:
        """Where this pod could be scheduled ahead of pods that hold reservations there:
        the nodes of the better variants (a spill), or of its own (pinned without room)."""
        if placement.reason == "timeout":
            return frozenset()
        contested = ranked[: placement.rank] if placement.node else [placement.variant]
        return room.node_names(offer, *contested)

    def _reserve_pinned(self) -> None:
        """Reserve room for pinned, unbound pods seen without a reservation (a new leader's
        view of its predecessor's placements); one attempt each."""
        if not self._pinned:
            return
        room = RoomFinder(self.ledger, self._allocatable)
        for uid, pod in list(self._pinned.items()):
            del self._pinned[uid]
            variant = self.settings.catalog.get(variant_of(pod))
            if variant is None:
                continue
            node = room.probe(pod, self.offers().offer(constraints_of_pod(pod)))(variant)
            if node is not None:
                self.ledger.reserve(uid, node, room.demand_of(pod))

    def preview(self, pod: Mapping[str, Any]) -> Chosen | None:
        """What the controller would do with `pod` now, with the room it sees (no
        reservation kept): for `explain pod`."""
        room = RoomFinder(self.ledger, self._allocatable)
        found = self.choose(pod, room, dt.datetime.now(dt.UTC))
        return None if found is None else self._with_body(found)

    def room_seen(self, pod: Mapping[str, Any], variant: Variant) -> int:
        """How many more pods like `pod` fit on the eligible nodes of `variant`."""
        demand = effective_request(pod.get("spec") or {})
        priority = int((pod.get("spec") or {}).get("priority") or 0)
        offer = self.offers().offer(constraints_of_pod(pod))
        return sum(
            self.ledger.fits(m.name, self._allocatable.get(m.name, {}), demand, priority)
            for m in offer.nodes(variant)
        )

    def plan_recovery(self, after: float) -> list[Recovery]:
        """The stuck pods that another variant has room for, on nodes other than those
        they failed on; the room is reserved in a scratch ledger, so N free slots move at
        most N pods (no I/O)."""
        now = dt.datetime.now(dt.UTC)
        room = RoomFinder(self.ledger.copy(), self._allocatable)
        plan: list[Recovery] = []
        for pod in sorted(self._stuck.values(), key=placement_order):
            asked = (
                self.inputs(pod) if recoverable(pod, now, after, self.settings.when_full) else None
            )
            current = self.settings.catalog.get(variant_of(pod))
            if asked is None or current is None:
                continue
            offer = self.offers().offer(constraints_of(base_spec(pod)))
            failed = room.node_names(offer, current) | self._failed_nodes(pod)
            probe = room.probe(pod, offer, failed)
            for variant in ranked_candidates(asked.allowed, offer, asked.workload):
                node = probe(variant)
                if node is not None:
                    room.ledger.reserve(uid_of(pod), node, room.demand_of(pod))
                    plan.append(Recovery(pod, current.name, variant.name, failed))
                    break
        return plan


class PlacementController(Planner):
    """The planner on the API: one pod watch, one PUT per placement, the heartbeat Lease,
    spill Events, metrics and recovery's deletes."""

    def __init__(self, settings: PlacementSettings, api: Rest) -> None:
        super().__init__(settings)
        self.api = api
        self.metrics = PlacementMetrics()
        self.stats = Stats()
        self.fleet_listed = asyncio.Event()
        self._next_recovery = 0.0
        self._wake = asyncio.Event()
        self._progress = time.monotonic()
        self._spills: dict[tuple[tuple[tuple[str, str], ...], str, str], int] = {}
        self._write_slots = asyncio.Semaphore(settings.write_concurrency)
        self._writes: set[asyncio.Task[bool]] = set()
        self.pods = ListWatch(api, "/api/v1/pods", self.replace_pods, self.pod_changed)
        self.elector = LeaderElector(
            api,
            LeaseConfig(
                namespace=settings.lease_namespace,
                name=names.PLACEMENT_LEASE,
                identity=settings.identity,
                duration=settings.lease_duration,
                annotations={names.PLACEMENT_PROTOCOL_ANNOTATION: names.PLACEMENT_PROTOCOL},
            ),
        )

    def _changed(self) -> None:
        self._wake.set()

    def fleet_changed(self, fleet: FleetIndex) -> None:
        super().fleet_changed(fleet)
        self.fleet_listed.set()

    def _awaited_bind(self) -> None:
        # Spills held back until the room placed before them binds: each such bind is the
        # pipeline moving (at 5,000 nodes the scheduler takes minutes to bind a burst), so
        # the Lease stays renewed and the webhook keeps gating.
        self._progress = time.monotonic()
        super()._awaited_bind()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch, place and heartbeat until cancelled; the Lease is released on the way out."""
        tasks = [
            asyncio.create_task(self.pods.run()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._flush_events()),
        ]
        try:
            await self.pods.synced.wait()
            await self.fleet_listed.wait()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_SECONDS)
                self._wake.clear()
                await self.place_pending()
                await self.recover_due()
        finally:
            for task in [*tasks, *self._writes]:  # a write cut short leaves its pod gated
                task.cancel()
            await asyncio.gather(*tasks, *self._writes, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.elector.release()

    async def place_pending(self) -> int:
        """Plan every placeable pod and send its write; how many writes were sent.

        Writes run in the background (at most `write_concurrency` at once): the room is
        reserved when planned, so the next batch never waits for a slow API server."""
        chosen = self.plan_batch()
        self.metrics.gated.set(len(self.gated))
        now = dt.datetime.now(dt.UTC)
        ages = [age_seconds(p, now) for p in self.gated.values()]
        self.metrics.oldest_gated.set(max(ages, default=0.0))
        if not chosen:
            if not self.placeable() and not self._writes:
                self._progress = time.monotonic()  # nothing waits: idle is progress
            return 0
        for one in chosen:
            task = asyncio.create_task(self.write(one, self._write_slots))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        reasons: dict[str, int] = {}
        for c in chosen:
            reasons[c.placement.reason] = reasons.get(c.placement.reason, 0) + 1
        log.info("placing", extra={"pods": len(chosen), **reasons, "writing": len(self._writes),
                                   "stillGated": len(self.gated)})  # fmt: skip
        return len(chosen)

    async def write(self, chosen: Chosen, limit: asyncio.Semaphore) -> bool:
        pod = chosen.pod
        uid = uid_of(pod)
        async with limit:
            self.stats.writes += 1
            started = time.monotonic()
            try:
                await self.api.send(update_pod(pod, chosen.body))
            except ApiError as exc:
                self.ledger.release(uid)
                if exc.status == 409:  # changed since read: the watch brings it back
                    self.stats.conflicts += 1
                    self.metrics.conflicts.inc()
                    return False
                if exc.status == 404:
                    return False
                self._retry(pod, exc)
                return False
            except REQUEST_ERRORS as exc:
                self.ledger.release(uid)
                self._retry(pod, exc)
                return False
        spent = time.monotonic() - started
        self.stats.write_seconds += spent
        self.metrics.write_seconds.observe(spent)
        self._placed(chosen)
        return True

    def _retry(self, pod: Mapping[str, Any], exc: BaseException) -> None:
        uid = uid_of(pod)
        self.stats.failures += 1
        self.gated.setdefault(uid, pod)
        self._retry_at[uid] = time.monotonic() + RETRY_SECONDS
        log.warning("placement write failed, will retry", extra={"uid": uid, "error": str(exc)})

    def _placed(self, chosen: Chosen) -> None:
        placement = chosen.placement
        self._progress = time.monotonic()
        self.stats.placed += 1
        self.stats.by_reason[placement.reason] = self.stats.by_reason.get(placement.reason, 0) + 1
        spilled = ",".join(placement.spilled_from)
        self.metrics.placements.labels(placement.variant.name, placement.reason, spilled).inc()
        age = age_seconds(chosen.pod, dt.datetime.now(dt.UTC))
        self.metrics.gate_seconds.observe(max(0.0, age))
        if placement.reason != "room":
            owner = tuple(sorted(owner_of(chosen.pod).items()))
            key = (owner, placement.reason, f"{spilled or '-'}->{placement.variant.name}")
            self._spills[key] = self._spills.get(key, 0) + 1
        log.debug("placed", extra={"uid": uid_of(chosen.pod), "variant": placement.variant.name,
                                   "reason": placement.reason})  # fmt: skip

    # -- recovery (opt-in) ----------------------------------------------------------------

    async def recover_due(self) -> int:
        """At most every `recovery_interval`: delete the pods `plan_recovery` picks."""
        after = self.settings.recover_after
        now = time.monotonic()
        if after is None or now < self._next_recovery:
            return 0
        self._next_recovery = now + self.settings.recovery_interval
        self._avoid = {owner: seen for owner, seen in self._avoid.items() if seen[0] > now}
        plan = self.plan_recovery(after)
        results = await asyncio.gather(*(self.recreate(move, after) for move in plan))
        return sum(results)

    async def recreate(self, move: Recovery, after: float) -> bool:
        """Delete one stuck pod (uid and resourceVersion preconditions) for its owner to
        recreate; for `after` seconds its owner's new pods avoid the nodes it failed on."""
        pod = move.pod
        owner = str((recreating_owner(pod) or {}).get("uid"))
        previous = self._avoid.get(owner)
        self._avoid[owner] = (time.monotonic() + after, move.failed_nodes)  # before its new pod
        try:
            await self.api.send(delete_pod(pod))
        except (ApiError, *REQUEST_ERRORS) as exc:  # changed, gone or unreachable: next pass
            if previous is None:
                self._avoid.pop(owner, None)
            else:
                self._avoid[owner] = previous
            log.info("recovery skipped a pod", extra={"uid": uid_of(pod), "error": str(exc)})
            return False
        self._stuck.pop(uid_of(pod), None)
        self.stats.recovered += 1
        self.metrics.recoveries.labels(move.variant, move.target).inc()
        key = (tuple(sorted(owner_of(pod).items())), "recovered", f"{move.variant}->{move.target}")
        self._spills[key] = self._spills.get(key, 0) + 1
        log.info("recreating an unschedulable pod", extra={"uid": uid_of(pod),
                 "from": move.variant, "to": move.target})  # fmt: skip
        return True

    # -- heartbeat and Events -------------------------------------------------------------

    def healthy(self) -> bool:
        """Synced, and placing: within the progress timeout, pods that wait got a placement,
        or a pod whose bind they wait for was bound."""
        if not (self.pods.synced.is_set() and self.fleet_listed.is_set()):
            return False
        return time.monotonic() - self._progress < self.settings.progress_timeout

    async def _heartbeat(self) -> None:
        while True:
            if self.healthy():
                with contextlib.suppress(*REQUEST_ERRORS):
                    await self.elector.try_take()
            await asyncio.sleep(max(0.2, self.settings.lease_duration / 5))

    async def _flush_events(self) -> None:
        while True:
            await asyncio.sleep(self.settings.event_flush)
            await self.post_spill_events()

    async def post_spill_events(self) -> None:
        spills, self._spills = self._spills, {}
        for (owner, reason, route), count in spills.items():
            request = event(
                dict(owner),
                "Normal" if reason == "spill" else "Warning",
                SPILL_REASONS[reason],
                spill_message(reason, route, count),
                self.settings.identity,
            )
            await send_event(self.api, request)


SPILL_REASONS: Final = {
    "spill": "SpilledToNextBest",
    "wait": "WaitingForRoom",
    "full": "NoRoomAnywhere",
    "timeout": "GateTimeout",
    "recovered": "RecreatedUnschedulable",
}


def spill_message(reason: str, route: str, count: int) -> str:
    spilled, variant = route.split("->")
    pods = f"{count} pod{'' if count == 1 else 's'}"
    if reason == "spill":
        return f"{pods} placed on {variant}: no room on the nodes of {spilled}"
    if reason == "wait":
        return f"{pods} pinned to {variant} without room (when-full: wait): Unschedulable"
    if reason == "full":
        return f"{pods} pinned to {variant}: no allowed variant has room anywhere"
    if reason == "recovered":
        return (
            f"{pods} deleted for their controller to recreate: Unschedulable on {spilled}"
            f" (host ports, anti-affinity, topology spread or room taken first), {variant}"
            f" has room; new pods skip {spilled} for a while"
        )
    return f"{pods} gated longer than the maximum gate age: placed on {variant} as admission would"


def explain_gated(
    catalog: Catalog,
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    pod: Mapping[str, Any],
) -> dict[str, Any] | None:
    """For `explain pod`: what the placement controller would do with this gated pod now,
    and the room it sees per variant (None: the pod is not gated by flox-isa). With the
    controller's defaults (when-full from the pod, else next-best; every pool growable)."""
    if names.PLACEMENT_GATE not in placement_gates(pod):
        return None
    planner = Planner(PlacementSettings(catalog, lease_namespace="", identity="explain"))
    planner.fleet_changed(index_nodes(node_state(n) for n in nodes))
    planner.replace_pods([dict(p) for p in pods if uid_of(p) != uid_of(pod)])
    others = [g for g in placement_gates(pod) if g != names.PLACEMENT_GATE]
    answer: dict[str, Any] = {"gate": names.PLACEMENT_GATE, "otherGates": others}
    asked = planner.inputs(pod)
    chosen = planner.preview(pod) if asked is not None else None
    if asked is None or chosen is None:
        answer["decision"] = None
        answer["why"] = (
            "bad input: see the decision above"
            if asked is None
            else "no eligible node offers an allowed variant: it waits for the fleet"
        )
        return answer
    placement = chosen.placement
    ranked = ranked_candidates(asked.allowed, planner.offers().offer(constraints_of_pod(pod)),
                               asked.workload)  # fmt: skip
    answer["decision"] = {"variant": placement.variant.name, "reason": placement.reason,
                          "node": placement.node, "spilledFrom": list(placement.spilled_from),
                          "message": placement.message(asked.workload)}  # fmt: skip
    answer["room"] = {v.name: planner.room_seen(pod, v) for v in ranked}
    return answer


def explain_gated_text(answer: Mapping[str, Any]) -> str:
    """The text lines of `explain_gated`'s answer."""
    lines = [f"gated by {answer['gate']}: the placement controller decides just before"
             " scheduling"]  # fmt: skip
    if answer["otherGates"]:
        lines.append(f"  waits first for: {', '.join(answer['otherGates'])}")
    decision = answer.get("decision")
    if decision is None:
        lines.append(f"  now: left gated ({answer['why']})")
        return "\n".join(lines)
    lines.append(f"  now: {decision['message']}")
    room = ", ".join(f"{name} {count}" for name, count in answer["room"].items())
    lines.append(f"  room seen (more pods like this one, per variant, best first): {room}")
    return "\n".join(lines)


class RoomFinder:
    """Room probes for one batch: per (variant, demand), first fit from where the last
    probe found room (within a batch room only shrinks, so nodes before are still full)."""

    def __init__(self, ledger: Ledger, allocatable: Mapping[str, Resources]) -> None:
        self.ledger = ledger
        self.allocatable = allocatable
        self._nodes: dict[tuple[int, str], list[NodeMember]] = {}
        self._cursor: dict[tuple[int, str, tuple[tuple[str, int], ...], int], int] = {}
        self._demand: dict[str, Resources] = {}
        self._names: dict[tuple[int, tuple[str, ...]], frozenset[str]] = {}

    def demand_of(self, pod: Mapping[str, Any]) -> Resources:
        uid = uid_of(pod)
        if uid not in self._demand:
            self._demand[uid] = effective_request(pod.get("spec") or {})
        return self._demand[uid]

    def node_names(self, offer: Offer, *variants: Variant) -> frozenset[str]:
        """The eligible nodes that offer any of `variants` (memoised for the batch)."""
        key = (id(offer), tuple(v.name for v in variants))
        if key not in self._names:
            self._names[key] = frozenset(m.name for v in variants for m in offer.nodes(v))
        return self._names[key]

    def probe(
        self, pod: Mapping[str, Any], offer: Offer, excluded: frozenset[str] = frozenset()
    ) -> RoomProbe:
        """Which node of a variant has room for one more `pod`, outside `excluded`."""
        demand = self.demand_of(pod)
        priority = int((pod.get("spec") or {}).get("priority") or 0)

        def room(variant: Variant) -> str | None:
            if excluded:
                return self.first_fit_outside(offer, variant, demand, priority, excluded)
            return self.first_fit(offer, variant, demand, priority)

        return room

    def first_fit_outside(
        self,
        offer: Offer,
        variant: Variant,
        demand: Resources,
        priority: int,
        excluded: frozenset[str],
    ) -> str | None:
        """`first_fit` skipping some nodes (recovery's rare path: no cursor)."""
        for member in offer.nodes(variant):
            name = member.name
            if name not in excluded and self.ledger.fits(
                name, self.allocatable.get(name, {}), demand, priority
            ):
                return name
        return None

    def first_fit(
        self, offer: Offer, variant: Variant, demand: Resources, priority: int
    ) -> str | None:
        nodes = self._nodes.get((id(offer), variant.name))
        if nodes is None:  # once per batch: the node list is as long as the pool
            nodes = self._nodes[id(offer), variant.name] = list(offer.nodes(variant))
        key = (id(offer), variant.name, tuple(sorted(demand.items())), priority)
        start = self._cursor.get(key, 0)
        for index in range(start, len(nodes)):
            name = nodes[index].name
            if self.ledger.fits(name, self.allocatable.get(name, {}), demand, priority) > 0:
                self._cursor[key] = index
                return name
        self._cursor[key] = len(nodes)
        return None

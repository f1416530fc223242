"""One TicketWorker's reconcile decision, and its status: pure functions of data.

`decide` turns (TicketWorker, catalog, eligible node groups, live Deployments)
into the writes to make; `build_status` turns the decision and what the writes
returned into the status to publish. The kopf layer only fetches and sends.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from flox_isa.isa import names
from flox_isa.isa.capacity import Demand
from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.fleet import FeatureGroup
from flox_isa.isa.inputs import InvalidInputError
from flox_isa.isa.names import THREADS_ANNOTATION
from flox_isa.isa.planning import (
    Plan,
    Room,
    ThroughputPlan,
    describe_plan,
    plan_replicas,
    plan_throughput,
    ranked_variants,
    resize,
    unknown_variants,
)
from flox_isa.isa.recovery import unschedulable_seconds
from flox_isa.isa.replan import Memory, Move, plan_basis, replan
from flox_isa.isa.throughput import per_replica, unmeasured_ranks
from flox_isa.operator import models
from flox_isa.operator.diff import Action, diff, owned_by, terminating, variant_label
from flox_isa.operator.render import Owner, deployment_name, pods_selector, render, tune_threads

INVALID_SPEC: Final = "InvalidSpec"
NO_ELIGIBLE_NODES: Final = "NoEligibleNodes"
APPLY_FAILED: Final = "ApplyFailed"

GroupsFor = Callable[[Constraints], Sequence[FeatureGroup]]
# (template's constraints, one replica's demand, workload, allowed variants) -> its room
RoomFor = Callable[[Constraints, Demand, Workload, Collection[str] | None], Room]


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the reconcile reads of the capacity accounting (None in `decide`: room-blind)."""

    room_for: RoomFor
    pods: Sequence[Mapping[str, Any]]  # the TicketWorker's own pods, as last seen
    memory: Memory
    wall: dt.datetime
    growable: Collection[str] | None = None


@dataclass(frozen=True, slots=True)
class PodCounts:
    """Per variant: pods Unschedulable now, and those past the bound (count, longest s)."""

    unschedulable: Mapping[str, int] = dataclasses.field(default_factory=dict)
    stuck: Mapping[str, tuple[int, float]] = dataclasses.field(default_factory=dict)
    waits: tuple[float, ...] = ()  # seconds until each younger Unschedulable pod is past it


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    owner: Owner
    generation: int
    spec: models.TicketWorkerSpec | None
    plan: Plan | None
    actions: tuple[Action, ...]
    problem: Problem | None = None
    throughput: ThroughputPlan | None = None  # spec.throughput's plan
    room: Room | None = None  # None: room unknown (room-blind plan)
    blind: Plan | None = None  # the room-blind plan (today's), to say what room changed
    moves: tuple[Move, ...] = ()
    memory: Memory | None = None
    pods: PodCounts = PodCounts()
    recheck: float | None = None  # seconds until a calm move may be due (None: not needed)

    @property
    def summary(self) -> str:
        return describe_plan(self.plan) if self.plan else "-"


def owner_of(ticketworker: Mapping[str, Any]) -> Owner:
    meta = ticketworker.get("metadata") or {}
    return Owner(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""))


def parse_spec(
    raw: Mapping[str, Any], catalog: Catalog
) -> tuple[models.TicketWorkerSpec | None, Problem | None]:
    """The spec, or the problem that keeps us from acting on it (checks only Python can do)."""
    try:
        spec = models.TicketWorkerSpec.model_validate(raw)
    except ValidationError as exc:
        return None, Problem(INVALID_SPEC, describe_validation(exc))
    named = (
        ("variants", spec.variants),
        ("generations", spec.generations),
        ("throughputPerReplica", spec.throughput_per_replica),
    )
    for field, requested in named:
        unknown = unknown_variants(catalog, requested or ())
        if unknown:
            return None, Problem(
                INVALID_SPEC,
                f"spec.{field}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'}"
                f" not in the variant catalog (known: {', '.join(catalog.names)})",
            )
    if spec.throughput is not None:
        allowed = [v for v in catalog.variants if v.name in (spec.allowed_variants() or v.name)]
        ranks = unmeasured_ranks(spec.workload, allowed, spec.throughput_per_replica)
        if ranks:
            return None, Problem(
                INVALID_SPEC,
                f"spec.throughput: {spec.workload} scores are ranks, not tickets/s: give"
                " spec.throughputPerReplica for every allowed variant"
                f" (missing: {', '.join(ranks)})",
            )
    template = spec.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    try:  # the thread override and the containers' CPU quantities (isa.threads)
        tune_threads(template.get("spec") or {}, _annotations(template).get(THREADS_ANNOTATION))
    except InvalidInputError as exc:
        return None, Problem(INVALID_SPEC, f"spec.template: {exc}")
    return spec, None


def _annotations(template: Mapping[str, Any]) -> Mapping[str, str]:
    return (template.get("metadata") or {}).get("annotations") or {}


def describe_validation(exc: ValidationError) -> str:
    """`spec.environment: must be ...; spec.replicas: ...` (one clause per error)."""
    clauses = []
    for error in exc.errors():
        where = ".".join(["spec", *(str(part) for part in error["loc"])])
        message = error["msg"].removeprefix("Value error, ")
        # A rule across fields (no loc) names its fields itself.
        clauses.append(f"{where}: {message}" if error["loc"] else message)
    return "; ".join(clauses)


def decide(
    ticketworker: Mapping[str, Any],
    catalog: Catalog,
    groups_for: GroupsFor,
    actual: Mapping[str, Mapping[str, Any]],
    capacity: Capacity | None = None,
) -> Decision:
    """What to write for one TicketWorker. A bad spec writes nothing but its status."""
    owner = owner_of(ticketworker)
    generation = int((ticketworker.get("metadata") or {}).get("generation") or 0)
    spec, problem = parse_spec(ticketworker.get("spec") or {}, catalog)
    if spec is None:
        return Decision(owner, generation, None, None, (), problem)
    template = spec.template.spec
    constraints = template.constraints()
    allowed = spec.allowed_variants()
    groups = groups_for(constraints)
    room = (
        capacity.room_for(constraints, template.demand(), spec.workload, allowed)
        if capacity
        else None
    )
    sized: ThroughputPlan | None = None
    blind: Plan | None
    calm: tuple[tuple[Move, ...], Memory | None, PodCounts, float | None] = (
        (),
        None,
        PodCounts(),
        None,
    )
    if spec.throughput is not None:
        cpus, workload, measured = spec.replica_cpus(), spec.workload, spec.throughput_per_replica
        sized = plan_throughput(
            catalog,
            groups,
            workload=workload,
            target=spec.throughput,
            replica_cpus=cpus,
            tickets_of=lambda v: per_replica(v, workload, cpus, measured).tickets or 0.0,
            allowed=allowed,
            room=room,
        )
        plan, blind = sized.plan, None
    else:
        blind = plan_replicas(catalog, groups, workload=spec.workload,
                              replicas=spec.effective_replicas(), placement=spec.placement,
                              allowed=allowed)  # fmt: skip
        plan = blind
        if capacity is not None and room is not None and not blind.problem:
            basis = str((ticketworker.get("status") or {}).get("planBasis") or "")
            plan, calm = _calm_plan(catalog, groups, spec, blind, room, capacity, owner, actual,
                                    basis)  # fmt: skip
    problem = Problem(NO_ELIGIBLE_NODES, plan.problem) if plan.problem else None
    actions = diff(owner, render(owner, spec, plan), actual)
    moves, memory, counts, recheck = calm
    return Decision(owner, generation, spec, plan, actions, problem, sized, room, blind,
                    moves, memory, counts, recheck)  # fmt: skip


def _calm_plan(  # noqa: PLR0917
    catalog: Catalog,
    groups: Sequence[FeatureGroup],
    spec: models.TicketWorkerSpec,
    blind: Plan,
    room: Room,
    capacity: Capacity,
    owner: Owner,
    actual: Mapping[str, Mapping[str, Any]],
    basis: str,
) -> tuple[Plan, tuple[tuple[Move, ...], Memory | None, PodCounts, float | None]]:
    """The room-aware plan, reached calmly from what runs (`isa.replan`); `basis`: the
    `status.planBasis` last published ("": none)."""
    allowed = spec.allowed_variants()
    ideal = plan_replicas(catalog, groups, workload=spec.workload,
                          replicas=spec.effective_replicas(), placement=spec.placement,
                          allowed=allowed, room=room, when_full=spec.when_full,
                          growable=capacity.growable)  # fmt: skip
    ranked = [v.name for v in ranked_variants(catalog, room, spec.workload, allowed)]
    planned = {**dict.fromkeys(ranked, 0), **{s.variant.name: s.replicas for s in ideal.shares}}
    live = {
        variant_label(d): int((d.get("spec") or {}).get("replicas") or 0)
        for d in actual.values()
        if owned_by(d, owner) and not terminating(d)
    }
    calm = spec.replan.calm()
    counts = pod_counts(capacity.pods, capacity.wall, calm.unschedulable_seconds)
    anchor = plan_basis(spec.placement, {s.variant.name: s.node_count for s in blind.shares})
    now = capacity.wall.timestamp()
    remembered = capacity.memory
    if remembered.anchor is None:  # a new leader: the basis its predecessor planned on
        remembered = dataclasses.replace(remembered, anchor=basis or None)
    result = replan(planned, live or None, ranked, counts.stuck, remembered, anchor, now,
                    calm, spec.when_full)  # fmt: skip
    keep = {s.variant.name for s in blind.shares}
    plan = resize(catalog, groups, ideal, result.replicas, spec.workload, allowed, keep)
    memory = result.memory
    waits: list[float] = []
    if spec.when_full != "wait":  # when a move may come due: a bound or the interval ends
        deficits = [n for n in planned if planned[n] > result.replicas.get(n, 0)]
        waits += counts.waits
        waits += [calm.unschedulable_seconds - (now - memory.room_since.get(n, now))
                  for n in deficits]  # fmt: skip
        if (counts.stuck or deficits) and memory.last_move is not None:
            waits.append(calm.interval_seconds - (now - memory.last_move))
    waits = [w for w in waits if w > 0]
    recheck = max(1.0, min(waits)) if waits else None
    return plan, (result.moves, memory, counts, recheck)


def pod_counts(pods: Sequence[Mapping[str, Any]], wall: dt.datetime, bound: float) -> PodCounts:
    """Per variant, the pods the scheduler found no node for, and those past `bound`."""
    unschedulable: dict[str, int] = {}
    stuck: dict[str, tuple[int, float]] = {}
    waits: list[float] = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if metadata.get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
            continue
        seconds = unschedulable_seconds(pod, wall)
        if seconds is None:
            continue
        variant = str((metadata.get("labels") or {}).get(names.VARIANT_LABEL))
        unschedulable[variant] = unschedulable.get(variant, 0) + 1
        if seconds > bound:
            count, longest = stuck.get(variant, (0, 0.0))
            stuck[variant] = (count + 1, max(longest, seconds))
        else:
            waits.append(bound - seconds + 0.5)
    return PodCounts(unschedulable, stuck, tuple(waits))


def move_message(move: Move, room: Room | None, bound: float) -> str:
    """The Event of one move: `3 replicas avx512vnni → armv9: avx512vnni full for 300 s,
    armv9 has room for 12`."""
    replicas = f"{move.replicas} replica{_s(move.replicas)}"
    has = f"{move.target} has room for {room.of(move.target)}" if room else "room unknown"
    if move.why == "unschedulable":
        why = f"{move.source} full for {move.seconds:.0f} s (Unschedulable over {bound:g} s)"
    else:
        why = f"room back on {move.target} for {move.seconds:.0f} s"
    return f"{replicas} {move.source} → {move.target}: {why}, {has}"


def build_status(
    decision: Decision,
    actual: Mapping[str, Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    now: str,
    failures: Sequence[str] = (),
) -> dict[str, Any]:
    """The status to publish after the decision's writes (`failures`: their errors)."""
    problem = decision.problem
    if problem is None and failures:
        problem = Problem(APPLY_FAILED, "; ".join(failures))
    status = _previous(previous) if decision.spec is None else _fleet_status(decision, actual)
    status.observed_generation = decision.generation
    pending = bool(decision.actions) or not _rolled_out(decision, actual)
    status.conditions = _conditions(
        decision, status, problem=problem, pending=pending, previous=previous, now=now
    )
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def status_changed(new: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    return new != _previous(previous).model_dump(by_alias=True, exclude_none=True, mode="json")


def _previous(previous: Mapping[str, Any] | None) -> models.TicketWorkerStatus:
    try:
        return models.TicketWorkerStatus.model_validate(previous or {})
    except ValidationError:
        return models.TicketWorkerStatus()  # written by someone else: start over


def _fleet_status(
    decision: Decision, actual: Mapping[str, Mapping[str, Any]]
) -> models.TicketWorkerStatus:
    assert decision.spec is not None and decision.plan is not None
    spec = decision.spec
    cpus = spec.replica_cpus()
    variants = []
    for share in decision.plan.shares:
        name = deployment_name(decision.owner.name, share.variant.name)
        ready = _ready(actual.get(name))
        one = per_replica(share.variant, spec.workload, cpus, spec.throughput_per_replica)
        variants.append(
            models.VariantStatus(
                variant=share.variant.name,
                deployment=name,
                nodes=share.node_count,
                desired_replicas=share.replicas,
                ready_replicas=ready,
                score=share.variant.score(spec.workload),
                throughput_per_replica=one.tickets,
                throughput_source=one.source,
                expected_throughput=round(one.tickets * ready, 3) if one.tickets else None,
                unschedulable_replicas=(
                    decision.pods.unschedulable.get(share.variant.name, 0)
                    if decision.room
                    else None
                ),
                room=decision.room.of(share.variant.name) if decision.room else None,
            )
        )
    owned = [d for d in actual.values() if owned_by(d, decision.owner)]
    return models.TicketWorkerStatus(
        replicas=sum(int((d.get("status") or {}).get("replicas") or 0) for d in owned),
        ready_replicas=sum(v.ready_replicas for v in variants),
        selector=pods_selector(decision.owner),
        variant_summary=" ".join(
            f"{v.variant}={v.ready_replicas}/{v.desired_replicas}" for v in variants
        ),
        expected_throughput=round(sum(v.expected_throughput or 0.0 for v in variants), 3),
        throughput_target=spec.throughput,
        planned_throughput=decision.throughput.expected if decision.throughput else None,
        variants=variants,
        plan_basis=decision.memory.anchor if decision.memory else None,
    )


def _ready(deployment: Mapping[str, Any] | None) -> int:
    if deployment is None or terminating(deployment):
        return 0
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def _rolled_out(decision: Decision, actual: Mapping[str, Mapping[str, Any]]) -> bool:
    """Every planned Deployment observed, updated and ready; no leftover still owned."""
    if decision.plan is None:
        return True
    planned = set()
    for share in decision.plan.shares:
        name = deployment_name(decision.owner.name, share.variant.name)
        planned.add(name)
        live = actual.get(name)
        if live is None or terminating(live):
            return False
        status = live.get("status") or {}
        if (
            int(status.get("observedGeneration") or 0)
            < int(live["metadata"].get("generation") or 0)
            or int(status.get("updatedReplicas") or 0) != share.replicas
            or int(status.get("readyReplicas") or 0) != share.replicas
            or int(status.get("replicas") or 0) != share.replicas
        ):
            return False
    leftovers = [n for n, d in actual.items() if n not in planned and owned_by(d, decision.owner)]
    return not leftovers


Triple = tuple[models.ConditionStatus, str, str]  # status, reason, message


def _target_reachable(sized: ThroughputPlan) -> Triple:
    """Whether the planned replicas reach spec.throughput, and by how much they miss."""
    planned = f"{sized.plan.replicas} replicas ({describe_plan(sized.plan)})"
    if sized.shortfall <= 0:
        return ("True", "TargetReached", f"target {sized.target:g} tickets/s: {planned},"
                f" {sized.expected:g} tickets/s (estimate unless measured)")  # fmt: skip
    return (
        "False",
        "TargetUnreachable",
        f"target {sized.target:g} tickets/s: the fleet's nodes hold {planned} reaching"
        f" {sized.expected:g} tickets/s, {sized.shortfall:g} short"
        " (add nodes, or lower spec.throughput)",
    )


def _capacity_limited(decision: Decision) -> Triple | None:
    """Whether room keeps the plan from today's (room-blind) one: by how much, and where
    the replicas went (None: room unknown, or sized by throughput)."""
    spec, room, blind, plan = decision.spec, decision.room, decision.blind, decision.plan
    if spec is None or room is None or blind is None or plan is None or blind.problem:
        return None
    measure = room.of if spec.placement == "best" else room.on_best_nodes
    shorts = [(s.variant.name, s.replicas, measure(s.variant.name)) for s in blind.shares
              if s.replicas > measure(s.variant.name)]  # fmt: skip
    if not shorts:
        return (
            "False",
            "RoomEnough",
            f"room for every replica of the plan ({describe_plan(blind)})",
        )
    parts = "; ".join(f"{v} has room for {have} of {want} ({want - have} short)"
                      for v, want, have in shorts)  # fmt: skip
    message = f"{parts}: plan {describe_plan(plan)}"
    if spec.when_full == "wait":
        message += " (whenFull: wait: the excess waits, Unschedulable, for its pool to grow)"
    unschedulable = sum(decision.pods.unschedulable.values())
    if unschedulable:
        message += f"; {unschedulable} pod{_s(unschedulable)} Unschedulable"
    return ("True", "WaitingForRoom" if spec.when_full == "wait" else "Spilled", message)


def _conditions(
    decision: Decision,
    status: models.TicketWorkerStatus,
    *,
    problem: Problem | None,
    pending: bool,
    previous: Mapping[str, Any] | None,
    now: str,
) -> list[models.Condition]:
    """Ready, Progressing, Degraded; a condition keeps its time while its status holds."""
    desired = decision.plan.replicas if decision.plan else 0
    readiness = f"{status.ready_replicas}/{desired} replicas ready"
    ready: Triple
    if problem is not None:
        ready = ("False", problem.reason, problem.message)
    elif pending:
        ready = ("False", "ReplicasNotReady", readiness)
    else:
        count = len(status.variants)
        ready = ("True", "AllReplicasReady", f"{readiness} on {count} variant{_s(count)}")
    progressing: Triple
    if problem is not None and problem.reason != APPLY_FAILED:
        progressing = ("False", problem.reason, "waiting for the spec or the fleet to change")
    elif pending:
        progressing = ("True", "RollingOut", f"{readiness}; plan: {decision.summary}")
    else:
        progressing = ("False", "Stable", f"plan: {decision.summary}")
    degraded: Triple = (
        ("True", problem.reason, problem.message) if problem else ("False", "AsExpected", "")
    )
    before = {c.type: c for c in _previous(previous).conditions}
    kinds: tuple[tuple[models.ConditionType, Triple], ...] = (
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
    )
    if decision.throughput is not None:
        kinds += (("TargetReachable", _target_reachable(decision.throughput)),)
    limited = _capacity_limited(decision)
    if limited is not None:
        kinds += (("CapacityLimited", limited),)
    out = []
    for kind, (state, reason, message) in kinds:
        old = before.get(kind)
        since = old.last_transition_time if old is not None and old.status == state else now
        out.append(
            models.Condition(
                type=kind,
                status=state,
                reason=reason,
                message=message[:4096],
                last_transition_time=since,
                observed_generation=decision.generation,
            )
        )
    return out


def _s(count: int) -> str:
    return "" if count == 1 else "s"

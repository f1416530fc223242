"""Replica planning: how many replicas of a workload each ISA variant gets.

`spread` splits replicas across the variants the fleet offers, in proportion to
the allocatable CPU of the nodes whose best variant each one is (largest
remainder). `best` puts every replica on the single best variant on offer.
Only nodes a pod of the template could be scheduled on count (nodeSelector,
required affinity, NoSchedule/NoExecute taints vs. tolerations, readiness).

With the fleet's free room (`Room`: per node, how many more replicas fit, from
`isa.capacity`, the TicketWorker's own pods not counted), `best` fills the best
variant up to its room, then the next in rank order (`next-best`), or leaves the
excess on the best growable variant (`wait`); `spread` keeps the room-blind split while
every share fits, else weighs each variant by the free CPU of its nodes and caps each
share at its room the same way. Without load both plans are the room-blind ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.constraints import Constraints, constraints_of
from flox_isa.isa.fleet import FeatureGroup, Offer, fleet_offers, split_replicas
from flox_isa.isa.fleet_index import FleetIndex, index_nodes
from flox_isa.isa.placement import DEFAULT_WHEN_FULL, WhenFull, best_growable
from flox_isa.isa.scheduling import NodeState
from flox_isa.isa.selection import best_of, candidates, choose, fits, rank_key

Placement = Literal["spread", "best"]
PLACEMENTS: Final[tuple[Placement, ...]] = get_args(Placement)
DEFAULT_PLACEMENT: Final[Placement] = "spread"


@dataclass(frozen=True, slots=True)
class Share:
    """One variant's part of a plan: the nodes it is planned for, and its replicas."""

    variant: Variant
    node_count: int
    allocatable_cpu: float
    replicas: int
    # The allowed variants that rank above this one for the workload (same arch):
    # a node any of them fits is not this variant's, whatever the plan says.
    outranked_by: tuple[Variant, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Shares in catalog order; `problem` says why nothing can be placed (else "")."""

    shares: tuple[Share, ...]
    problem: str = ""

    @property
    def replicas(self) -> int:
        return sum(s.replicas for s in self.shares)


@dataclass(frozen=True, slots=True)
class Room:
    """The fleet's free room for one replica of a TicketWorker (its own pods not counted).

    `fit`: per eligible node, how many more replicas fit there (per node, as the scheduler
    counts: `isa.capacity`); `busy_cpu`: per node, the cores other pods request;
    `nodes`: per allowed variant, the eligible nodes that run it (best for it or not);
    `best_nodes`: per variant, the eligible nodes whose best variant it is (disjoint).
    """

    fit: Mapping[str, int]
    busy_cpu: Mapping[str, float]
    nodes: Mapping[str, tuple[str, ...]]
    best_nodes: Mapping[str, tuple[str, ...]]

    def of(self, variant: str) -> int:
        """Replicas that fit on the eligible nodes that run `variant`."""
        return sum(self.fit.get(n, 0) for n in self.nodes.get(variant, ()))

    def on_best_nodes(self, variant: str) -> int:
        """Replicas that fit on the nodes whose best variant is `variant`."""
        return sum(self.fit.get(n, 0) for n in self.best_nodes.get(variant, ()))


def room_on(  # noqa: PLR0917 - the fleet, the template, and the per-node probe
    catalog: Catalog,
    fleet: FleetIndex,
    constraints: Constraints,
    workload: Workload,
    allowed: Collection[str] | None,
    probe: Callable[[str], tuple[int, float]],
) -> Room:
    """The `Room` a pod with `constraints` sees; `probe(node)` answers (replicas that fit,
    cores other pods request) for one node."""
    allowed_variants = candidates(catalog, allowed)
    fits_: dict[str, int] = {}
    busy: dict[str, float] = {}
    nodes: dict[str, list[str]] = {}
    best_nodes: dict[str, list[str]] = {}
    for group, members in fleet.eligible(constraints).groups:
        names_ = [m.name for m in members]
        for name in names_:
            fits_[name], busy[name] = probe(name)
        for variant in allowed_variants:
            if fits(variant, group.features):
                nodes.setdefault(variant.name, []).extend(names_)
        best = choose(catalog, group.features, workload, allowed).variant
        if best is not None:
            best_nodes.setdefault(best.name, []).extend(names_)
    return Room(
        fits_,
        busy,
        {k: tuple(v) for k, v in nodes.items()},
        {k: tuple(v) for k, v in best_nodes.items()},
    )


def eligible_groups(fleet: FleetIndex, constraints: Constraints) -> tuple[FeatureGroup, ...]:
    """Nodes a pod with `constraints` could land on, aggregated by CPU feature set: the
    fleet index's eligibility query (`FleetIndex.eligible`), remembered with it."""
    return fleet.eligible(constraints).feature_groups()


def group_eligible(
    nodes: Iterable[NodeState], pod_spec: Mapping[str, Any]
) -> tuple[FeatureGroup, ...]:
    """`eligible_groups` for a plain list of nodes and a pod spec given as data (files, tests)."""
    return eligible_groups(index_nodes(nodes), constraints_of(pod_spec))


def unknown_variants(catalog: Catalog, requested: Iterable[str]) -> tuple[str, ...]:
    known = set(catalog.names)
    return tuple(name for name in requested if name not in known)


def plan_replicas(
    catalog: Catalog,
    groups: Iterable[FeatureGroup],
    *,
    workload: Workload,
    replicas: int,
    placement: Placement = DEFAULT_PLACEMENT,
    allowed: Collection[str] | None = None,
    room: Room | None = None,
    when_full: WhenFull = DEFAULT_WHEN_FULL,
    growable: Collection[str] | None = None,
) -> Plan:
    """The replica plan for one workload on a fleet of eligible node groups (and, given
    `room`, on what is free there: see the module doc)."""
    groups = tuple(groups)
    offered = {o.variant.name: o for o in fleet_offers(catalog, groups, workload, allowed)}
    if not offered:
        return Plan((), _nothing_offered(catalog, groups, allowed))
    if room is not None:
        return _plan_with_room(catalog, groups, offered, workload, replicas, placement,
                               allowed, room, when_full, growable)  # fmt: skip
    if placement == "best":
        best = best_of((v for v in catalog.variants if v.name in offered), workload)
        assert best is not None  # `offered` is non-empty and holds catalog names
        return Plan((_share(catalog, groups, best, replicas, workload, allowed),))
    split = split_replicas({n: o.allocatable_cpu for n, o in offered.items()}, replicas)
    return Plan(
        tuple(
            Share(
                v,
                offered[v.name].node_count,
                offered[v.name].allocatable_cpu,
                split[v.name],
                outranking(catalog, v, workload, allowed),
            )
            for v in catalog.variants
            if v.name in offered
        )
    )


def _share(  # noqa: PLR0917
    catalog: Catalog,
    groups: Sequence[FeatureGroup],
    variant: Variant,
    replicas: int,
    workload: Workload,
    allowed: Collection[str] | None,
) -> Share:
    """A share on every eligible node that runs `variant` (best for it or not)."""
    fitting = [g for g in groups if fits(variant, g.features)]
    return Share(
        variant,
        sum(g.node_count for g in fitting),
        sum(g.allocatable_cpu for g in fitting),
        replicas,
        outranking(catalog, variant, workload, allowed),
    )


def resize(  # noqa: PLR0917
    catalog: Catalog,
    groups: Iterable[FeatureGroup],
    plan: Plan,
    replicas: Mapping[str, int],
    workload: Workload,
    allowed: Collection[str] | None,
    keep: Collection[str] = (),
) -> Plan:
    """`plan` with `replicas` per variant: a share for each variant with replicas, and for
    those in `keep` (the room-blind plan's: their Deployments stay, even at 0, however
    the room moves)."""
    groups = tuple(groups)
    mine = {s.variant.name: s for s in plan.shares}
    shares = []
    for variant in catalog.variants:
        count = int(replicas.get(variant.name, 0))
        if variant.name in mine:
            if count > 0 or variant.name in keep:
                shares.append(dataclasses.replace(mine[variant.name], replicas=count))
        elif count > 0 or variant.name in keep:
            shares.append(_share(catalog, groups, variant, count, workload, allowed))
    return Plan(tuple(shares), plan.problem)


def ranked_variants(
    catalog: Catalog, room: Room, workload: Workload, allowed: Collection[str] | None
) -> list[Variant]:
    """The allowed variants some eligible node runs, best first (the spill order)."""
    return sorted(
        (v for v in candidates(catalog, allowed) if room.nodes.get(v.name)),
        key=lambda v: rank_key(v, workload),
    )


def fill(
    ranked: Sequence[str],
    room: Room,
    replicas: int,
    start: Mapping[str, int] | None = None,
    *,
    only_first: bool = False,
) -> tuple[dict[str, int], int]:
    """Replicas per variant, each variant in `ranked` order up to the room its nodes have
    left (nodes shared by several variants hold each slot once), and the replicas left
    over. `start`: replicas already planned per variant, taken from the room first (from
    the variant's own best nodes first: those are disjoint, so each count is held)."""
    left = dict(room.fit)
    counts = dict.fromkeys(ranked, 0)
    for name, count in (start or {}).items():
        taken = _take(left, room.best_nodes.get(name, ()), count)
        _take(left, room.nodes.get(name, ()), count - taken)
        counts[name] = counts.get(name, 0) + count
    remaining = replicas
    for name in ranked:
        if remaining <= 0:
            break
        taken = _take(left, room.nodes.get(name, ()), remaining)
        counts[name] += taken
        remaining -= taken
        if only_first:
            break
    return counts, remaining


def _busy(room: Room, variant: str) -> float:
    """Cores other pods request on the nodes whose best variant is `variant`."""
    return sum(room.busy_cpu.get(n, 0.0) for n in room.best_nodes.get(variant, ()))


def _take(left: dict[str, int], nodes: Iterable[str], wanted: int) -> int:
    """Take up to `wanted` slots from `nodes`, first fit; how many were taken."""
    taken = 0
    for node in nodes:
        if taken >= wanted:
            break
        k = min(left.get(node, 0), wanted - taken)
        if k > 0:
            left[node] -= k
            taken += k
    return taken


def _plan_with_room(  # noqa: PLR0917
    catalog: Catalog,
    groups: Sequence[FeatureGroup],
    offered: Mapping[str, Offer],
    workload: Workload,
    replicas: int,
    placement: Placement,
    allowed: Collection[str] | None,
    room: Room,
    when_full: WhenFull,
    growable: Collection[str] | None,
) -> Plan:
    ranked = ranked_variants(catalog, room, workload, allowed)
    if not ranked:  # offered, but no eligible node known to the room (not synced yet)
        return plan_replicas(catalog, groups, workload=workload, replicas=replicas,
                             placement=placement, allowed=allowed)  # fmt: skip
    names_ = [v.name for v in ranked]
    _, overflow = best_growable(ranked, growable)
    if placement == "best":
        counts, excess = fill(names_, room, replicas, only_first=when_full == "wait")
        counts[overflow.name] += excess
        keep = {names_[0], overflow.name}
    else:
        counts = _spread_with_room(offered, names_, room, replicas, when_full, overflow.name)
        keep = set(offered)
    by_name = {v.name: v for v in ranked}
    return Plan(
        tuple(
            _share(catalog, groups, by_name[v.name], counts[v.name], workload, allowed)
            if placement == "best" or v.name not in offered
            else Share(
                v,
                offered[v.name].node_count,
                offered[v.name].allocatable_cpu,
                counts[v.name],
                outranking(catalog, v, workload, allowed),
            )
            for v in catalog.variants
            if v.name in by_name and (counts[v.name] or v.name in keep)
        )
    )


def _spread_with_room(  # noqa: PLR0917
    offered: Mapping[str, Offer],
    ranked: Sequence[str],
    room: Room,
    replicas: int,
    when_full: WhenFull,
    overflow: str,
) -> dict[str, int]:
    """The room-blind split while every share fits its variant's room (other pods' load
    does not move a plan that fits); else split by the free CPU of each variant's nodes,
    and a share beyond its room goes on in rank order (next-best) or to the best growable
    variant (wait)."""
    split = split_replicas({name: o.allocatable_cpu for name, o in offered.items()}, replicas)
    if all(count <= room.on_best_nodes(name) for name, count in split.items()):
        return {**dict.fromkeys(ranked, 0), **split}
    weights = {name: max(0.0, o.allocatable_cpu - _busy(room, name)) for name, o in offered.items()}
    split = split_replicas(weights, replicas)
    counts = dict.fromkeys(ranked, 0)
    excess = 0
    for name in ranked:
        share = split.get(name, 0)
        if share:
            cap = room.on_best_nodes(name)
            counts[name] = min(share, cap)
            excess += share - counts[name]
    if excess and when_full == "next-best":
        counts, excess = fill(ranked, room, excess, start=counts)
    counts[overflow] += excess
    return counts


def outranking(
    catalog: Catalog, variant: Variant, workload: Workload, allowed: Collection[str] | None
) -> tuple[Variant, ...]:
    """The allowed variants of `variant`'s arch that `choose` would pick over it."""
    mine = rank_key(variant, workload)
    return tuple(
        v
        for v in candidates(catalog, allowed)
        if v.arch == variant.arch and v.name != variant.name and rank_key(v, workload) < mine
    )


# One literal of a node condition: (NFD flag, whether the node has it).
FlagLiteral = tuple[str, bool]
BEST_NODE_WEIGHT: Final = 100


def best_node_cubes(
    variant: Variant, outranked_by: Iterable[Variant]
) -> tuple[tuple[FlagLiteral, ...], ...] | None:
    """Disjoint flag conjunctions that, on nodes `variant` fits, cover exactly its best nodes.

    A node `variant` fits is its best node iff no outranking variant fits it,
    i.e. for each outranking variant the node lacks at least one of the flags
    that variant needs and `variant` does not (its distinguishing flags).
    That is a conjunction of disjunctions; the scheduler only sums the weights
    of matched conjunctions, so it is expanded here (Shannon expansion on the
    most shared flag) into conjunctions no two of which a node can both match.
    So every best node matches exactly one and every other node none: with one
    weight per conjunction, best nodes all score that weight and others 0.

    `()` (one empty conjunction would be always true) means nothing outranks
    the variant: no preference is needed. None means some outranking variant
    fits wherever `variant` does: it is never the best, there is nothing to prefer.
    """
    clauses = frozenset(frozenset(o.flags - variant.flags) for o in outranked_by)
    if frozenset() in clauses:
        return None
    return tuple(_expand(clauses)) if clauses else ()


def _expand(clauses: frozenset[frozenset[str]]) -> Iterable[tuple[FlagLiteral, ...]]:
    """Conjunctions, pairwise exclusive, whose union is: every clause misses a flag."""
    if not clauses:
        yield ()
        return
    if frozenset() in clauses:  # every flag of a clause present: an outranking variant fits
        return
    counts: dict[str, int] = {}
    for clause in clauses:
        for flag in clause:
            counts[flag] = counts.get(flag, 0) + 1
    flag = min(counts, key=lambda f: (-counts[f], f))
    for cube in _expand(frozenset(c for c in clauses if flag not in c)):
        yield ((flag, False), *cube)
    for cube in _expand(frozenset(c - {flag} for c in clauses)):
        yield ((flag, True), *cube)


def best_node_preference(variant: Variant, outranked_by: Iterable[Variant]) -> list[dict[str, Any]]:
    """Preferred node affinity terms that steer `variant`'s pods to its best nodes.

    Soft on purpose: when the best nodes are full, pods may still use any node
    the variant's nodeSelector allows. Each term weighs 100, and a best node
    matches exactly one of them (see `best_node_cubes`), so the scheduler's
    node-affinity score is 100 on best nodes and 0 on the others. `In`/`NotIn`
    `["true"]` read a flag exactly as `features_from_labels` does (`NotIn` also
    matches a node without the label).
    """
    cubes = best_node_cubes(variant, outranked_by)
    return [
        {
            "weight": BEST_NODE_WEIGHT,
            "preference": {
                "matchExpressions": [
                    {
                        "key": names.cpuid_label(flag),
                        "operator": "In" if present else "NotIn",
                        "values": ["true"],
                    }
                    for flag, present in cube
                ]
            },
        }
        for cube in cubes or ()
    ]


def describe_plan(plan: Plan) -> str:
    """`avx512=3 avx512vnni=2`: a one-line summary for logs and status."""
    return " ".join(f"{s.variant.name}={s.replicas}" for s in plan.shares) or "-"


def _nothing_offered(
    catalog: Catalog, groups: Sequence[FeatureGroup], allowed: Collection[str] | None
) -> str:
    wanted = [n for n in catalog.names if allowed is None or n in allowed]
    eligible_nodes = sum(g.node_count for g in groups)
    return (
        f"no node supports any of [{', '.join(wanted)}]"
        f" ({eligible_nodes} node{'' if eligible_nodes == 1 else 's'} match the template's"
        " nodeSelector, affinity and tolerations)"
    )


@dataclass(frozen=True, slots=True)
class ThroughputPlan:
    """The fewest replicas that reach `target` tickets/s, and what they reach."""

    plan: Plan
    target: float
    expected: float  # tickets/s of the planned replicas
    reachable: float  # the most the fleet's room reaches with these replicas' CPUs

    @property
    def shortfall(self) -> float:
        return max(0.0, round(self.target - self.expected, 3))


def plan_throughput(
    catalog: Catalog,
    groups: Iterable[FeatureGroup],
    *,
    workload: Workload,
    target: float,
    replica_cpus: float,
    tickets_of: Callable[[Variant], float],
    allowed: Collection[str] | None = None,
    room: Room | None = None,
) -> ThroughputPlan:
    """The fewest replicas reaching `target`: the variants the fleet offers, best tickets/s
    per replica first, each up to the replicas its nodes hold: per-node fit on the nodes
    whose best variant it is, given `room`; else allocatable CPU over the replica's CPUs."""
    groups = tuple(groups)
    offers = fleet_offers(catalog, groups, workload, allowed)
    if not offers:
        return ThroughputPlan(Plan((), _nothing_offered(catalog, groups, allowed)), target, 0, 0)
    cpus = max(replica_cpus, 1e-9)
    ranked = sorted(offers, key=lambda o: (-tickets_of(o.variant), rank_key(o.variant, workload)))
    replicas: dict[str, int] = {}
    expected = reachable = 0.0
    for offer in ranked:
        each = tickets_of(offer.variant)
        if room is None:
            fit = int(offer.allocatable_cpu // cpus)
        else:
            fit = room.on_best_nodes(offer.variant.name)
        reachable += each * fit
        if expected >= target or each <= 0 or fit == 0:
            continue
        count = min(fit, math.ceil((target - expected) / each - 1e-9))
        replicas[offer.variant.name] = count
        expected += each * count
    shares = tuple(
        Share(
            o.variant,
            o.node_count,
            o.allocatable_cpu,
            replicas[o.variant.name],
            outranking(catalog, o.variant, workload, allowed),
        )
        for o in offers  # catalog order
        if replicas.get(o.variant.name)
    )
    return ThroughputPlan(Plan(shares), target, round(expected, 3), round(reachable, 3))

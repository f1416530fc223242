"""Replica planning: how many replicas of a workload each ISA variant gets.

`spread` splits replicas across the variants the fleet offers, in proportion to
the allocatable CPU of the nodes whose best variant each one is (largest
remainder). `best` puts every replica on the single best variant on offer.
Only nodes a pod of the template could be scheduled on count (nodeSelector,
required affinity, NoSchedule/NoExecute taints vs. tolerations, readiness).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.features import Features
from flox_isa.isa.fleet import FeatureGroup, fleet_offers, split_replicas
from flox_isa.isa.offer import FleetIndex, index_nodes, names_per_node_label
from flox_isa.isa.scheduling import NodeState, eligible
from flox_isa.isa.selection import best_of, candidates, fits, rank_key

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


def eligible_groups(fleet: FleetIndex, pod_spec: Mapping[str, Any]) -> tuple[FeatureGroup, ...]:
    """Nodes a pod with `pod_spec` could land on, aggregated by CPU feature set.

    Looks at each group of look-alike nodes once, unless the pod selects on a
    per-node label (then node by node, still correct).
    """
    per_node = names_per_node_label(pod_spec, fleet.per_node_keys)
    totals: dict[Features, tuple[int, float]] = {}
    for group in fleet.groups:
        if per_node:
            members = [m for m in group.members if eligible(group.member_state(m), pod_spec)]
        elif eligible(group.representative, pod_spec):
            members = list(group.members)
        else:
            continue
        if members:
            count, cpu = totals.get(group.features, (0, 0.0))
            totals[group.features] = (
                count + len(members),
                cpu + sum(m.allocatable_cpu for m in members),
            )
    return tuple(FeatureGroup(f, count, cpu) for f, (count, cpu) in totals.items())


def group_eligible(
    nodes: Iterable[NodeState], pod_spec: Mapping[str, Any]
) -> tuple[FeatureGroup, ...]:
    """`eligible_groups` for a plain list of nodes (files, tests)."""
    return eligible_groups(index_nodes(nodes), pod_spec)


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
) -> Plan:
    """The replica plan for one workload on a fleet of eligible node groups."""
    groups = tuple(groups)
    offered = {o.variant.name: o for o in fleet_offers(catalog, groups, workload, allowed)}
    if not offered:
        return Plan((), _nothing_offered(catalog, groups, allowed))
    if placement == "best":
        best = best_of((v for v in catalog.variants if v.name in offered), workload)
        assert best is not None  # `offered` is non-empty and holds catalog names
        fitting = [g for g in groups if fits(best, g.features)]
        return Plan(
            (
                Share(
                    best,
                    sum(g.node_count for g in fitting),
                    sum(g.allocatable_cpu for g in fitting),
                    replicas,
                    outranking(catalog, best, workload, allowed),
                ),
            )
        )
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
) -> ThroughputPlan:
    """The fewest replicas reaching `target`: the variants the fleet offers, best tickets/s
    per replica first, each up to the replicas its nodes hold (allocatable CPU over the
    replica's CPUs; capacity-aware room is not modelled yet)."""
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
        room = int(offer.allocatable_cpu // cpus)
        reachable += each * room
        if expected >= target or each <= 0 or room == 0:
            continue
        count = min(room, math.ceil((target - expected) / each - 1e-9))
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

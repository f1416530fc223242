"""A fleet's view: which variants its nodes offer, and how replicas split across them."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.features import Features
from flox_isa.isa.quantity import parse_quantity
from flox_isa.isa.selection import choose


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a decision needs to know of one node."""

    name: str
    features: Features
    allocatable_cpu: float = 0.0
    instance_type: str = ""
    # Every allocatable resource in capacity units (see `isa.capacity`), sorted by name.
    allocatable: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Offer:
    """One variant the fleet offers: the nodes whose best variant it is."""

    variant: Variant
    node_count: int
    allocatable_cpu: float


def parse_cpu_quantity(quantity: str) -> float:
    """Cores in a Kubernetes CPU quantity ("4", "3920m", "1.5"); ValueError if malformed."""
    try:
        return float(parse_quantity(quantity))
    except ValueError:
        raise ValueError(f"not a CPU quantity: {quantity!r}") from None


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """Nodes that share one CPU feature set (a fleet has few of them)."""

    features: Features
    node_count: int
    allocatable_cpu: float


def feature_groups(nodes: Iterable[NodeInfo]) -> tuple[FeatureGroup, ...]:
    """Nodes aggregated by feature set, in first-seen order."""
    return aggregate((node.features, 1, node.allocatable_cpu) for node in nodes)


def aggregate(parts: Iterable[tuple[Features, int, float]]) -> tuple[FeatureGroup, ...]:
    """(features, node count, allocatable CPU) summed per feature set, in first-seen order."""
    totals: dict[Features, tuple[int, float]] = {}
    for features, nodes, cores in parts:
        count, cpu = totals.get(features, (0, 0.0))
        totals[features] = (count + nodes, cpu + cores)
    return tuple(FeatureGroup(f, count, cpu) for f, (count, cpu) in totals.items())


def fleet_offers(
    catalog: Catalog,
    groups: Iterable[FeatureGroup],
    workload: Workload,
    allowed: Collection[str] | None = None,
) -> tuple[Offer, ...]:
    """Each node counted once, under its best variant; offers in catalog order.

    One decision per feature group, not per node: the cost does not grow with the fleet.
    """
    counts: dict[str, tuple[int, float]] = {}
    for group in groups:
        best = choose(catalog, group.features, workload, allowed).variant
        if best is not None:
            count, cpu = counts.get(best.name, (0, 0.0))
            counts[best.name] = (count + group.node_count, cpu + group.allocatable_cpu)
    return tuple(Offer(v, *counts[v.name]) for v in catalog.variants if v.name in counts)


def split_replicas(weights: dict[str, float], total: int) -> dict[str, int]:
    """Split `total` in proportion to `weights` by largest remainder (Hamilton).

    Ties in remainder go to the larger weight, then to the name: deterministic.
    Zero-weight entries get nothing; if every weight is zero, split evenly.
    """
    if total < 0:
        raise ValueError("total replicas must be >= 0")
    if not weights:
        return {}
    if sum(weights.values()) <= 0:
        weights = dict.fromkeys(weights, 1.0)
    weight_sum = sum(weights.values())
    quotas = {name: total * w / weight_sum for name, w in weights.items()}
    shares = {name: int(q) for name, q in quotas.items()}
    leftover = total - sum(shares.values())
    by_remainder = sorted(quotas, key=lambda n: (-(quotas[n] - shares[n]), -weights[n], n))
    for name in by_remainder[:leftover]:
        shares[name] += 1
    return shares

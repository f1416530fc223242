"""Expected throughput of placed pods, next to the baseline build of each architecture.

Both sides use the one throughput model (`isa.throughput`): score x the pod's CPUs, an
estimate (bf16-training ranks count as 0: they are no throughput).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.planning import ThroughputPlan
from flox_isa.isa.throughput import per_replica

# The guide's current practice: one build per architecture, the oldest that runs on all
# of it (x86: avx2 everywhere; Graviton: armv8.2). A pod is only ever compared with a
# build its own CPU can run: an arm64 pod never with the x86 avx2 build.
DEFAULT_BASELINES: Final = {"amd64": "avx2", "arm64": "armv8.2"}


class BaselineError(ValueError):
    """A --baseline that names no catalog variant, or two of one architecture."""


@dataclass(frozen=True, slots=True)
class Placement:
    """One running pod: where it landed and which build it runs."""

    instance_type: str
    variant: str
    workload: Workload
    cpus: float = 1.0  # what the pod can use (`throughput.replica_cpus`)


@dataclass(frozen=True, slots=True)
class ReportRow:
    instance_type: str
    variant: str
    workload: Workload
    pods: int
    throughput: float  # estimated tickets/s: score x CPUs, summed over the pods
    baseline_throughput: float  # the same pods on their architecture's baseline build
    baseline: str | None = None  # that build (None: no baseline for the arch, counted as is)

    @property
    def ratio(self) -> float:
        return self.throughput / self.baseline_throughput if self.baseline_throughput else 1.0


def baselines(
    catalog: Catalog, given: Iterable[str] = (), defaults: Mapping[str, str] = DEFAULT_BASELINES
) -> dict[str, str]:
    """Architecture -> baseline variant: `given` replaces the default of its architecture.

    A default the catalog does not have is dropped (its pods count at their own score).
    """
    chosen = {arch: name for arch, name in defaults.items() if catalog.get(name) is not None}
    seen: dict[str, str] = {}
    for name in given:
        variant = catalog.get(name)
        if variant is None:
            raise BaselineError(
                f"baseline variant {name!r} is not in the catalog; allowed:"
                f" {', '.join(catalog.names)}"
            )
        if variant.arch in seen:
            raise BaselineError(
                f"baselines {seen[variant.arch]} and {name} are both {variant.arch}:"
                " give at most one per architecture"
            )
        seen[variant.arch] = name
    return {**chosen, **seen}


def throughput_rows(
    placements: Iterable[Placement],
    catalog: Catalog,
    baseline: Mapping[str, str] = DEFAULT_BASELINES,
) -> list[ReportRow]:
    """One row per (instance type, workload, variant), sorted for a stable printout.

    `baseline` maps an architecture to its baseline variant; each pod is counted at the
    baseline of its own variant's architecture.
    """
    for name in baseline.values():
        if catalog.get(name) is None:
            raise BaselineError(f"baseline variant {name!r} is not in the catalog")
    totals: dict[tuple[str, Workload, str], tuple[int, float, float]] = {}
    for p in placements:
        key = (p.instance_type, p.workload, p.variant)
        pods, tickets, base_tickets = totals.get(key, (0, 0.0, 0.0))
        variant = catalog.get(p.variant)
        base_name = baseline.get(variant.arch) if variant else None
        base = catalog.get(base_name) if base_name else None
        ours = per_replica(variant, p.workload, p.cpus).tickets if variant else None
        theirs = per_replica(base, p.workload, p.cpus).tickets if base else ours
        totals[key] = (pods + 1, tickets + (ours or 0.0), base_tickets + (theirs or 0.0))
    rows = []
    for (instance_type, workload, variant_name), (pods, tickets, base_tickets) in sorted(
        totals.items()
    ):
        variant = catalog.get(variant_name)
        base_name = baseline.get(variant.arch) if variant else None
        rows.append(
            ReportRow(
                instance_type,
                variant_name,
                workload,
                pods,
                round(tickets, 3),
                round(base_tickets, 3),
                base_name,
            )
        )
    return rows


def speedup(rows: Iterable[ReportRow]) -> float:
    """Total expected throughput over the baseline's (1.0 when there is nothing)."""
    rows = list(rows)
    baseline = sum(r.baseline_throughput for r in rows)
    return sum(r.throughput for r in rows) / baseline if baseline else 1.0


def sized_line(sized: ThroughputPlan) -> str:
    """`target 600 tickets/s → 9 replicas: 5 avx512vnni, 4 avx512 (612 tickets/s, estimate)`."""
    shares = sorted(sized.plan.shares, key=lambda s: -s.replicas)
    parts = ", ".join(f"{s.replicas} {s.variant.name}" for s in shares) or "none"
    short = f"; {sized.shortfall:g} short" if sized.shortfall else ""
    return (
        f"target {sized.target:g} tickets/s → {sized.plan.replicas} replicas: {parts}"
        f" ({sized.expected:g} tickets/s, estimate{short})"
    )

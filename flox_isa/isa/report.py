"""Expected throughput of placed pods, next to a one-variant-everywhere baseline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flox_isa.isa.catalog import Catalog, Workload


@dataclass(frozen=True, slots=True)
class Placement:
    """One running pod: where it landed and which build it runs."""

    instance_type: str
    variant: str
    workload: Workload


@dataclass(frozen=True, slots=True)
class ReportRow:
    instance_type: str
    variant: str
    workload: Workload
    pods: int
    throughput: float  # catalog score x pods
    baseline_throughput: float  # the same pods on the baseline variant


def throughput_rows(
    placements: Iterable[Placement], catalog: Catalog, baseline: str = "avx2"
) -> list[ReportRow]:
    """One row per (instance type, variant, workload), sorted for a stable printout.

    The baseline is the guide's current practice (the avx2 build everywhere); it
    counts each pod at the baseline's score, as if it ran that build on x86.
    """
    baseline_variant = catalog.get(baseline)
    if baseline_variant is None:
        raise ValueError(f"baseline variant {baseline!r} is not in the catalog")
    counts: dict[tuple[str, str, Workload], int] = {}
    for p in placements:
        key = (p.instance_type, p.variant, p.workload)
        counts[key] = counts.get(key, 0) + 1
    rows = []
    for (instance_type, variant_name, workload), pods in sorted(counts.items()):
        variant = catalog.get(variant_name)
        score = variant.score(workload) if variant else 0.0
        rows.append(
            ReportRow(
                instance_type,
                variant_name,
                workload,
                pods,
                score * pods,
                baseline_variant.score(workload) * pods,
            )
        )
    return rows


def speedup(rows: Iterable[ReportRow]) -> float:
    """Total expected throughput over the baseline's (1.0 when there is nothing)."""
    rows = list(rows)
    baseline = sum(r.baseline_throughput for r in rows)
    return sum(r.throughput for r in rows) / baseline if baseline else 1.0

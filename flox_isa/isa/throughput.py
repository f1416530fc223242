"""One throughput model (issue 18, item 1), used by status, the demo's report and planning.

A replica's expected tickets/s is the variant's score x its CPUs: the guide's figures are
single core, batch 1, so this assumes one single-threaded worker per CPU. It is an
*estimate*; a measured figure (`spec.throughputPerReplica: {avx512vnni: 40}`) overrides it
per variant and is the production path. bf16-training scores are ranks, not tickets/s:
without a measured figure there is no throughput for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from flox_isa.isa.catalog import Variant, Workload
from flox_isa.isa.quantity import quantity_or_none
from flox_isa.isa.threads import ContainerCpu

Source = Literal["measured", "estimate", "rank"]
RANK_WORKLOADS: Final = frozenset({"bf16-training"})  # scores are ranks, not tickets/s


@dataclass(frozen=True, slots=True)
class PerReplica:
    """Tickets/s of one replica (None: a rank, no throughput), and where it comes from."""

    tickets: float | None
    source: Source


def replica_cpus(containers: Sequence[ContainerCpu]) -> float:
    """The CPUs a replica can use: its app containers' CPU limits (else requests), summed;
    1 when it says nothing."""
    total = Decimal(0)
    for c in containers:
        value = quantity_or_none(c.cpu_limit) if c.cpu_limit is not None else None
        if value is None and c.cpu_request is not None:
            value = quantity_or_none(c.cpu_request)
        total += value if value is not None and value > 0 else Decimal(0)
    return float(total) if total > 0 else 1.0


def per_replica(
    variant: Variant,
    workload: Workload,
    cpus: float,
    measured: Mapping[str, float] | None = None,
) -> PerReplica:
    """Tickets/s of one replica of `variant`: measured if given, else score x CPUs."""
    if measured and variant.name in measured:
        return PerReplica(float(measured[variant.name]), "measured")
    if workload in RANK_WORKLOADS:
        return PerReplica(None, "rank")
    return PerReplica(round(variant.score(workload) * cpus, 3), "estimate")


def unmeasured_ranks(
    workload: Workload, variants: Sequence[Variant], measured: Mapping[str, float] | None
) -> tuple[str, ...]:
    """The variants with no throughput for `workload` (a rank, and no measured figure)."""
    if workload not in RANK_WORKLOADS:
        return ()
    return tuple(v.name for v in variants if not (measured and v.name in measured))

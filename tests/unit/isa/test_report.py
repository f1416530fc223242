"""Throughput rows against the baseline build of each pod's own architecture."""

from __future__ import annotations

import pytest

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.report import (
    DEFAULT_BASELINES,
    BaselineError,
    Placement,
    baselines,
    sized_line,
    speedup,
    throughput_rows,
)

CATALOG = default_catalog()


def test_rows_compare_each_pod_with_its_own_architectures_baseline() -> None:
    placements = [
        Placement("m6i.xlarge", "avx512vnni", "int8-inference"),
        Placement("m6i.xlarge", "avx512vnni", "int8-inference"),
        Placement("m4.xlarge", "avx2", "int8-inference"),
        Placement("c7g.xlarge", "armv9", "fp32-inference"),
    ]
    rows = throughput_rows(placements, CATALOG)
    summary = [(r.instance_type, r.variant, r.pods, r.throughput, r.baseline_throughput,
                r.baseline) for r in rows]  # fmt: skip
    # The Graviton pod is compared with armv8.2 (28), never with the x86 avx2 build (35).
    assert summary == [
        ("c7g.xlarge", "armv9", 1, 41, 28, "armv8.2"),
        ("m4.xlarge", "avx2", 1, 35, 35, "avx2"),
        ("m6i.xlarge", "avx512vnni", 2, 170, 70, "avx2"),
    ]
    assert speedup(rows) == pytest.approx((41 + 35 + 170) / (28 + 35 * 3))
    assert rows[0].ratio == pytest.approx(41 / 28)


def test_given_baseline_replaces_its_architectures_default_only() -> None:
    assert baselines(CATALOG) == DEFAULT_BASELINES
    assert baselines(CATALOG, ["avx512"]) == {"amd64": "avx512", "arm64": "armv8.2"}
    rows = throughput_rows(
        [Placement("m6i", "avx512vnni", "int8-inference")], CATALOG, {"amd64": "avx512"}
    )
    assert rows[0].baseline_throughput == 52


def test_a_pod_of_an_architecture_without_baseline_counts_as_itself() -> None:
    rows = throughput_rows([Placement("c8g", "armv9", "fp32-inference")], CATALOG, {})
    assert (rows[0].baseline, rows[0].baseline_throughput, rows[0].ratio) == (None, 41, 1.0)


def test_bad_baselines_are_errors() -> None:
    with pytest.raises(BaselineError, match="'generic' is not in the catalog; allowed: avx2"):
        baselines(CATALOG, ["generic"])
    with pytest.raises(BaselineError, match="avx2 and avx512 are both amd64"):
        baselines(CATALOG, ["avx2", "avx512"])
    with pytest.raises(BaselineError, match="baseline variant 'generic' is not in the catalog"):
        throughput_rows([], CATALOG, {"amd64": "generic"})


def test_no_pods_is_a_ratio_of_one() -> None:
    assert speedup([]) == 1.0


def test_each_pod_counts_score_times_its_cpus_on_both_sides() -> None:
    placements = [
        Placement("m6i.xlarge", "avx512vnni", "int8-inference", 0.5),
        Placement("m6i.xlarge", "avx512vnni", "int8-inference", 2.0),
        Placement("c8g.xlarge", "armv9", "fp32-inference", 2.0),
    ]
    rows = throughput_rows(placements, CATALOG)
    summary = [(r.variant, r.pods, r.throughput, r.baseline_throughput) for r in rows]
    assert summary == [("armv9", 1, 82, 56), ("avx512vnni", 2, 85 * 2.5, 35 * 2.5)]


def test_bf16_training_ranks_count_as_no_throughput() -> None:
    rows = throughput_rows([Placement("m7i.xlarge", "avx512bf16", "bf16-training")], CATALOG)
    assert [(r.pods, r.throughput, r.baseline_throughput) for r in rows] == [(1, 0, 0)]
    assert speedup(rows) == 1.0


def test_the_sized_line_lists_replicas_most_first_and_says_estimate() -> None:
    from flox_isa.isa.planning import group_eligible, plan_throughput  # noqa: PLC0415
    from flox_isa.isa.throughput import per_replica  # noqa: PLC0415
    from tests.unit.isa.test_planning import fleet  # noqa: PLC0415

    groups = group_eligible(fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1"), {})

    def sized(target: float) -> str:
        return sized_line(plan_throughput(
            CATALOG, groups, workload="int8-inference", target=target, replica_cpus=1,
            tickets_of=lambda v: per_replica(v, "int8-inference", 1).tickets or 0.0))  # fmt: skip

    assert sized(600) == (
        "target 600 tickets/s → 8 replicas: 7 avx512vnni, 1 armv9 (636 tickets/s, estimate)"
    )
    assert sized(1000).endswith("(823 tickets/s, estimate; 177 short)")

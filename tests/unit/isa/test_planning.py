"""Replica planning: which variants get replicas, and how many, on a given fleet."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flox_isa.devcluster.fleet import node_manifests, parse_fleet
from flox_isa.isa import names
from flox_isa.isa.catalog import Workload, default_catalog
from flox_isa.isa.contract import required_labels
from flox_isa.isa.nodes import node_state
from flox_isa.isa.planning import (
    Placement,
    Plan,
    group_eligible,
    plan_replicas,
    unknown_variants,
)
from flox_isa.isa.scheduling import NodeState

CATALOG = default_catalog()


def fleet(*groups: str) -> list[NodeState]:
    """Nodes as NFD labels them, from `"m6i.xlarge x3"`-style group specs."""
    rows = []
    for group in groups:
        instance_type, _, count = group.partition(" x")
        rows.append(f"{{instanceType: {instance_type}, count: {count or 1}}}")
    return ready_nodes(node_manifests(parse_fleet(f"nodes: [{', '.join(rows)}]")))


def ready_nodes(manifests: list[dict[str, Any]]) -> list[NodeState]:
    """As kwok reports them once running: Ready."""
    for manifest in manifests:
        manifest["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return [node_state(m) for m in manifests]


def plan(  # noqa: PLR0917 - test shorthand: positional reads like the spec
    nodes: list[NodeState],
    replicas: int,
    workload: Workload = "fp32-inference",
    placement: Placement = "spread",
    allowed: list[str] | None = None,
    pod_spec: dict[str, Any] | None = None,
) -> Plan:
    return plan_replicas(
        CATALOG,
        group_eligible(nodes, pod_spec or {}),
        workload=workload,
        replicas=replicas,
        placement=placement,
        allowed=allowed,
    )


def shares(result: Plan) -> dict[str, tuple[int, int]]:
    """variant -> (nodes, replicas)."""
    return {s.variant.name: (s.node_count, s.replicas) for s in result.shares}


def test_spread_follows_the_cpu_of_the_nodes_whose_best_variant_it_is() -> None:
    # int8: m4 -> avx2, m6i -> avx512vnni, c8g -> armv9; same size, so CPU ~ node count.
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1")
    assert shares(plan(nodes, 8, "int8-inference")) == {
        "avx2": (1, 2),
        "avx512vnni": (2, 4),
        "armv9": (1, 2),
    }


def test_spread_weighs_allocatable_cpu_not_node_count() -> None:
    # One 2xlarge (8 vCPU) against two xlarge (4 vCPU each): equal CPU, equal share.
    nodes = fleet("m4.2xlarge x1", "c8g.xlarge x2")
    result = plan(nodes, 4)
    assert shares(result) == {"avx2": (1, 2), "armv9": (2, 2)}


def test_largest_remainder_rounds_without_losing_replicas() -> None:
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x1", "c8g.xlarge x1")
    result = plan(nodes, 5, "int8-inference")
    assert result.replicas == 5
    assert sorted(r for _, r in shares(result).values()) == [1, 2, 2]


def test_best_puts_every_replica_on_the_best_variant_on_offer() -> None:
    nodes = fleet("m4.xlarge x3", "m6i.xlarge x1", "m7i.xlarge x1")
    # int8: avx512vnni (85) beats everything; m6i and m7i both have VNNI.
    assert shares(plan(nodes, 6, "int8-inference", "best")) == {"avx512vnni": (2, 6)}
    # bf16-training: only the m7i can run avx512bf16.
    assert shares(plan(nodes, 6, "bf16-training", "best")) == {"avx512bf16": (1, 6)}


def test_allowed_variants_limit_what_a_node_counts_as() -> None:
    # Without avx512vnni on the list, the m6i nodes are avx512 nodes.
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x1")
    result = plan(nodes, 2, "int8-inference", allowed=["avx2", "avx512"])
    assert shares(result) == {"avx2": (1, 1), "avx512": (1, 1)}


def test_taints_exclude_nodes_unless_the_template_tolerates_them() -> None:
    nodes = fleet("m4.xlarge x1", "c8g.xlarge x1")
    taint = "{key: gpu, value: 'no', effect: NoSchedule}"
    manifests = node_manifests(
        parse_fleet(f"nodes: [{{instanceType: m6i.xlarge, taints: [{taint}]}}]")
    )
    tainted = ready_nodes(manifests)
    assert "avx512vnni" not in shares(plan(nodes + tainted, 3, "int8-inference"))
    tolerant = {"tolerations": [{"key": "gpu", "operator": "Exists"}]}
    assert "avx512vnni" in shares(plan(nodes + tainted, 3, "int8-inference", pod_spec=tolerant))


def test_the_template_node_selector_narrows_the_fleet() -> None:
    nodes = fleet("m4.xlarge x1", "c6g.xlarge x1", "c8g.xlarge x1")
    arm_only = {"nodeSelector": {names.ARCH_LABEL: "arm64"}}
    assert shares(plan(nodes, 4, pod_spec=arm_only)) == {"armv8.2": (1, 2), "armv9": (1, 2)}


def test_nodes_that_are_not_ready_or_cordoned_do_not_count() -> None:
    ready, cordoned = fleet("m6i.xlarge x2")
    cordoned = NodeState(cordoned.info, cordoned.labels, ready=True, unschedulable=True)
    assert shares(plan([ready, cordoned], 2, "int8-inference")) == {"avx512vnni": (1, 2)}


def test_no_supported_node_is_a_problem_naming_the_variants() -> None:
    result = plan(fleet("m4.xlarge x2"), 3, "int8-inference", allowed=["avx512vnni"])
    assert result.shares == ()
    assert result.problem.startswith("no node supports any of [avx512vnni]")
    assert "2 nodes match" in result.problem


def test_zero_replicas_still_plans_every_offered_variant() -> None:
    result = plan(fleet("m4.xlarge x1", "c8g.xlarge x1"), 0)
    assert shares(result) == {"avx2": (1, 0), "armv9": (1, 0)}


def test_node_selector_is_every_required_nfd_label_and_the_arch() -> None:
    variant = CATALOG.get("avx512vnni")
    assert variant is not None
    assert dict(required_labels(variant)) == {
        "feature.node.kubernetes.io/cpu-cpuid.AVX512BW": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512CD": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512DQ": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512VL": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI": "true",
        "kubernetes.io/arch": "amd64",
    }


def test_unknown_variants_keeps_the_callers_order() -> None:
    assert unknown_variants(CATALOG, ["avx2", "avx9", "sse2"]) == ("avx9", "sse2")


FAMILIES = ["m4.xlarge", "c5.xlarge", "m6i.xlarge", "m7i.xlarge", "c6g.xlarge", "c8g.xlarge"]
ALL_NODES = {f: fleet(f"{f} x6") for f in FAMILIES}


@given(
    counts=st.dictionaries(st.sampled_from(FAMILIES), st.integers(1, 3), min_size=1),
    replicas=st.integers(0, 200),
    workload=st.sampled_from(["fp32-inference", "int8-inference", "bf16-training"]),
    placement=st.sampled_from(["spread", "best"]),
)
def test_every_replica_is_placed_on_a_variant_some_node_runs(
    counts: dict[str, int], replicas: int, workload: Workload, placement: Placement
) -> None:
    nodes = [n for family, count in counts.items() for n in ALL_NODES[family][:count]]
    result = plan(nodes, replicas, workload, placement)
    assert result.replicas == replicas
    for share in result.shares:
        assert share.node_count > 0
        assert any(share.variant.flags <= n.info.features.flags for n in nodes)


@given(
    small=st.integers(1, 3), large=st.integers(4, 6), replicas=st.integers(0, 100)
)  # fmt: skip
def test_more_cpu_never_means_fewer_replicas(small: int, large: int, replicas: int) -> None:
    nodes = ALL_NODES["m4.xlarge"][:small] + ALL_NODES["c8g.xlarge"][:large]
    result = shares(plan(nodes, replicas))
    assert result["armv9"][1] >= result["avx2"][1]


@pytest.mark.parametrize("placement", ["spread", "best"])
def test_an_empty_fleet_plans_nothing(placement: Placement) -> None:
    result = plan([], 3, placement=placement)
    assert result.shares == ()
    assert result.problem

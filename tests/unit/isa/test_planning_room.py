"""Replica planning by free room (issue 14): per-node fit, spill in rank order, whenFull."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flox_isa.isa.capacity import Ledger, effective_request
from flox_isa.isa.catalog import Workload, default_catalog
from flox_isa.isa.constraints import constraints_of
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.placement import WhenFull
from flox_isa.isa.planning import (
    Placement,
    Plan,
    Room,
    group_eligible,
    plan_replicas,
    plan_throughput,
    ranked_variants,
    room_on,
)
from flox_isa.isa.scheduling import NodeState
from flox_isa.isa.throughput import per_replica
from tests.unit.isa.test_planning import fleet

CATALOG = default_catalog()
ONE_CPU: dict[str, Any] = {"containers": [{"name": "w", "resources": {"requests": {"cpu": "1"}}}]}


def room(nodes: list[NodeState], busy: Mapping[str, int], workload: Workload = "int8-inference",
         pod_spec: Mapping[str, Any] = ONE_CPU) -> Room:  # fmt: skip
    """The room one replica of `pod_spec` sees with `busy` millicores used per node."""
    ledger = Ledger()
    allocatable = {n.name: dict(n.info.allocatable) for n in nodes}
    for node, millis in busy.items():
        ledger.count(f"other-{node}", node, {"cpu": millis, "memory": 1, "pods": 1})
    demand = effective_request(pod_spec)
    return room_on(
        CATALOG, index_nodes(nodes), constraints_of(pod_spec), workload, None,
        lambda n: (ledger.fits(n, allocatable[n], demand), ledger.used(n).get("cpu", 0) / 1000),
    )  # fmt: skip


def plan(  # noqa: PLR0917 - test shorthand: positional reads like the spec
    nodes: list[NodeState],
    replicas: int,
    free: Room | None,
    placement: Placement = "best",
    when_full: WhenFull = "next-best",
    workload: Workload = "int8-inference",
) -> Plan:
    return plan_replicas(
        CATALOG, group_eligible(nodes, ONE_CPU), workload=workload, replicas=replicas,
        placement=placement, room=free, when_full=when_full,
    )  # fmt: skip


def split(result: Plan) -> dict[str, int]:
    return {s.variant.name: s.replicas for s in result.shares}


# 3.92 CPUs per xlarge node: 3 one-CPU replicas each when free.
NODES = fleet("m6i.xlarge x2", "c8g.xlarge x2", "m4.xlarge x1")
BUSY_VNNI = {"m6i-xlarge-0": 3920, "m6i-xlarge-1": 2900}  # one slot left on the VNNI nodes


def test_best_fills_the_best_variant_then_spills_in_rank_order() -> None:
    assert split(plan(NODES, 8, room(NODES, BUSY_VNNI))) == {
        "avx2": 1, "avx512vnni": 1, "armv9": 6}  # fmt: skip


def test_best_keeps_todays_plan_when_the_fleet_has_room() -> None:
    for busy in ({}, BUSY_VNNI):
        free = room(NODES, busy)
        assert split(plan(NODES, 1, free)) == {"avx512vnni": 1}
    assert plan(NODES, 6, room(NODES, {})) == plan(NODES, 6, None)


def test_wait_keeps_the_excess_on_the_best_variant() -> None:
    assert split(plan(NODES, 8, room(NODES, BUSY_VNNI), when_full="wait")) == {"avx512vnni": 8}


def test_wait_keeps_the_excess_on_the_best_growable_variant() -> None:
    result = plan_replicas(
        CATALOG, group_eligible(NODES, ONE_CPU), workload="int8-inference", replicas=8,
        placement="best", room=room(NODES, BUSY_VNNI), when_full="wait", growable={"armv9"},
    )  # fmt: skip
    assert split(result) == {"avx512vnni": 1, "armv9": 7}


def test_no_room_anywhere_pins_the_best_growable_variant() -> None:
    full = dict.fromkeys((n.name for n in NODES), 3920)
    assert split(plan(NODES, 4, room(NODES, full))) == {"avx512vnni": 4}


@pytest.mark.parametrize("workload", ["int8-inference", "fp32-inference"])
def test_spread_on_an_idle_fleet_is_todays_plan(workload: Workload) -> None:
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1", "m5.xlarge x3")
    for replicas in (0, 1, 7, 10, 20):  # each share within its variant's room
        assert plan(nodes, replicas, room(nodes, {}, workload), "spread", workload=workload) == (
            plan(nodes, replicas, None, "spread", workload=workload)
        )


def test_spread_weighs_free_cpu_and_caps_each_share_at_its_room() -> None:
    assert split(plan(NODES, 9, None, "spread")) == {"avx2": 2, "avx512vnni": 3, "armv9": 4}
    # The VNNI nodes are mostly busy: their free CPU weighs less, and their room (1) caps.
    assert split(plan(NODES, 9, room(NODES, BUSY_VNNI), "spread")) == {
        "avx2": 3, "avx512vnni": 1, "armv9": 5}  # fmt: skip


def test_throughput_counts_free_room_not_allocatable_cpu() -> None:
    def sized(free: Room | None) -> dict[str, int]:
        found = plan_throughput(
            CATALOG, group_eligible(NODES, ONE_CPU), workload="int8-inference", target=400,
            replica_cpus=1, tickets_of=lambda v: per_replica(v, "int8-inference", 1).tickets or 0,
            room=free,
        )  # fmt: skip
        return split(found.plan)

    assert sized(None) == {"avx512vnni": 5}  # 7 fit by allocatable CPU
    # 1 x 85 + 6 x 41 = 331 tickets/s: 2 avx2 replicas more for the last 69.
    assert sized(room(NODES, BUSY_VNNI)) == {"avx512vnni": 1, "armv9": 6, "avx2": 2}


# -- properties ----------------------------------------------------------------------------

TYPES = ("m4.xlarge", "m5.xlarge", "m6i.xlarge", "c8g.xlarge", "c6g.xlarge")


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[NodeState], dict[str, int]]:
    counts = draw(st.lists(st.integers(0, 3), min_size=len(TYPES), max_size=len(TYPES)))
    groups = [f"{t} x{c}" for t, c in zip(TYPES, counts, strict=True) if c]
    nodes = fleet(*groups) if groups else []
    busy = {n.name: draw(st.sampled_from([0, 500, 1000, 2500, 3920])) for n in nodes}
    return nodes, busy


@settings(max_examples=150, deadline=None)
@given(
    fleets(),
    st.integers(0, 40),
    st.sampled_from(["best", "spread"]),
    st.sampled_from(["next-best", "wait"]),
)
def test_never_more_replicas_on_a_variant_than_fit_and_spill_follows_rank(
    drawn: tuple[list[NodeState], dict[str, int]],
    replicas: int,
    placement: Placement,
    when_full: WhenFull,
) -> None:
    nodes, busy = drawn
    free = room(nodes, busy)
    result = plan(nodes, replicas, free, placement, when_full)
    if result.problem:
        return
    counts = split(result)
    assert sum(counts.values()) == replicas
    ranked = [v.name for v in ranked_variants(CATALOG, free, "int8-inference", None)]
    every_node = {n for names in free.nodes.values() for n in names}
    total_room = sum(free.fit[n] for n in every_node)
    overflow = ranked[0]  # every pool can grow: the best variant takes what fits nowhere
    for name, count in counts.items():
        if name != overflow:
            assert count <= free.of(name), (name, count, free.of(name))
        elif count > free.of(name):  # only what no variant has room for, or wait's excess
            assert when_full == "wait" or total_room < replicas
    if placement == "best" and when_full == "next-best":
        for i, name in enumerate(ranked):
            if i and counts.get(name) and name != overflow:
                better = {n for v in ranked[:i] for n in free.nodes[v]}
                assert sum(counts.get(v, 0) for v in ranked[:i]) >= sum(free.fit[n] for n in better)
    # Stable: the same inputs, the same plan.
    assert plan(nodes, replicas, room(nodes, busy), placement, when_full) == result

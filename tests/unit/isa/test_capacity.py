"""Effective requests as kube-scheduler counts them, per-node fit, and the ledger."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flox_isa.isa.capacity import (
    DEFAULT_MEMORY,
    DEFAULT_MILLI_CPU,
    Ledger,
    allocatable_of,
    effective_request,
    pods_that_fit,
    to_units,
)

MI = 1024 * 1024


def container(cpu: str | None = None, memory: str | None = None, **extra: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": "c", "resources": {"requests": requests}, **extra}


def test_containers_add_up() -> None:
    spec = {"containers": [container("500m", "1Gi"), container("250m", "256Mi")]}
    assert effective_request(spec) == {"cpu": 750, "memory": 1280 * MI, "pods": 1}


def test_an_init_container_larger_than_the_containers_sets_the_request() -> None:
    spec = {"containers": [container("500m", "100Mi")], "initContainers": [container("2")]}
    assert effective_request(spec)["cpu"] == 2000
    assert effective_request(spec)["memory"] == 100 * MI


def test_sidecars_add_to_the_containers_and_to_the_init_containers_after_them() -> None:
    sidecar = container("300m", restartPolicy="Always")
    spec = {
        "containers": [container("500m", "64Mi")],
        # init 1 runs alone (1000m); the sidecar starts; init 2 runs beside it (900 + 300)
        "initContainers": [container("1"), sidecar, container("900m")],
    }
    # containers + sidecar = 800m; peak of init phase = max(1000, 300, 1200) = 1200m
    assert effective_request(spec)["cpu"] == 1200


def test_a_sidecar_after_the_init_containers_only_adds_to_the_containers() -> None:
    spec = {
        "containers": [container("500m", "64Mi")],
        "initContainers": [container("600m"), container("300m", restartPolicy="Always")],
    }
    assert effective_request(spec)["cpu"] == 800


def test_overhead_and_pod_level_resources() -> None:
    spec = {
        "containers": [container("500m", "64Mi")],
        "resources": {"requests": {"cpu": "2"}},
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }
    assert effective_request(spec) == {"cpu": 2250, "memory": 184 * MI, "pods": 1}


def test_best_effort_pods_count_with_the_schedulers_non_zero_defaults() -> None:
    assert effective_request({"containers": [{"name": "c"}]}) == {
        "cpu": DEFAULT_MILLI_CPU,
        "memory": DEFAULT_MEMORY,
        "pods": 1,
    }


def test_extended_resources_are_counted_in_whole_units() -> None:
    spec = {"containers": [{"name": "c", "resources": {"requests": {"example.com/fpga": "2"}}}]}
    assert effective_request(spec)["example.com/fpga"] == 2


def test_quantities_round_up_to_whole_units() -> None:
    assert to_units("cpu", "0.0001") == 1
    assert to_units("memory", "1.5") == 2
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        to_units("cpu", "lots")


def test_fit_is_per_node_and_per_resource() -> None:
    allocatable = allocatable_of({"allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": 110}})
    demand = {"cpu": 1000, "memory": 1024 * MI, "pods": 1}
    assert pods_that_fit(allocatable, {}, demand) == 3  # cpu binds: 3.92 cores
    assert pods_that_fit(allocatable, {"memory": 14 * 1024 * MI}, demand) == 1
    assert pods_that_fit(allocatable, {"pods": 110}, demand) == 0
    assert pods_that_fit(allocatable, {}, {"example.com/fpga": 1}) == 0  # the node has none


def test_the_ledger_counts_bound_and_reserved_pods_and_releases_each_once() -> None:
    ledger = Ledger()
    allocatable = {"cpu": 4000, "memory": 8 * 1024 * MI, "pods": 110}
    demand = {"cpu": 1000, "pods": 1}
    ledger.count("a", "n1", demand)
    ledger.reserve("b", "n1", demand)
    assert ledger.fits("n1", allocatable, demand) == 2
    ledger.count("b", "n1", demand)  # b is bound where it was reserved: counted once
    assert ledger.fits("n1", allocatable, demand) == 2
    assert ledger.release("b") is True
    assert ledger.release("b") is False
    assert ledger.fits("n1", allocatable, demand) == 3
    ledger.count("a", "n2", demand)  # moved: n1 no longer holds it
    assert ledger.fits("n1", allocatable, demand) == 4


def test_nominated_pods_count_only_against_pods_of_lower_or_equal_priority() -> None:
    ledger = Ledger()
    allocatable = {"cpu": 2000, "pods": 110}
    ledger.count("preemptor", "n1", {"cpu": 2000, "pods": 1}, "nominated", priority=100)
    assert ledger.fits("n1", allocatable, {"cpu": 1000, "pods": 1}, priority=0) == 0
    assert ledger.fits("n1", allocatable, {"cpu": 1000, "pods": 1}, priority=1000) == 2
    assert ledger.release("preemptor")
    assert ledger.fits("n1", allocatable, {"cpu": 1000, "pods": 1}) == 2


@given(
    st.lists(st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(1, 3000)), max_size=40),
    st.lists(st.integers(0, 39), max_size=20),
)
def test_ledger_usage_is_the_sum_of_what_is_counted(
    pods: list[tuple[str, int]], released: list[int]
) -> None:
    ledger = Ledger()
    for index, (node, cpu) in enumerate(pods):
        ledger.count(str(index), node, {"cpu": cpu, "pods": 1})
    for index in set(released):
        ledger.release(str(index))
    for node in ("n1", "n2", "n3"):
        expected = sum(
            cpu for i, (n, cpu) in enumerate(pods) if n == node and i not in set(released)
        )
        assert ledger.used(node).get("cpu", 0) == expected


def test_a_pod_bound_elsewhere_than_reserved_hands_its_room_to_the_reservation_it_took() -> None:
    ledger = Ledger()
    allocatable = {"cpu": 3000, "pods": 110}
    one = {"cpu": 1000, "pods": 1}
    for index in range(3):
        ledger.reserve(f"a{index}", "A", one)
        ledger.reserve(f"b{index}", "B", one)
    # The scheduler binds a0 (reserved on A) to B: B's room was b0's, A's room is now free.
    ledger.bind("a0", "B", one)
    assert ledger.fits("A", allocatable, one) == 0
    assert ledger.fits("B", allocatable, one) == 0
    assert ledger.used("B") == {"cpu": 3000, "pods": 3}
    for index in (1, 2):
        ledger.bind(f"a{index}", "B", one)
    for index in range(3):
        ledger.bind(f"b{index}", "A", one)
    assert ledger.used("A") == ledger.used("B") == {"cpu": 3000, "pods": 3}
    assert list(ledger.reservations()) == []

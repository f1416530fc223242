"""A TicketWorker sized by spec.throughput (issue 18, item 2): fewest replicas, status."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.planning import group_eligible, plan_throughput
from flox_isa.isa.throughput import per_replica
from flox_isa.operator.models import REPLICAS_OR_THROUGHPUT, TicketWorkerSpec
from flox_isa.operator.reconcile import parse_spec
from tests.unit.isa.test_planning import fleet
from tests.unit.operator.test_reconcile import FakeCluster, conditions, converge, ticketworker

CATALOG = default_catalog()
# 3.92 allocatable CPUs per xlarge node: avx2 holds 3 one-CPU replicas, avx512vnni 7, armv9 3.
NODES = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1")
ONE_CPU = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "1"}}}]}}


def sized(target: float, cpus: float = 1.0) -> Any:
    return plan_throughput(
        CATALOG, group_eligible(NODES, {}), workload="int8-inference", target=target,
        replica_cpus=cpus,
        tickets_of=lambda v: per_replica(v, "int8-inference", cpus).tickets or 0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "replicas", "expected"),
    [
        (85, {"avx512vnni": 1}, 85),
        (600, {"avx512vnni": 7, "armv9": 1}, 636),  # 7 x 85 = 595, one armv9 more
        (800, {"avx2": 3, "avx512vnni": 7, "armv9": 3}, 823),
    ],
)
def test_the_fewest_replicas_best_tickets_per_replica_first(
    target: float, replicas: dict[str, int], expected: float
) -> None:
    found = sized(target)
    assert {s.variant.name: s.replicas for s in found.plan.shares} == replicas
    assert (found.expected, found.shortfall) == (expected, 0)


def test_an_unreachable_target_says_by_how_much() -> None:
    found = sized(1000)
    assert (found.expected, found.reachable, found.shortfall) == (823, 823, 177)


def test_bigger_replicas_hold_fewer_per_node_and_do_more_each() -> None:
    found = sized(600, cpus=2)  # 2 CPUs: 170 tickets/s per avx512vnni replica, 3 fit
    assert {s.variant.name: s.replicas for s in found.plan.shares} == {
        "avx512vnni": 3, "armv9": 1, "avx2": 1}  # fmt: skip
    assert found.expected == 3 * 170 + 82 + 70


def test_replicas_and_throughput_are_mutually_exclusive() -> None:
    with pytest.raises(ValidationError, match="mutually exclusive"):
        TicketWorkerSpec.model_validate({"environment": "a/b", "replicas": 2, "throughput": 9})
    assert "kubectl scale" in REPLICAS_OR_THROUGHPUT
    assert TicketWorkerSpec.model_validate({"environment": "a/b"}).effective_replicas() == 1


def test_status_shows_target_plan_and_a_condition() -> None:
    tw = ticketworker(workload="int8-inference", template=ONE_CPU, throughput=600)
    del tw["spec"]["replicas"]
    status = converge(tw, NODES, FakeCluster())
    assert (status["throughputTarget"], status["plannedThroughput"]) == (600, 636)
    by_variant = {v["variant"]: (v["desiredReplicas"], v["throughputPerReplica"])
                  for v in status["variants"]}  # fmt: skip
    assert by_variant == {"avx512vnni": (7, 85.0), "armv9": (1, 41.0)}
    assert conditions(status)["TargetReachable"] == ("True", "TargetReached")
    tw["spec"]["throughput"] = 1000
    status = converge(tw, NODES, FakeCluster())
    assert conditions(status)["TargetReachable"] == ("False", "TargetUnreachable")
    message = next(c["message"] for c in status["conditions"] if c["type"] == "TargetReachable")
    assert message.endswith(
        "reaching 823 tickets/s, 177 short (add nodes, or lower spec.throughput)"
    )


def test_replica_mode_has_no_target_condition() -> None:
    status = converge(ticketworker(), NODES, FakeCluster())
    assert "TargetReachable" not in conditions(status) and "throughputTarget" not in status


def test_bf16_training_needs_a_measured_figure_for_every_allowed_variant() -> None:
    spec = {"environment": "a/b", "workload": "bf16-training", "throughput": 10,
            "variants": ["avx2", "avx512bf16"], "throughputPerReplica": {"avx2": 2}}  # fmt: skip
    found, problem = parse_spec(spec, CATALOG)
    assert found is None and problem is not None
    assert problem.message == (
        "spec.throughput: bf16-training scores are ranks, not tickets/s: give"
        " spec.throughputPerReplica for every allowed variant (missing: avx512bf16)"
    )
    spec["throughputPerReplica"] = {"avx2": 2, "avx512bf16": 6}
    assert parse_spec(spec, CATALOG)[1] is None

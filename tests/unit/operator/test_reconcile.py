"""A whole reconcile, without a cluster: decide -> (simulated) writes -> status."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.fleet import FeatureGroup
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.planning import eligible_groups
from flox_isa.isa.scheduling import NodeState
from flox_isa.operator.diff import Create, Delete, Update
from flox_isa.operator.reconcile import build_status, decide, parse_spec, status_changed
from tests.unit.isa.test_planning import fleet

CATALOG = default_catalog()
NOW = "2030-01-01T00:00:00Z"
LATER = "2030-01-01T00:05:00Z"


def ticketworker(
    generation: int = 1, status: Mapping[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "tw", "uid": "u1", "generation": generation},
        "spec": {"environment": "acme/tp", "replicas": 4, **spec},
        "status": dict(status or {}),
    }


def groups(nodes: list[NodeState]) -> Any:
    index = index_nodes(nodes)

    def groups_for(constraints: Constraints) -> Sequence[FeatureGroup]:
        return eligible_groups(index, constraints)

    return groups_for


class FakeCluster:
    """Applies actions the way the API server and a settled Deployment controller would."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def apply(self, actions: Sequence[Any]) -> None:
        for action in actions:
            self.writes += 1
            if isinstance(action, Delete):
                del self.deployments[action.name]
                continue
            live = copy.deepcopy(dict(action.body))
            replicas = live["spec"]["replicas"]
            live["metadata"].update(uid=f"d-{action.name}", generation=1)
            live["spec"]["revisionHistoryLimit"] = 10
            live["status"] = {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
            }
            self.deployments[action.name] = live


def converge(tw: dict[str, Any], nodes: list[NodeState], cluster: FakeCluster) -> dict[str, Any]:
    """Reconcile until nothing is left to write; return the published status."""
    for _ in range(3):
        decision = decide(tw, CATALOG, groups(nodes), cluster.deployments)
        cluster.apply(decision.actions)
        status = build_status(decision, cluster.deployments, tw["status"], NOW)
        if not decision.actions and not status_changed(status, tw["status"]):
            return status
        tw["status"] = status
    raise AssertionError("did not converge")


def conditions(status: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_ticketworker_converges_and_then_writes_nothing() -> None:
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1")
    tw = ticketworker(workload="int8-inference")
    cluster = FakeCluster()
    status = converge(tw, nodes, cluster)
    assert sorted(cluster.deployments) == ["tw-armv9", "tw-avx2", "tw-avx512vnni"]
    writes = cluster.writes
    decision = decide(tw, CATALOG, groups(nodes), cluster.deployments)
    assert decision.actions == ()
    assert not status_changed(build_status(decision, cluster.deployments, status, LATER), status)
    assert cluster.writes == writes


def test_status_reports_variants_throughput_and_ready() -> None:
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1")
    status = converge(ticketworker(workload="int8-inference"), nodes, FakeCluster())
    by_variant = {v["variant"]: v for v in status["variants"]}
    assert by_variant["avx512vnni"] == {
        "variant": "avx512vnni",
        "deployment": "tw-avx512vnni",
        "nodes": 2,
        "desiredReplicas": 2,
        "readyReplicas": 2,
        "score": 85.0,
        "throughputPerReplica": 85.0,  # one CPU: the template says nothing
        "throughputSource": "estimate",
        "expectedThroughput": 170.0,
    }
    assert status["expectedThroughput"] == 170.0 + 35.0 + 41.0
    assert (status["replicas"], status["readyReplicas"]) == (4, 4)
    assert status["selector"] == "isa.flox.dev/ticketworker=tw"
    assert status["variantSummary"] == "avx2=1/1 avx512vnni=2/2 armv9=1/1"
    assert status["observedGeneration"] == 1
    assert conditions(status) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "Stable"),
        "Degraded": ("False", "AsExpected"),
    }


def test_fleet_changes_rebalance_the_deployments() -> None:
    m4, vnni, graviton4 = fleet("m4.xlarge x1"), fleet("m6i.xlarge x2"), fleet("c8g.xlarge x1")
    tw, cluster = ticketworker(workload="int8-inference", replicas=6), FakeCluster()
    converge(tw, m4 + vnni, cluster)
    assert {n: d["spec"]["replicas"] for n, d in cluster.deployments.items()} == {
        "tw-avx2": 2,
        "tw-avx512vnni": 4,
    }
    # Graviton3 joins, every VNNI node leaves.
    decision = decide(tw, CATALOG, groups(m4 + graviton4), cluster.deployments)
    kinds = {(type(a).__name__, a.name) for a in decision.actions}
    assert kinds == {("Update", "tw-avx2"), ("Create", "tw-armv9"), ("Delete", "tw-avx512vnni")}
    converge(tw, m4 + graviton4, cluster)
    assert {n: d["spec"]["replicas"] for n, d in cluster.deployments.items()} == {
        "tw-avx2": 3,
        "tw-armv9": 3,
    }


def test_pending_rollout_is_progressing_not_ready() -> None:
    nodes = fleet("m6i.xlarge x1")
    tw, cluster = ticketworker(), FakeCluster()
    converge(tw, nodes, cluster)
    cluster.deployments["tw-avx512"]["status"]["readyReplicas"] = 1
    decision = decide(tw, CATALOG, groups(nodes), cluster.deployments)
    status = build_status(decision, cluster.deployments, tw["status"], LATER)
    assert conditions(status)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions(status)["Progressing"] == ("True", "RollingOut")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "1/4 replicas ready"
    assert ready["lastTransitionTime"] == LATER
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["lastTransitionTime"] == NOW  # unchanged status keeps its time


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"variants": ["avx2", "avx9"]},
            "spec.variants: avx9 is not in the variant catalog (known: avx2, avx512,"
            " avx512bf16, avx512vnni, armv8.2, armv9)",
        ),
        (
            {"environment": "ticket-processor"},
            "spec.environment: must be a Flox environment owner/name or"
            " owner/name:generation (letters, digits, '.', '_', '-'), e.g. acme/ticket-processor",
        ),
        ({"variants": ["avx2", "avx2"]}, "spec.variants: variants must be unique"),
        ({"replicas": -1}, "spec.replicas: Input should be greater than or equal to 0"),
    ],
)
def test_a_bad_spec_is_degraded_and_touches_nothing(spec: dict[str, Any], message: str) -> None:
    nodes = fleet("m4.xlarge x1", "c8g.xlarge x1")
    tw, cluster = ticketworker(), FakeCluster()
    converge(tw, nodes, cluster)
    before = copy.deepcopy(cluster.deployments)
    tw["spec"].update(spec)
    tw["metadata"]["generation"] = 2
    decision = decide(tw, CATALOG, groups(nodes), cluster.deployments)
    assert decision.actions == ()
    status = build_status(decision, cluster.deployments, tw["status"], LATER)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["message"]) == (
        "True",
        "InvalidSpec",
        message,
    )
    assert status["observedGeneration"] == 2
    assert status["variants"] == tw["status"]["variants"]  # the last good picture stays
    assert cluster.deployments == before


def test_no_node_for_the_variants_is_degraded_and_removes_their_deployments() -> None:
    tw, cluster = ticketworker(variants=["avx512vnni"]), FakeCluster()
    converge(tw, fleet("m6i.xlarge x1"), cluster)
    assert list(cluster.deployments) == ["tw-avx512vnni"]
    status = converge(tw, fleet("m4.xlarge x2"), cluster)
    assert cluster.deployments == {}
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "NoEligibleNodes"
    assert degraded["message"].startswith("no node supports any of [avx512vnni]")


def test_apply_failures_are_degraded_with_the_api_servers_words() -> None:
    nodes = fleet("m4.xlarge x1")
    tw = ticketworker()
    decision = decide(tw, CATALOG, groups(nodes), {})
    assert [type(a) for a in decision.actions] == [Create]
    status = build_status(decision, {}, {}, NOW, ["create Deployment tw-avx2: 403 Forbidden: no"])
    assert conditions(status)["Degraded"] == ("True", "ApplyFailed")
    assert conditions(status)["Progressing"] == ("True", "RollingOut")


def test_scaling_the_ticketworker_rescales_every_variant() -> None:
    nodes = fleet("m4.xlarge x2", "c8g.xlarge x2")
    tw, cluster = ticketworker(replicas=2), FakeCluster()
    converge(tw, nodes, cluster)
    tw["spec"]["replicas"] = 10
    decision = decide(tw, CATALOG, groups(nodes), cluster.deployments)
    assert all(isinstance(a, Update) and a.is_scale for a in decision.actions)
    converge(tw, nodes, cluster)
    assert sum(d["spec"]["replicas"] for d in cluster.deployments.values()) == 10


def test_a_replicas_throughput_is_score_times_its_cpus_unless_measured() -> None:
    nodes = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1")
    containers = [{"name": "w", "resources": {"limits": {"cpu": "2"}}},
                  {"name": "s", "resources": {"requests": {"cpu": "500m"}}}]  # fmt: skip
    tw = ticketworker(workload="int8-inference", template={"spec": {"containers": containers}},
                      throughputPerReplica={"avx512vnni": 190})  # fmt: skip
    status = converge(tw, nodes, FakeCluster())
    by_variant = {v["variant"]: v for v in status["variants"]}
    assert (by_variant["avx2"]["throughputPerReplica"], by_variant["avx2"]["throughputSource"]) == (
        35.0 * 2.5, "estimate")  # fmt: skip
    vnni = by_variant["avx512vnni"]
    assert (vnni["throughputPerReplica"], vnni["throughputSource"]) == (190.0, "measured")
    assert vnni["expectedThroughput"] == 190.0 * vnni["readyReplicas"]
    assert status["expectedThroughput"] == sum(v["expectedThroughput"] for v in by_variant.values())


def test_bf16_training_ranks_are_not_throughput() -> None:
    nodes = fleet("m4.xlarge x1", "m7i.xlarge x1")
    tw = ticketworker(workload="bf16-training", throughputPerReplica={"avx2": 3})
    by_variant = {v["variant"]: v for v in converge(tw, nodes, FakeCluster())["variants"]}
    assert by_variant["avx512bf16"]["throughputSource"] == "rank"
    assert "expectedThroughput" not in by_variant["avx512bf16"]
    assert by_variant["avx2"]["expectedThroughput"] == 3.0 * by_variant["avx2"]["readyReplicas"]


def test_a_measured_figure_for_an_unknown_variant_is_an_invalid_spec() -> None:
    spec, problem = parse_spec({"environment": "a/b", "throughputPerReplica": {"avx9": 1}}, CATALOG)
    assert spec is None and problem is not None
    assert problem.message.startswith("spec.throughputPerReplica: avx9 is not in the variant")

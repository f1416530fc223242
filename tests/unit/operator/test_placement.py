"""The placement controller's decisions, without a cluster: which variant each gated pod
gets, the room it reserves, and the update it writes."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flox_isa.devcluster import fleet as fleets
from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.nodes import node_state
from flox_isa.isa.placement import Placement, ungated
from flox_isa.kube.rest import Connection, Rest
from flox_isa.operator.placement import (
    Chosen,
    PlacementController,
    PlacementSettings,
    Planner,
    explain_gated,
    explain_gated_text,
    uid_of,
)

CATALOG = default_catalog()
ENV = "acme/embedder"
_uids = itertools.count()


def nodes(*groups: tuple[str, int]) -> list[dict[str, Any]]:
    fleet = fleets.Fleet.model_validate(
        {"nodes": [{"instanceType": t, "count": n} for t, n in groups]}
    )
    manifests = fleets.node_manifests(fleet)
    for node in manifests:
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return manifests


def controller(fleet: list[dict[str, Any]], **options: Any) -> PlacementController:
    placement = PlacementController(
        PlacementSettings(CATALOG, lease_namespace="flox-isa", identity="test", **options),
        Rest(Connection("http://127.0.0.1:1")),  # never called: no I/O in plan_batch
    )
    placement.fleet_changed(index_nodes(node_state(n) for n in fleet))
    return placement


def gated_pod(
    cpu: str = "1", annotations: dict[str, str] | None = None, age: float = 0.0, **spec: Any
) -> dict[str, Any]:
    created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    uid = f"uid-{next(_uids)}"
    return {
        "metadata": {
            "name": f"worker-{uid}",
            "namespace": "tickets",
            "uid": uid,
            "resourceVersion": "7",
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "labels": {names.INJECT_LABEL: "true"},
            "annotations": {
                names.ENVIRONMENT_ANNOTATION: ENV,
                names.WORKLOAD_ANNOTATION: "int8-inference",
                **(annotations or {}),
            },
        },
        "spec": {
            "containers": [{"name": "w", "resources": {"requests": {"cpu": cpu}}}],
            "schedulingGates": [{"name": names.PLACEMENT_GATE}],
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def bound(node: str, cpu: str) -> dict[str, Any]:
    pod = gated_pod(cpu)
    del pod["spec"]["schedulingGates"]
    pod["spec"]["nodeName"] = node
    pod["status"]["phase"] = "Running"
    return pod


def rounds(placement: PlacementController) -> list[Chosen]:
    """Batches until nothing is left to place; between batches the scheduler binds each
    placed pod where its room was reserved (a pod pinned without room is Unschedulable)."""
    placed: list[Chosen] = []
    while batch := placement.plan_batch():
        placed += batch
        for chosen in batch:
            pod = {**chosen.body, "status": {"phase": "Pending"}}
            if chosen.placement.node is None:
                pod["status"]["conditions"] = [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
                ]
            else:
                pod = {**pod, "spec": {**pod["spec"], "nodeName": chosen.placement.node}}
            placement.pod_changed("MODIFIED", pod)
    return placed


def place_all(placement: PlacementController, pods: list[dict[str, Any]]) -> dict[str, int]:
    for pod in pods:
        placement.pod_changed("ADDED", pod)
    counts: dict[str, int] = {}
    for chosen in rounds(placement):
        variant = chosen.placement.variant.name
        counts[variant] = counts.get(variant, 0) + 1
    return counts


# m6i.2xlarge: AVX512VNNI, 7910m allocatable (7 one-CPU pods); m4.2xlarge: AVX2 only.
VNNI_AND_AVX2 = [("m6i.2xlarge", 2), ("m4.2xlarge", 2)]


def test_the_best_variant_first_then_spill_in_rank_order() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2))
    counts = place_all(placement, [gated_pod() for _ in range(20)])
    assert counts == {"avx512vnni": 14, "avx2": 6}


def test_a_busy_best_pool_spills_at_once() -> None:
    fleet = nodes(*VNNI_AND_AVX2)
    placement = controller(fleet)
    vnni = [n["metadata"]["name"] for n in fleet if n["metadata"]["name"].startswith("m6i")]
    for node in vnni:
        placement.pod_changed("ADDED", bound(node, "7"))  # another team's pods
    assert place_all(placement, [gated_pod() for _ in range(3)]) == {"avx2": 3}


def test_finished_pods_free_their_room() -> None:
    fleet = nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1))
    placement = controller(fleet)
    other = bound("m6i-2xlarge-0", "7")
    placement.pod_changed("ADDED", other)
    other["status"]["phase"] = "Succeeded"
    placement.pod_changed("MODIFIED", other)
    assert place_all(placement, [gated_pod()]) == {"avx512vnni": 1}


def test_wait_pins_the_best_variant_without_room() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2))
    pods = [gated_pod(annotations={names.WHEN_FULL_ANNOTATION: "wait"}) for _ in range(16)]
    for pod in pods:
        placement.pod_changed("ADDED", pod)
    chosen = rounds(placement)
    assert {c.placement.variant.name for c in chosen} == {"avx512vnni"}
    assert [c.placement.reason for c in chosen].count("wait") == 2
    assert all(c.placement.node is None for c in chosen if c.placement.reason == "wait")


def test_no_room_anywhere_pins_the_best_growable_variant() -> None:
    fleet = nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1))
    placement = controller(fleet, growable=frozenset({"avx2"}))
    placement.pod_changed("ADDED", gated_pod("9"))  # larger than any node
    (chosen,) = placement.plan_batch()
    assert (chosen.placement.variant.name, chosen.placement.reason) == ("avx2", "full")
    assert chosen.placement.node is None  # nothing reserved: it holds no room


def test_pods_gated_longer_than_the_maximum_age_are_placed_as_admission_would() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)), max_gate_age=60)
    placement.pod_changed("ADDED", gated_pod("9", age=120))
    (chosen,) = placement.plan_batch()
    assert (chosen.placement.variant.name, chosen.placement.reason) == ("avx512vnni", "timeout")


def test_higher_priority_pods_are_placed_first() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)))
    low = [gated_pod("4", age=10 - i) for i in range(2)]  # older than `high`
    high = gated_pod("4", priority=1000)
    for pod in [*low, high]:
        placement.pod_changed("ADDED", pod)
    chosen = {c.pod["metadata"]["uid"]: c.placement for c in rounds(placement)}
    # One 4-CPU pod fits each 8-CPU node: the high-priority pod takes the best one, the
    # oldest low-priority pod the next, and the last finds no room anywhere.
    assert chosen[high["metadata"]["uid"]].reason == "room"
    assert chosen[low[0]["metadata"]["uid"]].variant.name == "avx2"
    assert chosen[low[1]["metadata"]["uid"]].reason == "full"


def test_another_gate_still_present_holds_the_pod() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1)))
    pod = gated_pod()
    pod["spec"]["schedulingGates"].insert(0, {"name": "kueue.x-k8s.io/admission"})
    assert place_all(placement, [pod]) == {}


def test_the_update_pins_the_variant_and_removes_the_gate_in_one_write() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2))
    placement.pod_changed("ADDED", gated_pod(nodeSelector={"kubernetes.io/os": "linux"}))
    (chosen,) = placement.plan_batch()
    body = chosen.body
    assert body["metadata"]["resourceVersion"] == "7"  # the write is conditional
    assert "schedulingGates" not in body["spec"]
    assert body["spec"]["nodeSelector"]["kubernetes.io/os"] == "linux"  # never changed
    assert body["spec"]["nodeSelector"][names.cpuid_label("AVX512VNNI")] == "true"
    assert "affinity" not in body["spec"]
    annotations = body["metadata"]["annotations"]
    assert annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512vnni"
    assert annotations[names.BASE_ENVIRONMENT_ANNOTATION] == ENV
    assert annotations[names.POD_DELETION_COST_ANNOTATION] == "0"
    assert body["metadata"]["labels"][names.VARIANT_LABEL] == "avx512vnni"


def test_only_our_gate_is_removed() -> None:
    pod = gated_pod()
    pod["spec"]["schedulingGates"].append({"name": "example.com/other"})
    variant = CATALOG.get("avx2")
    assert variant is not None
    body = ungated(pod, Placement(variant, "n1", "room"), ENV, "int8-inference")
    assert body["spec"]["schedulingGates"] == [{"name": "example.com/other"}]


def test_a_spill_waits_until_the_better_pods_placed_before_it_are_bound() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)))
    for pod in [gated_pod() for _ in range(9)]:
        placement.pod_changed("ADDED", pod)
    first = placement.plan_batch()
    # The scheduler could give a spilled avx2 pod room on the VNNI node that the 7 VNNI
    # pods just placed still need: the spills wait for those 7 to be bound.
    assert [c.placement.reason for c in first] == ["room"] * 7
    assert placement.plan_batch() == []  # nothing bound yet: still waiting
    for chosen in first:
        node = chosen.placement.node
        placement.pod_changed("MODIFIED", {**chosen.body, "spec": {**chosen.body["spec"],
                                                                   "nodeName": node}})  # fmt: skip
    assert [c.placement.reason for c in placement.plan_batch()] == ["spill"] * 2


def test_a_spill_is_held_for_binds_at_most_half_the_maximum_gate_age() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)), max_gate_age=120)
    for pod in [gated_pod() for _ in range(7)]:
        placement.pod_changed("ADDED", pod)
    assert [c.placement.reason for c in placement.plan_batch()] == ["room"] * 7
    placement.pod_changed("ADDED", gated_pod(age=30))
    assert placement.plan_batch() == []  # young: it waits for the 7 binds
    older = gated_pod(age=61)
    placement.pod_changed("ADDED", older)
    # Past half the gate age it goes now, spilled (not later, on the full pool); the
    # younger one still waits.
    placed = placement.plan_batch()
    assert [(c.placement.reason, c.pod["metadata"]["uid"]) for c in placed] == [
        ("spill", older["metadata"]["uid"])
    ]


def test_spills_waiting_on_binds_keep_the_lease_renewed_while_binds_come() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)), progress_timeout=30.0)
    placement.pods.synced.set()
    for pod in [gated_pod() for _ in range(9)]:
        placement.pod_changed("ADDED", pod)
    first = placement.plan_batch()
    assert placement.plan_batch() == []  # the 2 spills wait for the 7 binds
    placement._progress = time.monotonic() - 60  # a minute without a placement: a stall
    assert not placement.healthy()
    node = first[0].placement.node
    placement.pod_changed("MODIFIED", {**first[0].body, "spec": {**first[0].body["spec"],
                                                                 "nodeName": node}})  # fmt: skip
    assert placement.healthy()  # a bind it waited for: the pipeline moves


def replica(template: str = "abc") -> dict[str, Any]:
    """A gated pod of one ReplicaSet's template."""
    pod = gated_pod()
    pod["metadata"]["labels"]["pod-template-hash"] = template
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w", "uid": "rs-1",
         "controller": True}]  # fmt: skip
    return pod


def test_held_replicas_of_one_template_cost_one_choice_per_batch() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 4)))
    for pod in [replica() for _ in range(7)] + [replica("def") for _ in range(3)]:
        placement.pod_changed("ADDED", pod)
    first = placement.plan_batch()
    assert [c.placement.reason for c in first] == ["room"] * 7  # the spills wait
    calls: list[str] = []
    choose = placement.choose

    def counted(pod: Any, *args: Any) -> Any:
        calls.append(pod["metadata"]["labels"]["pod-template-hash"])
        return choose(pod, *args)

    placement.choose = counted  # type: ignore[method-assign,assignment]
    for _ in range(20):
        placement.pod_changed("ADDED", replica())  # more of the first template arrive
    assert placement.plan_batch() == []
    assert sorted(calls) == ["abc", "def"]  # not 23 choices
    for chosen in first:
        node = chosen.placement.node
        placement.pod_changed("MODIFIED", {**chosen.body, "spec": {**chosen.body["spec"],
                                                                   "nodeName": node}})  # fmt: skip
    assert [c.placement.reason for c in placement.plan_batch()] == ["spill"] * 23


def test_ungate_all_places_spills_in_the_same_batch() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)), release_all=True)
    for pod in [gated_pod() for _ in range(9)]:
        placement.pod_changed("ADDED", pod)
    reasons = [c.placement.reason for c in placement.plan_batch()]
    assert reasons == ["room"] * 7 + ["spill"] * 2  # no binds will come: nothing is held


def test_spilled_pods_cost_less_to_delete_than_the_best_variants() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)))
    for pod in [gated_pod() for _ in range(8)]:
        placement.pod_changed("ADDED", pod)
    costs = {
        c.placement.variant.name: int(
            c.body["metadata"]["annotations"][names.POD_DELETION_COST_ANNOTATION]
        )
        for c in rounds(placement)
    }
    assert costs["avx2"] < costs["avx512vnni"]


def test_a_new_leader_reserves_room_for_pinned_unbound_pods() -> None:
    placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)))
    placed = place_all(placement, [gated_pod() for _ in range(7)])
    assert placed == {"avx512vnni": 7}
    # The successor sees those 7 pods ungated and unbound, pinned to avx512vnni.
    successor = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1)))
    pinned = []
    for _ in range(7):
        pod = gated_pod()
        del pod["spec"]["schedulingGates"]
        pod["metadata"]["labels"][names.VARIANT_LABEL] = "avx512vnni"
        pod["spec"]["nodeSelector"] = {names.cpuid_label("AVX512VNNI"): "true"}
        pinned.append(pod)
    successor.replace_pods(pinned)
    newcomer = gated_pod()
    assert place_all(successor, [newcomer]) == {}  # the VNNI node's room is reserved
    for pod in pinned:  # the predecessor's pods get bound
        bound_there = {**pod, "spec": {**pod["spec"], "nodeName": "m6i-2xlarge-0"}}
        successor.pod_changed("MODIFIED", bound_there)
    assert {c.placement.variant.name for c in rounds(successor)} == {"avx2"}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["250m", "500m", "1", "1500m", "3"]), min_size=1, max_size=60),
    st.lists(st.sampled_from(["500m", "1", "2"]), max_size=10),
)
def test_never_more_is_placed_than_fits_on_each_node(cpus: list[str], busy: list[str]) -> None:
    fleet = nodes(("m6i.2xlarge", 2), ("m4.2xlarge", 1), ("c6g.2xlarge", 1))
    placement = controller(fleet)
    for index, cpu in enumerate(busy):
        placement.pod_changed("ADDED", bound(fleet[index % len(fleet)]["metadata"]["name"], cpu))
    for cpu in cpus:
        placement.pod_changed("ADDED", gated_pod(cpu))
    rounds(placement)
    for node in fleet:
        name = node["metadata"]["name"]
        allocatable = placement._allocatable[name]
        used = placement.ledger.used(name)
        assert all(used.get(k, 0) <= v for k, v in allocatable.items()), name


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["500m", "1", "3"]), min_size=1, max_size=40))
def test_one_choice_per_template_places_exactly_what_one_per_pod_would(cpus: list[str]) -> None:
    def placed(templated: bool) -> list[tuple[str, str]]:
        placement = controller(nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 2)))
        for index, cpu in enumerate(cpus):
            pod = replica(template=cpu) if templated else gated_pod(cpu)
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = cpu
            pod["metadata"]["name"] = pod["metadata"]["uid"] = f"p{index:03}"  # same order
            placement.pod_changed("ADDED", pod)
        return [(c.placement.variant.name, c.placement.reason) for c in rounds(placement)]

    assert placed(templated=True) == placed(templated=False)


def test_preview_says_what_the_controller_would_do_with_the_room_it_sees() -> None:
    planner = Planner(PlacementSettings(CATALOG, lease_namespace="x", identity="explain"))
    fleet = nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1))
    planner.fleet_changed(index_nodes(node_state(n) for n in fleet))
    vnni_node = fleet[0]["metadata"]["name"]
    planner.replace_pods([bound(vnni_node, "6")])  # another team's pod: room for 1 left
    pod = gated_pod()
    vnni = CATALOG.get("avx512vnni")
    assert vnni is not None
    assert planner.room_seen(pod, vnni) == 1
    chosen = planner.preview(pod)
    assert chosen is not None and chosen.placement.reason == "room"
    assert chosen.placement.node == vnni_node
    big = planner.preview(gated_pod("2"))
    assert big is not None and big.placement.reason == "spill"
    assert big.placement.variant.name == "avx2"
    assert planner.ledger.entry(uid_of(pod)) is None  # a preview reserves nothing


def test_explain_shows_the_controllers_decision_and_room_for_a_gated_pod() -> None:
    fleet = nodes(("m6i.2xlarge", 1), ("m4.2xlarge", 1))
    busy = bound(fleet[0]["metadata"]["name"], "7")  # the VNNI node is full
    pod = gated_pod(annotations={names.VARIANTS_ANNOTATION: "avx512vnni,avx2"})
    pod["spec"]["schedulingGates"].insert(0, {"name": "example.com/hold"})
    answer = explain_gated(CATALOG, fleet, [busy, pod], pod)
    assert answer is not None
    assert answer["decision"]["variant"] == "avx2"
    assert answer["decision"]["reason"] == "spill"
    assert answer["room"] == {"avx512vnni": 0, "avx2": 7}
    assert answer["otherGates"] == ["example.com/hold"]
    text = explain_gated_text(answer)
    assert "waits first for: example.com/hold" in text
    assert "spilled, no room on the nodes of avx512vnni" in text
    assert "avx512vnni 0, avx2 7" in text


def test_explain_says_nothing_of_placement_for_a_pod_not_gated() -> None:
    pod = gated_pod()
    del pod["spec"]["schedulingGates"]
    assert explain_gated(CATALOG, nodes(("m4.2xlarge", 1)), [], pod) is None

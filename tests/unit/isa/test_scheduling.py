"""Node eligibility: readiness, selectors, required affinity and taints."""

from __future__ import annotations

from typing import Any

from flox_isa.isa.constraints import Toleration, constraints_of
from flox_isa.isa.features import Features
from flox_isa.isa.fleet import NodeInfo
from flox_isa.isa.nodes import node_state
from flox_isa.isa.scheduling import NodeState, Taint, tolerates
from flox_isa.isa.scheduling import eligible as eligible_for

LABELS = {"kubernetes.io/arch": "amd64", "pool": "batch", "cores": "8"}


def _node(**changes: Any) -> NodeState:
    base: dict[str, Any] = {
        "info": NodeInfo("n1", Features("amd64", frozenset())),
        "labels": LABELS,
    }
    base.update(changes)
    return NodeState(**base)


def eligible(node: NodeState, pod_spec: dict[str, Any]) -> bool:
    """`isa.scheduling.eligible` for a pod spec given as data."""
    return eligible_for(node, constraints_of(pod_spec))


def tolerations(*entries: dict[str, Any]) -> tuple[Toleration, ...]:
    return constraints_of({"tolerations": list(entries)}).tolerations


def test_not_ready_or_cordoned_nodes_are_not_eligible() -> None:
    assert eligible(_node(), {})
    assert not eligible(_node(ready=False), {})
    assert not eligible(_node(unschedulable=True), {})


def test_node_selector_must_match_every_entry() -> None:
    assert eligible(_node(), {"nodeSelector": {"pool": "batch"}})
    assert not eligible(_node(), {"nodeSelector": {"pool": "batch", "zone": "a"}})


def _affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    selector_terms = [{"matchExpressions": t} for t in terms]
    required = {"nodeSelectorTerms": selector_terms}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def test_required_affinity_operators() -> None:
    cases: list[tuple[dict[str, Any], bool]] = [
        ({"key": "pool", "operator": "In", "values": ["batch", "web"]}, True),
        ({"key": "pool", "operator": "NotIn", "values": ["batch"]}, False),
        ({"key": "gpu", "operator": "NotIn", "values": ["yes"]}, True),
        ({"key": "pool", "operator": "Exists"}, True),
        ({"key": "pool", "operator": "DoesNotExist"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["4"]}, True),
        ({"key": "cores", "operator": "Lt", "values": ["4"]}, False),
        ({"key": "pool", "operator": "Gt", "values": ["4"]}, False),
    ]
    for expression, expected in cases:
        assert eligible(_node(), {"affinity": _affinity([expression])}) is expected, expression


def test_affinity_terms_are_ored() -> None:
    no = {"key": "pool", "operator": "In", "values": ["web"]}
    yes = {"key": "pool", "operator": "Exists"}
    assert eligible(_node(), {"affinity": _affinity([no], [yes])})
    assert not eligible(_node(), {"affinity": _affinity([no, yes])})


def test_hard_taints_need_a_toleration_soft_ones_do_not() -> None:
    tainted = _node(taints=(Taint("dedicated", "ml", "NoSchedule"),))
    assert not eligible(tainted, {})
    toleration = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    assert eligible(tainted, {"tolerations": [toleration]})
    assert eligible(_node(taints=(Taint("spot", "", "PreferNoSchedule"),)), {})


def test_toleration_matching_rules() -> None:
    taint = Taint("dedicated", "ml", "NoExecute")
    assert tolerates(tolerations({"operator": "Exists"}), taint)
    assert tolerates(tolerations({"key": "dedicated", "operator": "Exists"}), taint)
    assert not tolerates(tolerations({"key": "dedicated", "value": "web"}), taint)
    assert not tolerates(
        tolerations({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}), taint
    )


def test_node_state_from_an_api_object() -> None:
    node = {
        "kind": "Node",
        "metadata": {"name": "ip-10-0-0-1", "labels": {"kubernetes.io/arch": "arm64"}},
        "spec": {"unschedulable": True, "taints": [{"key": "a", "effect": "NoExecute"}]},
        "status": {
            "allocatable": {"cpu": "3920m"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    state = node_state(node)
    assert state.ready and state.unschedulable and not state.schedulable
    assert state.taints == (Taint("a", "", "NoExecute"),)
    assert state.info.allocatable_cpu == 3.92

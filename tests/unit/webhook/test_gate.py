"""Late binding at admission: gate auto-mode pods, never twice, never guard-mode pods."""

from __future__ import annotations

from flox_isa.isa import names
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.offer import OfferIndex
from flox_isa.webhook.decision import Context, decision_key
from flox_isa.webhook.models import pod_from
from tests.unit.webhook.test_decision import CATALOG, ENV, OWN_NAMESPACE, fleet_states, pod, run

GATE = {"name": names.PLACEMENT_GATE}


def gating() -> Context:
    return Context(CATALOG, OfferIndex(index_nodes(fleet_states()), CATALOG), OWN_NAMESPACE, True)


def test_auto_mode_pods_are_gated_not_pinned_while_late_binding_is_on() -> None:
    decision = run(pod(), gating())
    assert decision.allowed and decision.outcome == "patched" and decision.reason == "gated"
    paths = {op["path"]: op["value"] for op in decision.patch}
    assert paths["/spec/schedulingGates"] == [GATE]
    assert "/spec/nodeSelector" not in paths  # the controller pins it, with room in view
    assert not any("environment" in p for p in paths)
    reason_path = "/metadata/annotations/" + names.REASON_ANNOTATION.replace("/", "~1")
    assert paths[reason_path].startswith("gated: fp32-inference")


def test_another_controllers_gate_is_kept_and_ours_appended() -> None:
    decision = run(pod(spec={"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]}), gating())
    assert {"op": "add", "path": "/spec/schedulingGates/-", "value": GATE} in decision.patch


def test_reinvocation_with_our_gate_changes_nothing() -> None:
    decision = run(pod(spec={"schedulingGates": [GATE]}), gating())
    assert decision.allowed and decision.outcome == "unchanged" and not decision.patch


def test_a_pinned_variant_is_guarded_at_once_never_gated() -> None:
    decision = run(pod(env=f"{ENV}-avx2"), gating())
    assert decision.reason == "guard"
    assert not any("schedulingGates" in op["path"] for op in decision.patch)


def test_the_pod_can_opt_out_of_late_binding() -> None:
    opted_out = pod({names.PLACEMENT_ANNOTATION: names.PLACEMENT_ADMISSION})
    decision = run(opted_out, gating())
    assert decision.reason == "auto" and decision.variant is not None


def test_without_late_binding_pods_are_pinned_at_admission_as_before() -> None:
    decision = run(pod())
    assert decision.reason == "auto"
    assert not any("schedulingGates" in op["path"] for op in decision.patch)


def test_a_bad_when_full_value_is_denied_naming_the_annotation_and_the_values() -> None:
    decision = run(pod({names.WHEN_FULL_ANNOTATION: "later"}), gating())
    assert not decision.allowed
    assert names.WHEN_FULL_ANNOTATION in decision.message
    assert "next-best, wait" in decision.message


def test_whether_the_webhook_gates_is_part_of_the_memo_key() -> None:
    parsed = pod_from(pod())
    assert decision_key(parsed, "tickets", False, True) != decision_key(
        parsed, "tickets", False, False
    )
    gated = pod_from(pod(spec={"schedulingGates": [GATE]}))
    assert decision_key(gated, "tickets", False, True) != decision_key(
        parsed, "tickets", False, True
    )

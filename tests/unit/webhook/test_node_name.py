"""Pods created with spec.nodeName already set (issue 15): the node is chosen, so the
webhook picks that node's best variant, or checks that it runs the pinned one."""

from __future__ import annotations

from flox_isa.isa import names
from tests.unit.webhook.test_decision import ENV, context, patched, pod, run, selector_for

M4 = "m4-xlarge-0"  # avx2 only
C6G = "c6g-xlarge-1"  # armv8.2
M6I = "m6i-xlarge-0"  # avx512vnni


def on(node: str, **kwargs: object) -> dict[str, object]:
    body = pod(**kwargs)  # type: ignore[arg-type]
    body["spec"]["nodeName"] = node
    return body


def test_auto_picks_the_best_variant_of_the_chosen_node_not_the_fleets() -> None:
    body = on(M4, annotations={names.WORKLOAD_ANNOTATION: "int8-inference"})
    decision = run(body)
    assert (decision.allowed, decision.reason, decision.variant) == (True, "auto", "avx2")
    out = patched(decision, body)
    assert out["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx2"
    assert out["spec"]["nodeSelector"] == selector_for("avx2")
    assert M4 in decision.message
    assert run(on(M6I, annotations={names.WORKLOAD_ANNOTATION: "int8-inference"})).variant == (
        "avx512vnni"
    )


def test_auto_keeps_the_generation_pins() -> None:
    body = on(C6G, annotations={names.GENERATIONS_ANNOTATION: "armv8.2=3"}, env=f"{ENV}:1")
    out = patched(run(body), body)
    assert out["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-armv8.2:3"


def test_a_pinned_variant_the_node_lacks_is_denied_naming_node_and_flags() -> None:
    decision = run(on(M4, env=f"{ENV}-avx512vnni"))
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert f"spec.nodeName {M4} cannot run avx512vnni" in decision.message
    assert "it lacks AVX512BW, AVX512CD, AVX512DQ, AVX512F, AVX512VL, AVX512VNNI" in (
        decision.message
    )
    arm = run(on(C6G, env=None, labels={names.VARIANT_LABEL: "avx2"}))
    assert not arm.allowed and "it is arm64, avx2 needs amd64" in arm.message


def test_a_pinned_variant_the_node_runs_is_guarded() -> None:
    decision = run(on(M6I, env=f"{ENV}-avx2"))
    assert (decision.allowed, decision.reason, decision.variant) == (True, "guard", "avx2")
    assert decision.warnings == ()


def test_no_allowed_variant_on_the_node_is_denied() -> None:
    decision = run(on(M4, annotations={names.VARIANTS_ANNOTATION: "armv8.2,armv9"}))
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert f"spec.nodeName {M4} runs none of the allowed variants" in decision.message


def test_a_node_unknown_to_the_inventory_is_allowed_with_a_warning() -> None:
    auto = run(on("ghost-1"))
    assert (auto.allowed, auto.outcome, auto.reason, auto.patch) == (
        True,
        "unchanged",
        "node-unknown",
        (),
    )
    assert auto.warnings == (
        "flox-isa: node ghost-1 is not in the inventory: cannot check that it runs a variant",
    )
    guarded = run(on("ghost-1", env=f"{ENV}-avx2"))
    assert guarded.allowed and guarded.reason == "guard"
    assert "cannot check that it has avx2's flags" in guarded.warnings[0]


def test_before_the_inventory_is_listed_auto_waits_and_guard_guards() -> None:
    assert run(on(M4), context(ready=False)).code == 503
    guarded = run(on(M4, env=f"{ENV}-avx2"), context(ready=False))
    assert (guarded.allowed, guarded.reason, guarded.warnings) == (True, "guard", ())


def test_out_of_scope_pods_with_a_node_name_stay_out_of_scope() -> None:
    assert run(on(M4, inject=False)).outcome == "skipped"
    assert run(on(M4), namespace="kube-system").outcome == "skipped"

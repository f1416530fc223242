"""Flox generation pins through the webhook (issue 15): `owner/name:N` and
`isa.flox.dev/generations`, on the devcluster's default fleet."""

from __future__ import annotations

import pytest

from flox_isa.isa import names
from flox_isa.webhook.decision import decision_key
from flox_isa.webhook.models import pod_from
from tests.unit.webhook.test_decision import ENV, patched, pod, run, selector_for

GENERATIONS = names.GENERATIONS_ANNOTATION


def test_a_pinned_base_maps_each_variant_to_its_own_generation() -> None:
    body = pod(
        {GENERATIONS: "avx2=4,avx512vnni=6", names.WORKLOAD_ANNOTATION: "int8-inference"},
        env=f"{ENV}:3",
    )
    decision = run(body)
    assert (decision.allowed, decision.reason, decision.variant) == (True, "auto", "avx512vnni")
    out = patched(decision, body)
    annotations = out["metadata"]["annotations"]
    assert annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512vnni:6"
    assert annotations[names.BASE_ENVIRONMENT_ANNOTATION] == f"{ENV}:3"
    assert out["spec"]["nodeSelector"] == selector_for("avx512vnni")


def test_only_the_variants_the_map_names_are_candidates() -> None:
    # fp32: avx512 is the fleet's best, but the map only names avx2 and armv9.
    body = pod({GENERATIONS: "avx2=4,armv9=2"}, env=f"{ENV}:3")
    decision = run(body)
    assert decision.variant == "armv9"  # 41 > 35
    env = patched(decision, body)["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION]
    assert env == f"{ENV}-armv9:2"
    both = pod({GENERATIONS: "avx2=4,armv9=2", names.VARIANTS_ANNOTATION: "avx2,avx512"})
    assert run(both).variant == "avx2"


def test_an_unpinned_base_with_a_map_is_pinned_per_variant() -> None:
    body = pod({GENERATIONS: "avx2=9"})
    out = patched(run(body), body)
    assert out["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx2:9"


def test_a_pinned_base_without_a_map_is_denied_naming_the_annotation() -> None:
    decision = run(pod(env=f"{ENV}:3"))
    assert (decision.allowed, decision.reason) == (False, "invalid-input")
    assert f"{ENV}:3 pins a generation" in decision.message
    assert "isa.flox.dev/generations: avx2=4,avx512vnni=6" in decision.message
    assert "\n" not in decision.message


def test_a_pinned_variant_is_guarded_and_keeps_its_generation() -> None:
    body = pod(env=f"{ENV}-avx2:7")
    decision = run(body)
    assert (decision.allowed, decision.reason, decision.variant) == (True, "guard", "avx2")
    out = patched(decision, body)
    assert out["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx2:7"
    assert out["spec"]["nodeSelector"] == selector_for("avx2")
    assert run(out).patch == ()


@pytest.mark.parametrize(
    ("env", "generations", "message"),
    [
        (f"{ENV}-avx2:7", "avx2=8", "is generation 7 but isa.flox.dev/generations says avx2=8"),
        (f"{ENV}-avx2:7", "armv9=8", "variant avx2 is not in isa.flox.dev/generations"),
        (ENV, "avx2=1", "none of which is in isa.flox.dev/variants"),
    ],
)
def test_a_map_that_disagrees_is_a_conflict(env: str, generations: str, message: str) -> None:
    annotations = {GENERATIONS: generations}
    if env == ENV:
        annotations[names.VARIANTS_ANNOTATION] = "armv9"
    decision = run(pod(annotations, env=env))
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert message in decision.message


@pytest.mark.parametrize(
    ("generations", "message"),
    [
        ("avx2", "annotation isa.flox.dev/generations: 'avx2' is not variant=generation"),
        ("", "annotation isa.flox.dev/generations: is empty"),
        ("avx1024=3", "unknown variant(s) 'avx1024'; allowed: avx2, avx512"),
        ("avx2=1,avx2=2", "'avx2' is given twice"),
    ],
)
def test_a_bad_map_is_denied_saying_what_is_allowed(generations: str, message: str) -> None:
    decision = run(pod({GENERATIONS: generations}, env=f"{ENV}:3"))
    assert (decision.allowed, decision.reason) == (False, "invalid-input")
    assert message in decision.message


@pytest.mark.parametrize("env", [f"{ENV}\n", f"{ENV}:", f"{ENV}:x", f"{ENV}-avx2:1:2"])
def test_references_the_grammar_refuses_are_malformed(env: str) -> None:
    decision = run(pod(env=env))
    assert (decision.allowed, decision.reason) == (False, "invalid-input")
    assert "is malformed; expected owner/name or owner/name:generation" in decision.message


def test_the_webhook_applied_to_its_own_pinned_output_returns_no_patch() -> None:
    body = pod({GENERATIONS: "avx2=4,armv8.2=5"}, env=f"{ENV}:3")
    first = run(body)
    again = run(patched(first, body))
    assert (again.allowed, again.patch, again.variant) == (True, (), first.variant)


def test_the_generations_map_is_part_of_the_decision_key() -> None:
    one, other = (
        pod_from(pod({GENERATIONS: text}, env=f"{ENV}:3")) for text in ("avx2=4", "avx2=5")
    )
    assert decision_key(one, "tickets", False) != decision_key(other, "tickets", False)

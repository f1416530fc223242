"""The placement controller keeps generation pins (issue 15): a gated pod with a pinned
base and `isa.flox.dev/generations` is ungated to a named variant at its own generation."""

from __future__ import annotations

from flox_isa.isa import names
from tests.unit.operator.test_placement import VNNI_AND_AVX2, controller, gated_pod, nodes


def test_a_gated_pinned_pod_is_placed_on_a_named_variant_at_its_generation() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2))
    pinned = {names.GENERATIONS_ANNOTATION: "avx2=4,armv9=2"}
    pod = gated_pod(annotations={names.ENVIRONMENT_ANNOTATION: "acme/embedder:3", **pinned})
    placement.pod_changed("ADDED", pod)
    (chosen,) = placement.plan_batch()
    assert chosen.placement.variant.name == "avx2"  # avx512vnni is not named
    annotations = chosen.body["metadata"]["annotations"]
    assert annotations[names.ENVIRONMENT_ANNOTATION] == "acme/embedder-avx2:4"
    assert annotations[names.BASE_ENVIRONMENT_ANNOTATION] == "acme/embedder:3"


def test_a_pinned_pod_without_a_map_stays_gated() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2))
    pod = gated_pod(annotations={names.ENVIRONMENT_ANNOTATION: "acme/embedder:3"})
    placement.pod_changed("ADDED", pod)
    assert placement.plan_batch() == []
    disjoint = gated_pod(
        annotations={names.GENERATIONS_ANNOTATION: "armv9=2", names.VARIANTS_ANNOTATION: "avx2"}
    )
    placement.pod_changed("ADDED", disjoint)
    assert placement.plan_batch() == []

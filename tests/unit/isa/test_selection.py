"""Choosing the best variant for a CPU and a workload, and explaining why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flox_isa.isa.catalog import WORKLOADS, Workload, default_catalog
from flox_isa.isa.features import Features, features_from_labels
from flox_isa.isa.selection import choose, compatible_variants

CATALOG = default_catalog()
AVX512 = {"AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"}
HASWELL = Features("amd64", frozenset({"AVX", "AVX2", "FMA3"}))
SKYLAKE = Features("amd64", frozenset({"AVX2", "FMA3"} | AVX512))
CASCADE_LAKE = Features("amd64", SKYLAKE.flags | {"AVX512VNNI"})
SAPPHIRE_RAPIDS = Features("amd64", CASCADE_LAKE.flags | {"AVX512BF16", "AMXBF16"})
GRAVITON2 = Features("arm64", frozenset({"ASIMD", "FPHP", "ASIMDHP", "ASIMDDP"}))
GRAVITON3 = Features("arm64", GRAVITON2.flags | {"SVE", "BF16", "I8MM"})
GRAVITON4 = Features("arm64", GRAVITON3.flags | {"SVE2"})


@pytest.mark.parametrize(
    ("features", "workload", "expected"),
    [
        (HASWELL, "fp32-inference", "avx2"),
        (SKYLAKE, "fp32-inference", "avx512"),
        (SKYLAKE, "int8-inference", "avx512"),
        (CASCADE_LAKE, "int8-inference", "avx512vnni"),
        (CASCADE_LAKE, "fp32-inference", "avx512"),  # equal scores: the wider fit wins
        (SAPPHIRE_RAPIDS, "bf16-training", "avx512bf16"),
        (SAPPHIRE_RAPIDS, "int8-inference", "avx512vnni"),
        (GRAVITON2, "fp32-inference", "armv8.2"),
        (GRAVITON3, "fp32-inference", "armv8.2"),  # SVE without SVE2
        (GRAVITON4, "fp32-inference", "armv9"),
    ],
)
def test_best_variant_per_cpu_and_workload(
    features: Features, workload: Workload, expected: str
) -> None:
    choice = choose(CATALOG, features, workload)
    assert choice.variant is not None
    assert choice.variant.name == expected


def test_reason_names_the_deciding_flag_and_scores() -> None:
    choice = choose(CATALOG, CASCADE_LAKE, "int8-inference")
    assert choice.reason == "has AVX512VNNI; int8-inference: avx512vnni 85 > avx512 52"


def test_reason_for_a_tie_says_wider_fit() -> None:
    choice = choose(CATALOG, CASCADE_LAKE, "fp32-inference")
    assert choice.reason == (
        "fp32-inference: avx512 52 = avx512vnni 52; avx512 needs fewer flags (wider fit)"
    )


def test_single_compatible_variant_says_so() -> None:
    choice = choose(CATALOG, HASWELL, "fp32-inference")
    assert choice.reason == "has AVX2, FMA3; fp32-inference: avx2 35 (only compatible variant)"
    assert [v.name for v in choice.compatible] == ["avx2"]


def test_nothing_fits_names_the_nearest_variant_and_missing_flags() -> None:
    sandy_bridge = Features("amd64", frozenset({"AVX", "SSE42"}))
    choice = choose(CATALOG, sandy_bridge, "fp32-inference")
    assert choice.variant is None
    assert choice.nearest is not None and choice.nearest.name == "avx2"
    assert choice.missing == {"AVX2", "FMA3"}
    assert choice.reason == "no variant fits: nearest avx2 misses AVX2, FMA3"


def test_unknown_arch_says_no_variant_of_that_arch() -> None:
    choice = choose(CATALOG, Features("riscv64", frozenset()), "fp32-inference")
    assert choice.variant is None
    assert "no riscv64 variant in the catalog" in choice.reason


def test_allowed_subset_limits_the_choice() -> None:
    choice = choose(CATALOG, CASCADE_LAKE, "int8-inference", allowed={"avx2", "avx512"})
    assert choice.variant is not None and choice.variant.name == "avx512"
    none_allowed = choose(CATALOG, HASWELL, "fp32-inference", allowed={"armv9"})
    assert none_allowed.variant is None and none_allowed.nearest is not None


def test_arch_must_match_even_if_flags_do() -> None:
    mislabelled = Features("arm64", HASWELL.flags)
    assert compatible_variants(CATALOG, mislabelled) == ()


def test_features_from_nfd_labels_need_the_value_true() -> None:
    labels = {
        "kubernetes.io/arch": "amd64",
        "feature.node.kubernetes.io/cpu-cpuid.AVX2": "true",
        "feature.node.kubernetes.io/cpu-cpuid.FMA3": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "false",
        "feature.node.kubernetes.io/cpu-model.vendor_id": "Intel",
    }
    assert features_from_labels(labels) == Features("amd64", frozenset({"AVX2", "FMA3"}))


# Property tests over feature sets drawn from every flag the catalog knows.
CATALOG_FLAGS = sorted({flag for v in CATALOG.variants for flag in v.flags} | {"AMXBF16", "AVX"})
feature_sets = st.builds(
    Features,
    arch=st.sampled_from(["amd64", "arm64"]),
    flags=st.frozensets(st.sampled_from(CATALOG_FLAGS)),
)
workloads = st.sampled_from(WORKLOADS)


@given(feature_sets, workloads)
def test_chosen_variant_needs_only_flags_the_cpu_has(
    features: Features, workload: Workload
) -> None:
    choice = choose(CATALOG, features, workload)
    if choice.variant is not None:
        assert choice.variant.flags <= features.flags
        assert choice.variant.arch == features.arch


@given(feature_sets, workloads, st.sampled_from(CATALOG_FLAGS))
def test_adding_a_flag_never_lowers_the_score(
    features: Features, workload: Workload, flag: str
) -> None:
    before = choose(CATALOG, features, workload).variant
    after = choose(CATALOG, Features(features.arch, features.flags | {flag}), workload).variant
    if before is not None:
        assert after is not None
        assert after.score(workload) >= before.score(workload)


@given(st.lists(st.sampled_from(CATALOG_FLAGS), unique=True), workloads, st.randoms())
def test_answer_does_not_depend_on_label_order(
    flags: list[str], workload: Workload, random: object
) -> None:
    labels = [(f"feature.node.kubernetes.io/cpu-cpuid.{f}", "true") for f in flags]
    labels.append(("kubernetes.io/arch", "amd64"))
    shuffled = list(labels)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    first = choose(CATALOG, features_from_labels(dict(labels)), workload)
    second = choose(CATALOG, features_from_labels(dict(shuffled)), workload)
    assert first == second

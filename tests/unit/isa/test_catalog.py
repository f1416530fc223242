"""The variant catalog: defaults from design.md, overrides from files, specific errors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flox_isa.isa.catalog import (
    DEFAULT_CATALOG_DATA,
    CatalogError,
    catalog_from_data,
    catalog_to_yaml,
    default_catalog,
    parse_catalog,
)


def _with_first_variant(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(DEFAULT_CATALOG_DATA)
    data["variants"][0].update(changes)
    return data


def test_default_catalog_is_the_design_table() -> None:
    catalog = default_catalog()
    assert catalog.names == ("avx2", "avx512", "avx512bf16", "avx512vnni", "armv8.2", "armv9")
    vnni = catalog.get("avx512vnni")
    assert vnni is not None
    assert vnni.arch == "amd64"
    assert vnni.flags == {"AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512VNNI"}
    assert (vnni.score("fp32-inference"), vnni.score("int8-inference")) == (52, 85)
    assert vnni.environment_suffix == "-avx512vnni"


def test_bf16_training_ranks_follow_the_guide() -> None:
    catalog = default_catalog()
    ordered = sorted(catalog.variants, key=lambda v: -v.score("bf16-training"))
    assert ordered[0].name == "avx512bf16"
    assert ordered[-1].name == "armv8.2"


def test_yaml_round_trip_keeps_the_catalog() -> None:
    catalog = default_catalog()
    assert parse_catalog(catalog_to_yaml(catalog)) == catalog


def test_json_and_configmap_data_are_accepted() -> None:
    text = json.dumps(DEFAULT_CATALOG_DATA)
    assert parse_catalog(text) == default_catalog()
    configmap_data = {"catalog.yaml": catalog_to_yaml(default_catalog())}
    assert parse_catalog(json.dumps(configmap_data)) == default_catalog()


def test_a_user_may_add_a_baseline_without_requirements() -> None:
    data = copy.deepcopy(DEFAULT_CATALOG_DATA)
    scores = {"fp32-inference": 15, "int8-inference": 15, "bf16-training": 0}
    data["variants"].append({"name": "generic", "arch": "amd64", "flags": [], "scores": scores})
    assert catalog_from_data(data).get("generic") is not None


def _scores(**scores: float) -> dict[str, float]:
    return {k.replace("_", "-"): v for k, v in scores.items()}


ALL_SCORES = _scores(fp32_inference=1, int8_inference=1, bf16_training=1)
INVALID_CATALOGS: list[tuple[object, str]] = [
    (
        _with_first_variant(arch="riscv64"),
        "variant 'avx2': arch: unknown arch 'riscv64'; allowed: amd64, arm64",
    ),
    (_with_first_variant(name=""), "variant #1 (no name): name: '' is not a valid variant name"),
    (_with_first_variant(name="AVX 2"), "name: 'AVX 2' is not a valid variant name"),
    (
        _with_first_variant(flags=["avx2", "FMA3"]),
        "variant 'avx2': flags: avx2 is not NFD amd64 CPUID flag name",
    ),
    (_with_first_variant(flags=["AVX2", "SVE"]), "flags: SVE is not NFD amd64"),
    (
        _with_first_variant(flags=["AVX2", "BMI2", "LZCNT"]),
        "variant 'avx2': flags: NFD leaves BMI2, LZCNT out of its node labels by default",
    ),
    (
        _with_first_variant(scores={**ALL_SCORES, "fp32-inference": -1}),
        "variant 'avx2': scores.fp32-inference: Input should be greater than or equal to 0",
    ),
    (
        _with_first_variant(scores={**ALL_SCORES, "fp64": 1}),
        "scores.fp64: unknown workload; allowed: fp32-inference, int8-inference, bf16-training",
    ),
    (
        _with_first_variant(scores=_scores(fp32_inference=1)),
        "scores: missing a score for int8-inference, bf16-training",
    ),
    (_with_first_variant(colour="red"), "variant 'avx2': colour: unknown field"),
    (
        {"variants": [DEFAULT_CATALOG_DATA["variants"][0]] * 2},
        "variant 'avx2': name: duplicate variant name",
    ),
    ({"variants": []}, "catalog: variants: at least one variant is required"),
    ([1, 2], "invalid catalog"),
    (_with_first_variant(name="avx..512"), "variant 'avx..512': name: 'avx..512' is not a valid"),
    (_with_first_variant(name="a.-b"), "variant 'a.-b': name: 'a.-b' is not a valid variant"),
    (_with_first_variant(name="avx2\n"), "name: 'avx2\\n' is not a valid variant name"),
    (_with_first_variant(name="a" * 33), "is not a valid variant name (it ends Deployment names)"),
    (
        _with_first_variant(environmentSuffix="/avx2"),
        "variant 'avx2': environmentSuffix: '/avx2' would not make owner/name a Flox environment",
    ),
    (_with_first_variant(environmentSuffix=":2"), "environmentSuffix: ':2' would not make"),
    (
        _with_first_variant(environmentSuffix="-avx512"),
        "variant 'avx512': environmentSuffix: '-avx512' is also the suffix '-avx512' of variant"
        " 'avx2'",
    ),
    (
        _with_first_variant(environmentSuffix="vnni"),
        "variant 'avx512vnni': environmentSuffix: '-avx512vnni' ends with the suffix 'vnni'"
        " of variant 'avx2'",
    ),
    (
        _with_first_variant(environmentSuffix="x-avx512"),
        "variant 'avx512': environmentSuffix: '-avx512' is the ending of the suffix",
    ),
]


@pytest.mark.parametrize(("data", "expected"), INVALID_CATALOGS)
def test_invalid_catalogs_name_the_variant_and_field(data: object, expected: str) -> None:
    with pytest.raises(CatalogError) as error:
        catalog_from_data(data)
    assert expected in str(error.value)
    assert "\n" not in str(error.value).replace("\\n", "")


def test_malformed_yaml_says_so() -> None:
    with pytest.raises(CatalogError, match="not valid YAML or JSON"):
        parse_catalog("variants: [unclosed")


def test_variant_for_environment_prefers_the_longest_suffix() -> None:
    catalog = default_catalog()
    found = catalog.variant_for_environment("acme/tickets-avx512vnni")
    assert found is not None and found.name == "avx512vnni"
    assert catalog.variant_for_environment("acme/tickets") is None


def test_the_default_armv9_needs_sve2_which_graviton3_lacks() -> None:
    # The public armv9 builds are compiled -march=armv9-a+sve+sve2 (design.md).
    armv9 = default_catalog().get("armv9")
    assert armv9 is not None and {"SVE", "SVE2", "BF16", "I8MM"} <= armv9.flags


def test_every_default_suffix_names_one_variant_back() -> None:
    catalog = default_catalog()
    for variant in catalog.variants:
        assert catalog.variant_for_environment(f"acme/x{variant.environment_suffix}") == variant

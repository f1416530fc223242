"""nfd_labels and the NFD flag tables, checked against real NFD label sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.features import Features, features_from_labels
from flox_isa.isa.nfd import labelled_flags, never_labelled, nfd_labels, x86_64_level
from flox_isa.isa.nfd_flags import ALL_FLAGS, ARM64_FLAGS, DEFAULT_LABEL_BLACKLIST, X86_FLAGS
from flox_isa.isa.selection import choose

NFD_DATA = Path(__file__).parent.parent.parent / "data" / "nfd"


def real_labels(name: str) -> dict[str, str]:
    data = yaml.safe_load((NFD_DATA / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def cpuid_flags(labels: dict[str, str]) -> set[str]:
    return {k.removeprefix(names.NFD_CPUID_PREFIX) for k in labels
            if k.startswith(names.NFD_CPUID_PREFIX)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(p.name for p in NFD_DATA.glob("*.yaml")))
def test_real_label_sets_use_only_known_flags_and_no_blacklisted_ones(name: str) -> None:
    assert (NFD_DATA / name).read_text(encoding="utf-8").startswith("# source: ")
    flags = cpuid_flags(real_labels(name))
    assert flags <= ALL_FLAGS
    assert not flags & DEFAULT_LABEL_BLACKLIST


def test_blacklist_is_x86_only_so_arm64_hwcaps_are_all_labelled() -> None:
    assert not DEFAULT_LABEL_BLACKLIST & ARM64_FLAGS
    assert DEFAULT_LABEL_BLACKLIST <= X86_FLAGS


def test_default_catalog_requires_no_blacklisted_flag() -> None:
    for variant in default_catalog().variants:
        assert never_labelled(variant.flags) == frozenset(), variant.name


def test_real_arm64_node_with_neon_and_fp16_gets_armv8_2() -> None:
    features = features_from_labels(real_labels("arm64-minikube-nfd-v0.17.yaml"))
    assert {"ASIMD", "FPHP", "ASIMDHP"} <= features.flags
    assert choose(default_catalog(), features, "fp32-inference").variant.name == "armv8.2"  # type: ignore[union-attr]


def test_real_amd64_vnni_node_gets_avx512vnni_for_int8() -> None:
    features = features_from_labels(real_labels("amd64-vnni-gpu-worker.yaml"))
    catalog = default_catalog()
    assert choose(catalog, features, "int8-inference").variant.name == "avx512vnni"  # type: ignore[union-attr]
    assert choose(catalog, features, "fp32-inference").variant.name == "avx512"  # type: ignore[union-attr]


def test_nfd_labels_drop_blacklisted_flags_and_add_levels_and_arch() -> None:
    flags = {"SSE", "SSE2", "SSE42", "POPCNT", "AVX2", "FMA3", "SYSCALL"}
    labels = nfd_labels(Features("amd64", frozenset(flags)))
    assert labels[names.cpuid_label("AVX2")] == "true"
    assert names.cpuid_label("SSE42") not in labels
    assert names.cpuid_label("POPCNT") not in labels
    assert labels[names.ARCH_LABEL] == "amd64"


def test_levels_follow_klauspost_x64level() -> None:
    v1 = {"SYSCALL", "CMOV", "CMPXCHG8", "X87", "FXSR", "MMX", "SSE", "SSE2"}
    v2 = v1 | {"CX16", "LAHF", "POPCNT", "SSE3", "SSE4", "SSE42", "SSSE3"}
    v3 = v2 | {"AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA3", "LZCNT", "MOVBE", "OSXSAVE"}
    v4 = v3 | {"AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL"}
    assert [x86_64_level(s) for s in (v1, v2, v3, v4)] == [1, 2, 3, 4]
    assert x86_64_level(v4 - {"SYSCALL"}) == 0  # klauspost: SYSCALL or SYSENTER needed
    assert x86_64_level(v4 - {"LZCNT"}) == 2
    labels = nfd_labels(Features("amd64", frozenset(v3)))
    assert {names.cpuid_label(f"X86_64_V{n}") for n in (1, 2, 3)} <= labels.keys()
    assert names.cpuid_label("X86_64_V4") not in labels


def test_arm64_gets_no_x86_levels() -> None:
    features = Features("arm64", frozenset({"ASIMD", "SVE"}))
    assert labelled_flags(features) == {"ASIMD", "SVE"}


def test_labels_round_trip_to_features_minus_blacklist() -> None:
    features = Features("amd64", frozenset({"AVX2", "FMA3", "BMI2", "F16C"}))
    back = features_from_labels(nfd_labels(features))
    assert back == Features("amd64", frozenset({"AVX2", "FMA3"}))

"""features_from_cpuinfo: Linux names -> NFD names, on real /proc/cpuinfo texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from flox_isa.isa.cpuinfo import (
    CpuinfoError,
    arm64_flag_names,
    features_from_cpuinfo,
    x86_flag_names,
)
from flox_isa.isa.nfd_flags import ARM64_FLAGS, X86_FLAGS

# Real /proc/cpuinfo files, each citing its source; the simulated fleet is built from them.
DATA = Path(__file__).parents[3] / "flox_isa" / "devcluster" / "profiles" / "cpuinfo"
ALL_FILES = sorted(DATA.glob("*.txt"))


def read(name: str) -> str:
    return (DATA / f"{name}.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_every_data_file_cites_its_source_and_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# source: ")
    features = features_from_cpuinfo(text)
    assert features.flags <= (X86_FLAGS if features.arch == "amd64" else ARM64_FLAGS)


@pytest.mark.parametrize(
    ("linux", "nfd"),
    [
        ("fma", "FMA3"), ("pni", "SSE3"), ("sse4_1", "SSE4"), ("sse4_2", "SSE42"),
        ("pclmulqdq", "CLMUL"), ("aes", "AESNI"), ("abm", "LZCNT"), ("lahf_lm", "LAHF"),
        ("fpu", "X87"), ("cx8", "CMPXCHG8"), ("sep", "SYSEE"), ("ht", "HTT"),
        ("sha_ni", "SHA"), ("avx512_vnni", "AVX512VNNI"), ("avx512_bf16", "AVX512BF16"),
        ("avx512_fp16", "AVX512FP16"), ("avx512_vbmi2", "AVX512VBMI2"),
        ("avx512_bitalg", "AVX512BITALG"), ("avx512_vpopcntdq", "AVX512VPOPCNTDQ"),
        ("avx_vnni", "AVXVNNI"), ("amx_bf16", "AMXBF16"), ("amx_tile", "AMXTILE"),
        ("amx_int8", "AMXINT8"), ("arch_capabilities", "IA32_ARCH_CAP"),
        ("avx2", "AVX2"), ("avx512f", "AVX512F"), ("avx512vl", "AVX512VL"),
    ],
)  # fmt: skip
def test_x86_linux_names_map_to_klauspost_names(linux: str, nfd: str) -> None:
    assert nfd in x86_flag_names([linux])
    assert nfd in X86_FLAGS


def test_x86_unknown_and_kernel_only_flags_are_dropped() -> None:
    assert x86_flag_names(["constant_tsc", "nopl", "pti", "no_such_flag"]) == frozenset()


def test_osxsave_is_inferred_from_xsave_because_cpuinfo_hides_it() -> None:
    assert "OSXSAVE" in x86_flag_names(["xsave"])
    assert "OSXSAVE" not in x86_flag_names(["avx"])


def test_arm64_hwcaps_are_upper_cased_and_unknown_ones_dropped() -> None:
    assert arm64_flag_names(["asimd", "fphp", "sve", "i8mm", "cssc"]) == {
        "ASIMD", "FPHP", "SVE", "I8MM",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("broadwell-e5-2686v4", 3),
        ("skylake-sp-8175m", 4),
        ("cascadelake-8259cl", 4),
        ("icelake-8375c", 4),
        ("sapphirerapids-8488c", 4),
    ],
)
def test_x86_64_levels_are_cumulative_like_nfd(name: str, level: int) -> None:
    flags = features_from_cpuinfo(read(name)).flags
    for n in range(1, 5):
        assert (f"X86_64_V{n}" in flags) is (n <= level)


def test_sapphire_rapids_real_cpuinfo() -> None:
    features = features_from_cpuinfo(read("sapphirerapids-8488c"))
    assert features.arch == "amd64"
    assert {"AVX512BF16", "AVX512VNNI", "AMXBF16", "AMXINT8", "AMXTILE", "FMA3"} <= features.flags


def test_broadwell_has_avx2_and_no_avx512() -> None:
    flags = features_from_cpuinfo(read("broadwell-e5-2686v4")).flags
    assert {"AVX2", "FMA3"} <= flags
    assert not any(f.startswith("AVX512") for f in flags)


def test_graviton_generations() -> None:
    g2 = features_from_cpuinfo(read("graviton2-neoverse-n1"))
    g3 = features_from_cpuinfo(read("graviton3-neoverse-v1"))
    g4 = features_from_cpuinfo(read("graviton4-neoverse-v2"))
    assert g2.arch == g3.arch == g4.arch == "arm64"
    assert {"ASIMD", "FPHP", "ASIMDHP"} <= g2.flags and "SVE" not in g2.flags
    assert {"SVE", "BF16", "I8MM"} <= g3.flags and "SVE2" not in g3.flags
    assert {"SVE", "SVE2", "BF16", "I8MM"} <= g4.flags


def _processor(text: str, index: int) -> str:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return body.replace("processor\t: 0", f"processor\t: {index}", 1)


def test_multi_processor_file_takes_the_intersection() -> None:
    one = _processor(read("graviton3-neoverse-v1"), 0)
    other = _processor(read("graviton3-neoverse-v1").replace(" sve ", " "), 1)
    features = features_from_cpuinfo(f"{one}\n\n{other}\n")
    assert "SVE" not in features.flags
    assert {"BF16", "I8MM"} <= features.flags


def test_identical_processors_give_the_single_processor_answer() -> None:
    block = _processor(read("icelake-8375c"), 0)
    assert features_from_cpuinfo(f"{block}\n\n{block}") == features_from_cpuinfo(block)


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty_text_is_an_error(text: str) -> None:
    with pytest.raises(CpuinfoError, match="empty"):
        features_from_cpuinfo(text)


@pytest.mark.parametrize("text", ["processor\t: 0\nvendor_id\t: GenuineIntel\n", "hello world\n"])
def test_no_flags_line_is_an_error(text: str) -> None:
    with pytest.raises(CpuinfoError, match="no 'flags' \\(x86\\) or 'Features' \\(arm64\\)"):
        features_from_cpuinfo(text)


def test_lscpu_output_gets_a_hint() -> None:
    with pytest.raises(CpuinfoError, match="lscpu"):
        features_from_cpuinfo("Architecture: x86_64\nFlags: fpu sse avx2\n")


@pytest.mark.parametrize("junk", ["\x7fELF\x00\x01\x02", "\x01\x02\x03\x04\x05 abc"])
def test_binary_junk_is_an_error(junk: str) -> None:
    with pytest.raises(CpuinfoError, match="binary"):
        features_from_cpuinfo(junk)


def test_mixed_architectures_are_an_error() -> None:
    text = "processor: 0\nflags: avx2\n\nprocessor: 1\nFeatures: asimd\n"
    with pytest.raises(CpuinfoError, match="mixes"):
        features_from_cpuinfo(text)

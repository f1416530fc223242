"""Features from a Linux /proc/cpuinfo text, in NFD's flag names. Pure: text in, Features out.

x86: the `flags` line holds the kernel's names (arch/x86/include/asm/cpufeatures.h:
the macro name lower-cased, or the quoted string in its comment). NFD names the
same CPUID bits after klauspost/cpuid, so each name is mapped below; names with
no klauspost/cpuid counterpart are dropped. arm64: the `Features` line holds the
kernel HWCAP names; NFD upper-cases them (see nfd_flags), so the mapping is
upper-casing, keeping only the names NFD's table knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from flox_isa.isa.features import Features
from flox_isa.isa.nfd import with_x86_64_levels
from flox_isa.isa.nfd_flags import ARM64_FLAGS


class CpuinfoError(ValueError):
    """Text that is not a /proc/cpuinfo we can read."""


# Linux cpuinfo name -> klauspost/cpuid FeatureID name, where they differ.
_X86_RENAMES: Final[Mapping[str, str]] = {
    "fpu": "X87", "cx8": "CMPXCHG8", "sep": "SYSEE", "ht": "HTT", "fxsr_opt": "FXSROPT",
    "3dnow": "AMD3DNOW", "3dnowext": "AMD3DNOWEXT", "pni": "SSE3", "pclmulqdq": "CLMUL",
    "fma": "FMA3", "sse4_1": "SSE4", "sse4_2": "SSE42", "aes": "AESNI", "lahf_lm": "LAHF",
    # AMD's "abm" bit (CPUID 0x80000001 ECX[5]) is the LZCNT bit klauspost reads.
    "abm": "LZCNT", "sha_ni": "SHA", "avx512_vbmi2": "AVX512VBMI2",
    "avx512_vnni": "AVX512VNNI", "avx512_bitalg": "AVX512BITALG",
    "avx512_vpopcntdq": "AVX512VPOPCNTDQ", "avx512_vp2intersect": "AVX512VP2INTERSECT",
    "avx512_bf16": "AVX512BF16", "avx512_fp16": "AVX512FP16", "avx_vnni": "AVXVNNI",
    "avx_ifma": "AVXIFMA", "amx_bf16": "AMXBF16", "amx_tile": "AMXTILE",
    "amx_int8": "AMXINT8", "amx_fp16": "AMXFP16", "arch_capabilities": "IA32_ARCH_CAP",
    "core_capabilities": "IA32_CORE_CAP", "ibt": "CETIBT", "sgx_lc": "SGXLC",
}  # fmt: skip

# Linux names spelled like klauspost/cpuid's, upper-cased.
_X86_SAME_NAMES = """
    cmov mmx fxsr sse sse2 syscall nx mmxext rdtscp vmx ssse3 cx16 movbe popcnt xsave avx f16c
    rdrand hypervisor svm sse4a xop fma4 tbm topoext bmi1 hle avx2 bmi2 erms rtm mpx avx512f
    avx512dq rdseed adx avx512ifma avx512pf avx512er avx512cd avx512bw avx512vl xsaveopt xsavec
    xgetbv1 xsaves clzero wbnoinvd rdpru mcommit avx512vbmi gfni vaes vpclmulqdq tme cldemote
    movdiri movdir64b enqcmd waitpkg fsrm md_clear serialize tsxldtrk pconfig flush_l1d ibpb
    ibrs stibp sgx sev sev_es sev_snp tdx_guest hybrid_cpu cmpccxadd lam fred wrmsrns
"""
_X86_SAME: Final[frozenset[str]] = frozenset(_X86_SAME_NAMES.split())

_BLANK_TOLERANCE: Final = 0.05  # share of unprintable characters that marks binary junk
_LINE_BREAKS: Final = str.maketrans("", "", "\t\n\r")


def x86_flag_names(linux_flags: Iterable[str]) -> frozenset[str]:
    """NFD names for Linux x86 flags; unknown names are dropped, OSXSAVE inferred."""
    have = frozenset(linux_flags)
    mapped = {_X86_RENAMES[f] for f in have if f in _X86_RENAMES}
    mapped |= {f.upper() for f in have & _X86_SAME}
    # cpuinfo hides "osxsave"; Linux enables CR4.OSXSAVE whenever it lists xsave.
    if "xsave" in have:
        mapped.add("OSXSAVE")
    return frozenset(mapped)


def arm64_flag_names(hwcaps: Iterable[str]) -> frozenset[str]:
    """NFD names for Linux arm64 HWCAP names: upper-cased, only those NFD's table knows."""
    return frozenset(name.upper() for name in hwcaps) & ARM64_FLAGS


def features_from_cpuinfo(text: str) -> Features:
    """The features every processor in `text` has (the intersection), NFD-named.

    x86 also gets the X86_64_V1..V4 levels NFD derives. Lines starting with `#`
    are comments (our test data cites its sources that way).
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the first key
    _reject_junk(text)
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        raise CpuinfoError("the cpuinfo text is empty")
    blocks = _processor_blocks(text)
    arch, flag_sets = _flag_sets(blocks, text)
    common = frozenset.intersection(*flag_sets)
    if arch == "amd64":
        return Features("amd64", with_x86_64_levels(x86_flag_names(common)))
    return Features("arm64", arm64_flag_names(common))


def _reject_junk(text: str) -> None:
    if "\x00" in text:
        raise CpuinfoError("this is binary data (NUL bytes), not /proc/cpuinfo text")
    if text.translate(_LINE_BREAKS).isprintable():
        return  # the common case, at C speed
    unprintable = sum(1 for c in text if not c.isprintable() and c not in "\t\n\r")
    if text and unprintable / len(text) > _BLANK_TOLERANCE:
        raise CpuinfoError("this looks like binary data, not /proc/cpuinfo text")


def _processor_blocks(text: str) -> list[dict[str, str]]:
    """`key: value` blocks separated by blank lines, comments skipped (linear time)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
        elif sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _flag_sets(blocks: list[dict[str, str]], text: str) -> tuple[str, list[frozenset[str]]]:
    # Processors of one machine mostly repeat one line: split each distinct line once.
    x86 = [
        frozenset(line.split())
        for line in dict.fromkeys(b["flags"] for b in blocks if "flags" in b)
    ]
    arm = [
        frozenset(line.split())
        for line in dict.fromkeys(b["Features"] for b in blocks if "Features" in b)
    ]
    if x86 and arm:
        raise CpuinfoError("the text mixes x86 'flags' lines and arm64 'Features' lines")
    if x86 or arm:
        return ("amd64", x86) if x86 else ("arm64", arm)
    hint = " (this looks like lscpu output; give /proc/cpuinfo)" if "Flags:" in text else ""
    raise CpuinfoError(f"no 'flags' (x86) or 'Features' (arm64) line found{hint}")

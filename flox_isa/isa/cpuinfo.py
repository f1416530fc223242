"""Features from a Linux /proc/cpuinfo, in NFD's flag names (PROVISIONAL mapping)."""

from __future__ import annotations

from flox_isa.isa.features import Features


class CpuinfoError(ValueError):
    """Text that is not a /proc/cpuinfo we can read."""


_X86_RENAMES = {"fma": "FMA3", "avx512_vnni": "AVX512VNNI", "avx512_bf16": "AVX512BF16",
                "amx_bf16": "AMXBF16", "amx_int8": "AMXINT8", "amx_tile": "AMXTILE"}  # fmt: skip


def features_from_cpuinfo(text: str) -> Features:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags":
            flags = value.split()
            return Features("amd64", frozenset(_X86_RENAMES.get(f, f.upper()) for f in flags))
        if key == "Features":
            return Features("arm64", frozenset(f.upper() for f in value.split()))
    raise CpuinfoError("no 'flags' (x86) or 'Features' (arm64) line found")

"""What Node Feature Discovery would label a node with, given its CPU features.

Pure: the simulated fleet and the tests use it to produce the labels a real
nfd-worker (default configuration, NFD >= 0.19) writes; see nfd_flags for sources.
"""

from __future__ import annotations

from collections.abc import Iterable

from flox_isa.isa import names
from flox_isa.isa.features import Features
from flox_isa.isa.nfd_flags import (
    DEFAULT_LABEL_BLACKLIST,
    X86_64_LEVEL_ANY_OF,
    X86_64_LEVEL_FLAGS,
    X86_64_LEVEL_REQUIREMENTS,
)


def x86_64_level(flags: Iterable[str]) -> int:
    """The x86-64 psABI level (0-4) as klauspost/cpuid's X64Level() computes it."""
    have = frozenset(flags)
    if not have & X86_64_LEVEL_ANY_OF:
        return 0
    level, needed = 0, frozenset[str]()
    for candidate in sorted(X86_64_LEVEL_REQUIREMENTS):
        needed |= X86_64_LEVEL_REQUIREMENTS[candidate]
        if not needed <= have:
            break
        level = candidate
    return level


def with_x86_64_levels(flags: Iterable[str]) -> frozenset[str]:
    """`flags` plus the cumulative X86_64_V1..Vn flags NFD derives from them."""
    have = frozenset(flags) - frozenset(X86_64_LEVEL_FLAGS)
    return have | frozenset(X86_64_LEVEL_FLAGS[: x86_64_level(have)])


def labelled_flags(
    features: Features, blacklist: frozenset[str] = DEFAULT_LABEL_BLACKLIST
) -> frozenset[str]:
    """The flags NFD publishes as labels: levels added on amd64, blacklist removed."""
    flags = with_x86_64_levels(features.flags) if features.arch == "amd64" else features.flags
    return flags - blacklist


def nfd_labels(
    features: Features, blacklist: frozenset[str] = DEFAULT_LABEL_BLACKLIST
) -> dict[str, str]:
    """`cpu-cpuid.<FLAG>: "true"` for each labelled flag, plus `kubernetes.io/arch`."""
    labels = {
        names.cpuid_label(flag): "true" for flag in sorted(labelled_flags(features, blacklist))
    }
    labels[names.ARCH_LABEL] = features.arch
    return labels


def never_labelled(
    flags: Iterable[str], blacklist: frozenset[str] = DEFAULT_LABEL_BLACKLIST
) -> frozenset[str]:
    """The flags a default NFD never labels: a nodeSelector on them never matches."""
    return frozenset(flags) & blacklist

"""CPU features of a node, read from the labels Node Feature Discovery writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flox_isa.isa import names


@dataclass(frozen=True, slots=True)
class Features:
    """What a CPU can do: its architecture and its NFD CPUID flag names.

    Hashable on purpose: callers cache decisions per distinct feature set.
    """

    arch: str
    flags: frozenset[str]


def features_from_labels(labels: Mapping[str, str]) -> Features:
    """Features from a Node's labels (`cpu-cpuid.<FLAG>: "true"`, `kubernetes.io/arch`)."""
    prefix = names.NFD_CPUID_PREFIX
    flags = frozenset(
        key[len(prefix) :]
        for key, value in labels.items()
        if key.startswith(prefix) and value == "true"
    )
    return Features(arch=labels.get(names.ARCH_LABEL, ""), flags=flags)

"""What a variant demands of a pod: the one place the webhook and the operator both read.

- the nodeSelector that keeps a variant's pods on CPUs with its instructions;
- the name of a variant's environment (`owner/name` + the variant's suffix);
- the grammar of a Flox environment reference.

The webhook's guard accepts exactly what the operator renders because both build
it here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from flox_isa.isa import names
from flox_isa.isa.catalog import Variant

# Environment references are `owner/name` (Flox: letters, digits, '.', '_', '-').
# One regex for the API server (CEL, RE2) and for Python (re).
ENVIRONMENT_REGEX: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
ENVIRONMENT_PATTERN: Final = re.compile(ENVIRONMENT_REGEX)
ENVIRONMENT_EXAMPLE: Final = "yourorg/ticket-processor"
ENVIRONMENT_GRAMMAR: Final = "owner/name (letters, digits, '.', '_', '-')"


def is_environment(reference: str) -> bool:
    """Is `reference` a Flox environment reference flox-isa can act on?"""
    return ENVIRONMENT_PATTERN.match(reference) is not None


def required_labels(variant: Variant) -> Mapping[str, str]:
    """The nodeSelector a variant needs: each NFD flag label and the architecture."""
    return _required_labels(variant.arch, variant.flags)


@functools.lru_cache(maxsize=256)
def _required_labels(arch: str, flags: frozenset[str]) -> Mapping[str, str]:
    labels = {names.cpuid_label(flag): "true" for flag in sorted(flags)}
    labels[names.ARCH_LABEL] = arch
    return MappingProxyType(labels)


def variant_environment(base: str, variant: Variant) -> str:
    """The environment a variant's pods run: the base environment's variant build."""
    return base + variant.environment_suffix

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
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from flox_isa.isa import names
from flox_isa.isa.catalog import Variant, Workload
from flox_isa.isa.inputs import ConflictError
from flox_isa.isa.scheduling import matches_required_affinity

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


def contradictions(variant: Variant, spec: Mapping[str, Any]) -> list[str]:
    """Where the pod's own nodeSelector or required node affinity rules the variant out."""
    needed = required_labels(variant)
    found = [
        f"nodeSelector {key}={value} but {variant.name} needs {key}={needed[key]}"
        for key, value in (spec.get("nodeSelector") or {}).items()
        if key in needed and value != needed[key]
    ]
    terms = _required_terms(spec.get("affinity"))
    if terms and all(_term_contradicts(term, needed) for term in terms):
        found.append(
            f"no required node affinity term allows {variant.name}'s"
            f" {_constrained_keys(terms, needed)}"
        )
    return found


def _required_terms(affinity: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    node_affinity = (affinity or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return list(required.get("nodeSelectorTerms") or [])


def _term_contradicts(term: Mapping[str, Any], needed: Mapping[str, str]) -> bool:
    """A term rules the variant out if an expression on a label it needs fails."""
    ours = [e for e in term.get("matchExpressions") or [] if e.get("key") in needed]
    if not ours:
        return False
    probe = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": ours}]
            }
        }
    }
    return not matches_required_affinity(probe, needed)


def _constrained_keys(terms: Sequence[Mapping[str, Any]], needed: Mapping[str, str]) -> str:
    keys = sorted(
        {e.get("key", "") for t in terms for e in t.get("matchExpressions") or []} & set(needed)
    )
    return ", ".join(f"{k}={needed[k]}" for k in keys)


def widest_allowed(
    spec: Mapping[str, Any], allowed: Sequence[Variant], workload: Workload
) -> Variant:
    """The allowed variant with the fewest requirements that the pod's constraints allow."""
    possible = [v for v in allowed if not contradictions(v, spec)]
    if not possible:
        details = "; ".join(c for v in allowed for c in contradictions(v, spec)[:1])
        raise ConflictError(
            f"no allowed variant ({_names(allowed)}) can run where this pod is"
            f" constrained to: {details}"
        )
    # Fewer required flags fit more CPUs; between equals, the older (slower) build does.
    return min(possible, key=lambda v: (len(v.flags), v.score(workload), v.name))


def _names(variants: Sequence[Variant]) -> str:
    return ", ".join(v.name for v in variants)

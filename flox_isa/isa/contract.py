"""What a variant demands of a pod: the one place the webhook and the operator both read.

- the nodeSelector that keeps a variant's pods on CPUs with its instructions;
- the name of a variant's environment (`owner/name` + the variant's suffix);
- the grammar of a Flox environment reference (`owner/name[:generation]`).

The webhook's guard accepts exactly what the operator renders because both build
it here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, NamedTuple

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.constraints import Constraints, Term
from flox_isa.isa.inputs import ConflictError, InvalidInputError
from flox_isa.isa.scheduling import matches_required_terms

# Environment references are `owner/name` with an optional generation pin `:N`
# (Flox: letters, digits, '.', '_', '-'; `flox.dev/environment: owner/name:3`).
# One anchor-free pattern: Python applies it with `re.fullmatch` (`$` would accept a
# trailing newline), the API server as `^(?:...)$` (CEL's `matches()` is unanchored).
_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_GENERATION: Final = r"[0-9]{1,9}"
ENVIRONMENT_REGEX: Final = rf"{_SEGMENT}/{_SEGMENT}(?::{_GENERATION})?"
ENVIRONMENT_CEL_REGEX: Final = f"^(?:{ENVIRONMENT_REGEX})$"
ENVIRONMENT_PATTERN: Final = re.compile(ENVIRONMENT_REGEX)
# An environment suffix keeps `owner/name<suffix>` an `owner/name`.
SUFFIX_REGEX: Final = r"[A-Za-z0-9._-]+"
SUFFIX_PATTERN: Final = re.compile(SUFFIX_REGEX)
ENVIRONMENT_EXAMPLE: Final = "yourorg/ticket-processor"
ENVIRONMENT_GRAMMAR: Final = "owner/name or owner/name:generation (letters, digits, '.', '_', '-')"
GENERATIONS_EXAMPLE: Final = "avx2=4,avx512vnni=6"
_GENERATION_PATTERN: Final = re.compile(_GENERATION)


class GenerationError(ValueError):
    """A pinned base environment whose variants' generations are not given."""


class Reference(NamedTuple):
    """A parsed environment reference: `owner/name` and its generation pin, if any.

    A NamedTuple: the webhook parses a new pod's reference on its hot path, and a frozen
    dataclass's `__init__` costs several times as much."""

    name: str
    generation: int | None = None

    def __str__(self) -> str:
        return reference_text(self.name, self.generation)


def reference_text(name: str, generation: int | None) -> str:
    """`owner/name`, or `owner/name:N` with a generation pin."""
    return name if generation is None else f"{name}:{generation}"


def is_environment(reference: str) -> bool:
    """Is `reference` a Flox environment reference flox-isa can act on?"""
    return ENVIRONMENT_PATTERN.fullmatch(reference) is not None


# A new pod's reference is parsed twice on the webhook's path (its template key, then its
# variant's name): the second time from here.
@functools.lru_cache(maxsize=256)
def parse_environment(reference: str) -> Reference | None:
    """`owner/name[:N]` split into name and generation; None when malformed."""
    if not is_environment(reference):
        return None
    name, _, generation = reference.partition(":")
    return Reference(name, int(generation) if generation else None)


def is_pinned(reference: str) -> bool:
    parsed = parse_environment(reference)
    return parsed is not None and parsed.generation is not None


def parse_generations(text: str) -> dict[str, int]:
    """`avx2=4,avx512vnni=6` as {variant: generation}; ValueError says what is wrong."""
    generations: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        variant, sep, number = (s.strip() for s in part.partition("="))
        if not sep or not variant or _GENERATION_PATTERN.fullmatch(number) is None:
            raise ValueError(
                f"{part!r} is not variant=generation (a whole number), e.g. {GENERATIONS_EXAMPLE}"
            )
        if variant in generations:
            raise ValueError(f"variant {variant!r} is given twice")
        generations[variant] = int(number)
    if not generations:
        raise ValueError(f"is empty; give variant=generation pairs, e.g. {GENERATIONS_EXAMPLE}")
    return generations


def read_generations(text: str | None, catalog: Catalog) -> dict[str, int] | None:
    """`isa.flox.dev/generations: avx2=4,avx512vnni=6`, validated against the catalog."""
    if text is None:
        return None
    where = f"annotation {names.GENERATIONS_ANNOTATION}"
    try:
        generations = parse_generations(text)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    unknown = [name for name in generations if catalog.get(name) is None]
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown variant(s) {', '.join(map(repr, unknown))};"
            f" allowed: {', '.join(catalog.names)}"
        )
    return generations


def generation_candidates(
    allowed: Sequence[Variant], generations: Mapping[str, int]
) -> tuple[Variant, ...]:
    """With a generations map only the variants it names are candidates."""
    named = tuple(v for v in allowed if v.name in generations)
    if not named:
        raise ConflictError(
            f"{names.GENERATIONS_ANNOTATION} names {', '.join(generations)}, none of which is"
            f" in {names.VARIANTS_ANNOTATION}: {_names(allowed)}"
        )
    return named


def pinned_candidates(
    environment: str, allowed: Sequence[Variant], generations: Mapping[str, int] | None
) -> tuple[Variant, ...]:
    """Auto mode's candidates: with a generations map only the variants it names; a
    pinned base without one is refused (its pin says nothing about its variants')."""
    if generations is not None:
        return generation_candidates(allowed, generations)
    if is_pinned(environment):
        raise InvalidInputError(
            f"annotation {names.ENVIRONMENT_ANNOTATION}: {environment} pins a generation of"
            " the base environment, but FloxHub counts generations per variant build;"
            f" add annotation {names.GENERATIONS_ANNOTATION} with each variant's generation,"
            f" e.g. {names.GENERATIONS_ANNOTATION}: {GENERATIONS_EXAMPLE}"
        )
    return tuple(allowed)


def required_labels(variant: Variant) -> Mapping[str, str]:
    """The nodeSelector a variant needs: each NFD flag label and the architecture."""
    return _required_labels(variant.arch, variant.flags)


@functools.lru_cache(maxsize=256)
def _required_labels(arch: str, flags: frozenset[str]) -> Mapping[str, str]:
    labels = {names.cpuid_label(flag): "true" for flag in sorted(flags)}
    labels[names.ARCH_LABEL] = arch
    return MappingProxyType(labels)


def variant_environment(
    base: str, variant: Variant, generations: Mapping[str, int] | None = None
) -> str:
    """The environment a variant's pods run: the base environment's variant build.

    FloxHub counts generations per environment, so a base's pin says nothing about
    its variants': with `generations` (`isa.flox.dev/generations`, `spec.generations`)
    the variant's build is pinned to its own generation; a pinned base needs one.
    """
    parsed = parse_environment(base)
    name = parsed.name if parsed is not None else base
    generation = generations.get(variant.name) if generations else None
    if generation is None and parsed is not None and parsed.generation is not None:
        raise GenerationError(
            f"{base} is pinned to a generation, which {name}{variant.environment_suffix}"
            f" does not share; give {variant.name}'s generation (e.g. {GENERATIONS_EXAMPLE})"
        )
    return reference_text(name + variant.environment_suffix, generation)


def environment_annotations(
    base: str, variant: Variant, generations: Mapping[str, int] | None = None
) -> dict[str, str]:
    """The environment annotations of a variant's pod: the build it runs
    (`variant_environment`) and the base environment it was chosen for."""
    return {
        names.ENVIRONMENT_ANNOTATION: variant_environment(base, variant, generations),
        names.BASE_ENVIRONMENT_ANNOTATION: base,
    }


def contradictions(variant: Variant, constraints: Constraints) -> list[str]:
    """Where the pod's own nodeSelector or required node affinity rules the variant out."""
    needed = required_labels(variant)
    found = [
        f"nodeSelector {key}={value} but {variant.name} needs {key}={needed[key]}"
        for key, value in constraints.node_selector
        if key in needed and value != needed[key]
    ]
    terms = constraints.required_terms
    if terms and all(_term_contradicts(term, needed) for term in terms):
        found.append(
            f"no required node affinity term allows {variant.name}'s"
            f" {_constrained_keys(terms, needed)}"
        )
    return found


def _term_contradicts(term: Term, needed: Mapping[str, str]) -> bool:
    """A term rules the variant out if an expression on a label it needs fails."""
    ours = tuple(e for e in term.match_expressions if e.key in needed)
    if not ours:
        return False
    return not matches_required_terms((Term(ours),), needed)


def _constrained_keys(terms: Sequence[Term], needed: Mapping[str, str]) -> str:
    keys = sorted({e.key for t in terms for e in t.match_expressions} & set(needed))
    return ", ".join(f"{k}={needed[k]}" for k in keys)


def widest_allowed(
    constraints: Constraints, allowed: Sequence[Variant], workload: Workload
) -> Variant:
    """The allowed variant with the fewest requirements that the pod's constraints allow."""
    possible = [v for v in allowed if not contradictions(v, constraints)]
    if not possible:
        details = "; ".join(c for v in allowed for c in contradictions(v, constraints)[:1])
        raise ConflictError(
            f"no allowed variant ({_names(allowed)}) can run where this pod is"
            f" constrained to: {details}"
        )
    # Fewer required flags fit more CPUs; between equals, the older (slower) build does.
    return min(possible, key=lambda v: (len(v.flags), v.score(workload), v.name))


def _names(variants: Sequence[Variant]) -> str:
    return ", ".join(v.name for v in variants)

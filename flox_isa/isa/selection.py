"""Which variants a CPU can run, and which of them is best for a workload."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.features import Features


@dataclass(frozen=True, slots=True)
class Choice:
    """The outcome of picking a variant for one feature set and workload."""

    workload: Workload
    variant: Variant | None
    compatible: tuple[Variant, ...]
    reason: str
    # Set only when nothing fits: the closest variant and the flags it lacks.
    nearest: Variant | None = None
    missing: frozenset[str] = frozenset()


def fits(variant: Variant, features: Features) -> bool:
    return variant.arch == features.arch and variant.flags <= features.flags


def rank_key(variant: Variant, workload: Workload) -> tuple[float, int, str]:
    """Sort key, best first: highest score, then fewer required flags (wider fit)."""
    return (-variant.score(workload), len(variant.flags), variant.name)


def candidates(catalog: Catalog, allowed: Collection[str] | None) -> tuple[Variant, ...]:
    if allowed is None:
        return catalog.variants
    return tuple(v for v in catalog.variants if v.name in allowed)


def compatible_variants(
    catalog: Catalog, features: Features, allowed: Collection[str] | None = None
) -> tuple[Variant, ...]:
    return tuple(v for v in candidates(catalog, allowed) if fits(v, features))


def best_of(variants: Iterable[Variant], workload: Workload) -> Variant | None:
    return min(variants, key=lambda v: rank_key(v, workload), default=None)


def choose(
    catalog: Catalog,
    features: Features,
    workload: Workload,
    allowed: Collection[str] | None = None,
) -> Choice:
    """The best variant for `workload` on a CPU with `features`, with the reason why."""
    compatible = compatible_variants(catalog, features, allowed)
    ranked = sorted(compatible, key=lambda v: rank_key(v, workload))
    if not ranked:
        return _nothing_fits(candidates(catalog, allowed), features, workload)
    return Choice(workload, ranked[0], compatible, explain(ranked, workload))


def explain(ranked: list[Variant], workload: Workload) -> str:
    """`has AVX512VNNI; int8-inference: avx512vnni 85 > avx512 52`."""
    best = ranked[0]
    if len(ranked) == 1:
        return (
            f"has {', '.join(sorted(best.flags)) or 'no required flags'};"
            f" {workload}: {best.name} {_num(best.score(workload))} (only compatible variant)"
        )
    runner_up = ranked[1]
    best_score, runner_up_score = best.score(workload), runner_up.score(workload)
    if best_score > runner_up_score:
        extra = sorted(best.flags - runner_up.flags) or sorted(best.flags)
        return (
            f"has {', '.join(extra) or 'no required flags'}; {workload}: {best.name}"
            f" {_num(best_score)} > {runner_up.name} {_num(runner_up_score)}"
        )
    return (
        f"{workload}: {best.name} {_num(best_score)} = {runner_up.name}"
        f" {_num(runner_up_score)}; {best.name} needs fewer flags (wider fit)"
    )


def nearest_variant(
    variants: Iterable[Variant], features: Features, workload: Workload
) -> tuple[Variant | None, frozenset[str]]:
    """The variant that misses the fewest flags (same arch first, then higher score)."""

    def distance(v: Variant) -> tuple[bool, int, tuple[float, int, str]]:
        return (v.arch != features.arch, len(v.flags - features.flags), rank_key(v, workload))

    nearest = min(variants, key=distance, default=None)
    return nearest, (nearest.flags - features.flags if nearest else frozenset())


def _nothing_fits(variants: Iterable[Variant], features: Features, workload: Workload) -> Choice:
    nearest, missing = nearest_variant(variants, features, workload)
    if nearest is None:
        reason = "no variant fits: no variant is allowed"
    elif nearest.arch != features.arch:
        reason = (
            f"no variant fits: no {features.arch or 'unknown-arch'} variant in the catalog;"
            f" nearest {nearest.name} is {nearest.arch}"
        )
    else:
        reason = f"no variant fits: nearest {nearest.name} misses {', '.join(sorted(missing))}"
    return Choice(workload, None, (), reason, nearest, missing)


def _num(score: float) -> str:
    return f"{score:g}"

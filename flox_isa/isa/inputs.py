"""A pod's flox-isa inputs read from its annotations: shared by the webhook and the
placement controller, so both read `isa.flox.dev/workload` and `isa.flox.dev/variants`
with one rule."""

from __future__ import annotations

from flox_isa.isa import names
from flox_isa.isa.catalog import DEFAULT_WORKLOAD, WORKLOADS, Catalog, Variant, Workload


class InvalidInputError(ValueError):
    """A pod input the webhook cannot act on; the message lists what is allowed."""


class ConflictError(ValueError):
    """The pod's own constraints contradict the variant it must run."""


def parse_workload(text: str | None) -> Workload:
    if text is None:
        return DEFAULT_WORKLOAD
    stripped = text.strip()
    for workload in WORKLOADS:
        if stripped == workload:
            return workload
    raise InvalidInputError(
        f"annotation {names.WORKLOAD_ANNOTATION}: unknown workload {text!r};"
        f" allowed: {', '.join(WORKLOADS)} (default {DEFAULT_WORKLOAD})"
    )


def parse_variants(text: str | None, catalog: Catalog) -> tuple[Variant, ...]:
    """The allowed variants, in catalog order; the whole catalog when not given."""
    if text is None:
        return catalog.variants
    requested = [part.strip() for part in text.split(",") if part.strip()]
    where = f"annotation {names.VARIANTS_ANNOTATION}"
    if not requested:
        raise InvalidInputError(
            f"{where} is empty; give a comma list of variants from: {', '.join(catalog.names)}"
        )
    unknown = [name for name in requested if catalog.get(name) is None]
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown variant(s) {', '.join(map(repr, unknown))};"
            f" allowed: {', '.join(catalog.names)}"
        )
    return tuple(v for v in catalog.variants if v.name in requested)

"""A pod's placement constraints: one frozen, hashable value, its own memo key.

What decides which nodes a pod could be scheduled on (resources aside): its
nodeSelector, its required node-affinity terms and its tolerations. Each edge
builds one `Constraints` from what it reads (the webhook from the admission body,
the operator from a TicketWorker's template and its pod watch, `explain pod` from a
file: `constraints_of` for a pod spec given as data), once; `isa` reads only this.
Equal values mean equal eligibility, so the value is the memo key (`FleetIndex.eligible`);
the parts are frozen msgspec Structs, pure data like the rest of `isa`, chosen because
they are built and hashed on the admission path (the decision memo, the eligibility
memo) several times faster than dataclasses or named tuples.
Defaults are filled in here (a toleration's operator is `Equal` unless said), so two
ways of writing the same constraints are one key. Resource requests are not part of it
(sidecar injectors may still change them): see `isa.capacity.Demand`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec


class _Value(msgspec.Struct, frozen=True, gc=False):
    """Immutable and hashable (each subclass says `frozen=True` too, for mypy); built and
    hashed in C, which matters on the admission path; holds no cycles (`gc=False`)."""


class Requirement(_Value, frozen=True):
    """One `matchExpressions` / `matchFields` entry: key, operator, values."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


class Term(_Value, frozen=True):
    """One required node-affinity term (`nodeSelectorTerms[]`): its requirements ANDed."""

    match_expressions: tuple[Requirement, ...] = ()
    match_fields: tuple[Requirement, ...] = ()


class Toleration(_Value, frozen=True):
    """A toleration with the API's defaults filled in (`operator` is `Equal` unless said)."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


def toleration(
    key: str | None, operator: str | None, value: str | None, effect: str | None
) -> Toleration:
    """A `Toleration` from its optional fields, as the API server reads them."""
    return Toleration(key or "", operator or "Equal", value or "", effect or "")


class Constraints(_Value, frozen=True):
    """nodeSelector (sorted entries), required node-affinity terms (ORed), tolerations."""

    node_selector: tuple[tuple[str, str], ...] = ()
    required_terms: tuple[Term, ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    @staticmethod
    def of(
        node_selector: Mapping[str, str] | None,
        required_terms: Iterable[Term] = (),
        tolerations: Iterable[Toleration] = (),
    ) -> Constraints:
        if not node_selector:
            selector: tuple[tuple[str, str], ...] = ()
        elif len(node_selector) == 1:
            selector = tuple(node_selector.items())
        else:
            selector = tuple(sorted(node_selector.items()))
        return Constraints(selector, tuple(required_terms), tuple(tolerations))


def constraints_of(pod_spec: Mapping[str, Any]) -> Constraints:
    """The constraints of a pod spec given as data (API field names: a file, an API
    object, a TicketWorker's template); entries of the wrong shape are read as absent."""
    selector = _mapping(pod_spec.get("nodeSelector"))
    node_affinity = _mapping(_mapping(pod_spec.get("affinity")).get("nodeAffinity"))
    required = _mapping(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))
    terms = (
        Term(_requirements(term.get("matchExpressions")), _requirements(term.get("matchFields")))
        for term in _mappings(required.get("nodeSelectorTerms"))
    )
    tolerations = (
        toleration(
            _text(t.get("key")),
            _text(t.get("operator")),
            _text(t.get("value")),
            _text(t.get("effect")),
        )
        for t in _mappings(pod_spec.get("tolerations"))
    )
    return Constraints.of({str(k): str(v) for k, v in selector.items()}, terms, tolerations)


def _requirements(entries: object) -> tuple[Requirement, ...]:
    return tuple(
        Requirement(
            _text(e.get("key")) or "",
            _text(e.get("operator")) or "",
            tuple(str(v) for v in _sequence(e.get("values"))),
        )
        for e in _mappings(entries)
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _mappings(value: object) -> list[Mapping[str, Any]]:
    return [entry for entry in _sequence(value) if isinstance(entry, Mapping)]


def _text(value: object) -> str | None:
    return None if value is None else str(value)

"""Which nodes a pod could be scheduled on: the scheduler's hard rules, as pure functions.

Covers what decides eligibility before resources: node readiness and
`spec.unschedulable`, `nodeSelector`, required node affinity, and NoSchedule /
NoExecute taints against the pod's tolerations, as `isa.constraints` holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from flox_isa.isa.constraints import Constraints, Requirement, Term, Toleration
from flox_isa.isa.fleet import NodeInfo

HARD_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node as the scheduler sees it, plus what a variant decision needs."""

    info: NodeInfo
    labels: Mapping[str, str]
    ready: bool = True
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def schedulable(self) -> bool:
        return self.ready and not self.unschedulable


def tolerates(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    """Kubernetes toleration matching (core/v1 Toleration.ToleratesTaint)."""
    return any(_tolerates_one(t, taint) for t in tolerations)


def _tolerates_one(toleration: Toleration, taint: Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if not toleration.key:
        return toleration.operator == "Exists"  # an empty key with Exists tolerates every taint
    if toleration.key != taint.key:
        return False
    if toleration.operator == "Exists":
        return True
    return toleration.operator == "Equal" and toleration.value == taint.value


def tolerates_hard_taints(tolerations: Sequence[Toleration], taints: Sequence[Taint]) -> bool:
    return all(
        tolerates(tolerations, taint) for taint in taints if taint.effect in HARD_TAINT_EFFECTS
    )


def matches_node_selector(selector: Iterable[tuple[str, str]], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector)


def matches_required_terms(
    terms: Sequence[Term], labels: Mapping[str, str], node_name: str = ""
) -> bool:
    """`requiredDuringSchedulingIgnoredDuringExecution`: terms ORed, expressions ANDed."""
    if not terms:
        return True
    fields = {"metadata.name": node_name}
    return any(_matches_term(term, labels, fields) for term in terms)


def _matches_term(term: Term, labels: Mapping[str, str], fields: Mapping[str, str]) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False  # an empty term matches no node
    return all(_matches_expression(e, labels) for e in term.match_expressions) and all(
        _matches_expression(e, fields) for e in term.match_fields
    )


def _matches_expression(expression: Requirement, labels: Mapping[str, str]) -> bool:
    key, operator, values = expression.key, expression.operator, expression.values
    present = key in labels
    value = labels.get(key, "")
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            node_value, bound = int(value), int(values[0])
        except ValueError:
            return False
        return node_value > bound if operator == "Gt" else node_value < bound
    return False


def eligible(node: NodeState, constraints: Constraints) -> bool:
    """Could the scheduler place a pod with `constraints` on `node` (resources aside)?"""
    return (
        node.schedulable
        and matches_node_selector(constraints.node_selector, node.labels)
        and matches_required_terms(constraints.required_terms, node.labels, node.name)
        and tolerates_hard_taints(constraints.tolerations, node.taints)
    )

"""Which nodes a pod could be scheduled on: the scheduler's hard rules, as pure functions.

Covers what decides eligibility before resources: node readiness and
`spec.unschedulable`, `nodeSelector`, required node affinity, and NoSchedule /
NoExecute taints against the pod's tolerations. Pod specs are plain dicts, as
the API server sends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Taint) -> bool:
    """Kubernetes toleration matching (core/v1 Toleration.ToleratesTaint)."""
    return any(_tolerates_one(t, taint) for t in tolerations)


def _tolerates_one(toleration: Mapping[str, Any], taint: Taint) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"  # an empty key with Exists tolerates every taint
    if key != taint.key:
        return False
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == taint.value


def tolerates_hard_taints(
    tolerations: Sequence[Mapping[str, Any]], taints: Sequence[Taint]
) -> bool:
    return all(
        tolerates(tolerations, taint) for taint in taints if taint.effect in HARD_TAINT_EFFECTS
    )


def matches_node_selector(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def matches_required_affinity(
    affinity: Mapping[str, Any] | None, labels: Mapping[str, str], node_name: str = ""
) -> bool:
    """`requiredDuringSchedulingIgnoredDuringExecution`: terms ORed, expressions ANDed."""
    node_affinity = (affinity or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": node_name}
    return any(_matches_term(term, labels, fields) for term in terms)


def _matches_term(
    term: Mapping[str, Any], labels: Mapping[str, str], fields: Mapping[str, str]
) -> bool:
    expressions = term.get("matchExpressions") or []
    field_expressions = term.get("matchFields") or []
    if not expressions and not field_expressions:
        return False  # an empty term matches no node
    return all(_matches_expression(e, labels) for e in expressions) and all(
        _matches_expression(e, fields) for e in field_expressions
    )


def _matches_expression(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expression.get("key", "")
    operator = expression.get("operator", "")
    values = expression.get("values") or []
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


def eligible(node: NodeState, pod_spec: Mapping[str, Any]) -> bool:
    """Could the scheduler place a pod with `pod_spec` on `node` (resources aside)?"""
    return (
        node.schedulable
        and matches_node_selector(pod_spec.get("nodeSelector") or {}, node.labels)
        and matches_required_affinity(pod_spec.get("affinity"), node.labels, node.name)
        and tolerates_hard_taints(pod_spec.get("tolerations") or [], node.taints)
    )

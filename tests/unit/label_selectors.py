"""Kubernetes label-selector semantics, to check which webhook entries select a pod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND matchExpressions)."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def called_webhooks(
    configuration: Mapping[str, Any], namespace: Mapping[str, str], pod: Mapping[str, str]
) -> list[str]:
    """Names of the entries whose selectors pick a pod with labels `pod` in `namespace`
    (the namespace's labels, `kubernetes.io/metadata.name` included); matchConditions aside."""
    return [
        hook["name"]
        for hook in configuration["webhooks"]
        if selects(hook.get("namespaceSelector"), namespace)
        and selects(hook.get("objectSelector"), pod)
    ]

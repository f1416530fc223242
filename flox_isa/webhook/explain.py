"""`flox-isa explain pod`: the webhook's decision, offline, on a pod file and a nodes file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from flox_isa.isa.catalog import Catalog
from flox_isa.isa.nodes import node_objects, node_state
from flox_isa.isa.offer import OfferIndex, index_nodes
from flox_isa.webhook.decision import Context, Decision, decide
from flox_isa.webhook.models import Pod

# Kinds whose pods come from `spec.template`.
TEMPLATE_KINDS: Final = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "Job", "DaemonSet", "ReplicationController"}
)
# Files carry no namespace labels: the pod is judged as if its namespace opted in.
ASSUME_NAMESPACE_OPTED_IN: Final = True


class PodDocumentError(ValueError):
    """A file that holds no pod (or pod template) the webhook could be asked about."""


def pod_of(document: object) -> tuple[Pod, str]:
    """(pod, namespace) from a Pod, a workload with a pod template, or a CronJob."""
    if not isinstance(document, Mapping):
        raise PodDocumentError("expected a Pod or a workload (a YAML/JSON mapping)")
    kind = document.get("kind")
    namespace = str((document.get("metadata") or {}).get("namespace") or "default")
    where = "the pod"
    template: Any = document
    if kind in TEMPLATE_KINDS:
        template, where = _dig(document, "spec", "template"), "spec.template"
    elif kind == "CronJob":
        template = _dig(document, "spec", "jobTemplate", "spec", "template")
        where = "spec.jobTemplate.spec.template"
    elif kind != "Pod":
        allowed = ", ".join(sorted({"Pod", "CronJob", *TEMPLATE_KINDS}))
        raise PodDocumentError(f"kind {kind!r} has no pod; allowed kinds: {allowed}")
    if not isinstance(template, Mapping):
        raise PodDocumentError(f"{kind}: {where} is missing")
    if kind == "DaemonSet":  # its pods carry this owner: the webhook leaves them alone
        meta = dict(template.get("metadata") or {})
        meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "", "controller": True}]
        template = {**template, "metadata": meta}
    try:
        return Pod.model_validate(template), namespace
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise PodDocumentError(f"{where} is not a valid pod: {details}") from None


def _dig(document: Mapping[str, Any], *path: str) -> Any:
    value: Any = document
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def explain_pod(pod_document: object, nodes_document: object, catalog: Catalog) -> Decision:
    pod, namespace = pod_of(pod_document)
    fleet = index_nodes(node_state(n) for n in node_objects(nodes_document))
    ctx = Context(catalog, OfferIndex(fleet, catalog))
    return decide(pod, namespace, ASSUME_NAMESPACE_OPTED_IN, ctx)


def render_text(decision: Decision) -> str:
    lines = [f"{decision.outcome} ({decision.reason})"]
    if decision.variant:
        lines.append(f"variant: {decision.variant}")
    lines.append(f"{'reason' if decision.allowed else 'message'}: {decision.message}")
    if decision.patch:
        lines.append("patch:")
        lines += [
            f"  {op['op']} {op['path']} {json.dumps(op.get('value'))}" for op in decision.patch
        ]
    lines += [f"warning: {w}" for w in decision.warnings]
    return "\n".join(lines)

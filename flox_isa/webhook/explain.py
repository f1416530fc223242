"""`flox-isa explain pod`: the webhook's decision, offline, on a pod file and a nodes file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog
from flox_isa.isa.contract import required_labels
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.nodes import node_state, nodes_in
from flox_isa.isa.offer import OfferIndex
from flox_isa.isa.recovery import added_selector_keys, base_spec
from flox_isa.isa.yamltext import field_name
from flox_isa.webhook.decision import Context, Decision, decide
from flox_isa.webhook.models import Pod, describe_error, pod_from

# Kinds whose pods come from `spec.template`.
TEMPLATE_KINDS: Final = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "Job", "DaemonSet", "ReplicationController"}
)
# Files carry no namespace labels: the pod is judged as if its namespace opted in.
ASSUME_NAMESPACE_OPTED_IN: Final = True


class PodDocumentError(ValueError):
    """A file that holds no pod (or pod template) the webhook could be asked about."""


WORKLOAD_KINDS: Final = frozenset({"Pod", "CronJob", *TEMPLATE_KINDS})


def workload_document(documents: Sequence[object]) -> object:
    """The one workload among a file's documents (a Service, ConfigMap, ... is ignored)."""
    workloads = [d for d in documents if _kind(d) in WORKLOAD_KINDS]
    if len(workloads) == 1:
        return workloads[0]
    if len(documents) == 1:
        return documents[0]  # not a workload: pod_of says what is wrong with it
    found = ", ".join(_kind_of(d) for d in documents) or "no document"
    if not workloads:
        raise PodDocumentError(
            f"holds no workload ({found}); expected one of {', '.join(sorted(WORKLOAD_KINDS))}"
        )
    raise PodDocumentError(
        f"holds {len(workloads)} workloads ({found}); give a file with one of them"
    )


def _kind(document: object) -> str | None:
    kind = document.get("kind") if isinstance(document, Mapping) else None
    return kind if isinstance(kind, str) else None


def _kind_of(document: object) -> str:
    if not isinstance(document, Mapping):
        return type(document).__name__
    kind, name = document.get("kind"), _dig(document, "metadata", "name")
    label = field_name(kind) if isinstance(kind, str) else "(no kind)"
    return f"{label} {field_name(name)}" if isinstance(name, str) and name else label


def pod_of(document: object) -> tuple[Pod, str]:
    """(pod, namespace) from a Pod, a workload with a pod template, or a CronJob."""
    if not isinstance(document, Mapping):
        raise PodDocumentError("expected a Pod or a workload (a YAML/JSON mapping)")
    kind = _kind(document)
    given_namespace = _dig(document, "metadata", "namespace")
    if given_namespace is not None and not isinstance(given_namespace, str):
        raise PodDocumentError("metadata.namespace: expected a string")
    namespace = given_namespace or "default"
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
        given = template.get("metadata")
        meta = dict(given) if isinstance(given, Mapping) else {}
        meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "", "controller": True}]
        template = {**template, "metadata": meta}
    try:
        return pod_from(template), namespace
    except msgspec.ValidationError as exc:
        place, what = describe_error(exc, template)
        details = f"{'.'.join(map(field_name, place)) or where}: {what}"
        raise PodDocumentError(f"{where} is not a valid pod: {details}") from None


def _dig(document: Mapping[str, Any], *path: str) -> Any:
    value: Any = document
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def explain_pod(
    pod_documents: Sequence[object], node_documents: list[Any], catalog: Catalog
) -> Decision:
    """The decision for the workload of a pod file on the Nodes of a nodes file."""
    pod, namespace = pod_of(workload_document(pod_documents))
    nodes = nodes_in(node_documents)
    fleet = index_nodes(node_state(n) for n in nodes)
    ctx = Context(catalog, OfferIndex(fleet, catalog))
    decision = decide(pod, namespace, ASSUME_NAMESPACE_OPTED_IN, ctx)
    note = readiness_note(nodes)
    if note is None or (not decision.allowed and decision.reason == "invalid-input"):
        return decision
    return dataclasses.replace(decision, warnings=(*decision.warnings, note))


def readiness_note(nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """Which nodes are not Ready (and so never eligible), apart from the pod's constraints."""
    not_ready: list[str] = []
    no_condition: list[str] = []
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name") or "(no name)")
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = [c for c in conditions if c.get("type") == "Ready"]
        if not ready:
            no_condition.append(name)
        elif ready[0].get("status") != "True":
            not_ready.append(name)
    if not not_ready and not no_condition:
        return None
    parts = []
    if not_ready:
        parts.append(f"{len(not_ready)} NotReady ({_some(not_ready)})")
    if no_condition:
        parts.append(
            f"{len(no_condition)} without a Ready condition in status.conditions"
            f" ({_some(no_condition)})"
        )
    return (
        f"nodes: {len(not_ready) + len(no_condition)} of {len(nodes)} are not Ready:"
        f" {'; '.join(parts)}; they are never eligible, whatever the pod's constraints"
    )


def _some(items: Sequence[str], shown: int = 3) -> str:
    more = f", +{len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


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


# --- a pod the webhook already patched, re-decided --------------------------------------

# What the webhook (or the placement controller) writes on a pod, besides the variant's
# nodeSelector entries: taken off again to ask what it would decide today.
_OUTPUT_ANNOTATIONS: Final = (
    names.BASE_ENVIRONMENT_ANNOTATION,
    names.REASON_ANNOTATION,
    names.SPILLED_FROM_ANNOTATION,
    names.PLACEMENT_PROTOCOL_ANNOTATION,
    names.ADDED_SELECTOR_ANNOTATION,
    names.POD_DELETION_COST_ANNOTATION,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Previous:
    """What a patched pod got at admission, next to today's answer for its base environment."""

    variant: str | None
    environment: str | None
    base_environment: str
    today: str | None
    ticketworker: str | None = None  # the operator's: it spreads replicas over variants

    @property
    def differs(self) -> bool:
        return self.variant != self.today

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "environment": self.environment,
            "baseEnvironment": self.base_environment,
            "today": self.today,
            "differs": self.differs,
            "ticketworker": self.ticketworker,
        }

    def text(self) -> str:
        verdict = "differs" if self.differs else "same"
        spread = (
            f" (TicketWorker {self.ticketworker} spreads its replicas over several variants"
            " on purpose: this is one of them)"
            if self.ticketworker
            else ""
        )
        return (
            f"admitted as: {self.variant or 'no variant'} ({self.environment});"
            f" today, from {names.BASE_ENVIRONMENT_ANNOTATION} {self.base_environment}:"
            f" {self.today or 'no variant'}: {verdict}{spread}"
        )


def explain_live(
    document: Mapping[str, Any],
    node_documents: list[Any],
    catalog: Catalog,
    ticketworker_workload: str | None = None,
) -> tuple[Decision, Previous | None]:
    """The decision for a pod or workload read from a cluster.

    One that carries `isa.flox.dev/base-environment` was already patched: it is
    re-decided as it was before (base environment, no variant label, selector, gate or
    node), and `Previous` says what it got then. A TicketWorker's pods carry no workload
    annotation: `ticketworker_workload` is its `spec.workload`.
    """
    where = _template_keys(_kind(document))
    template = _dig(document, *where) if where else document
    if not isinstance(template, Mapping):
        return explain_pod([document], node_documents, catalog), None
    before = unpatched(template, catalog, ticketworker_workload)
    if before is None:
        return explain_pod([document], node_documents, catalog), None
    original, previous = before
    decision = explain_pod([_replace_at(document, where, original)], node_documents, catalog)
    return decision, dataclasses.replace(previous, today=decision.variant)


def ticketworker_of(document: Mapping[str, Any]) -> str | None:
    """The TicketWorker whose pods these are (its label on the pod or pod template)."""
    where = _template_keys(_kind(document))
    template = _dig(document, *where) if where else document
    labels = _dig(template, "metadata", "labels") if isinstance(template, Mapping) else None
    owner = labels.get(names.TICKETWORKER_LABEL) if isinstance(labels, Mapping) else None
    return owner if isinstance(owner, str) and owner else None


def unpatched(
    template: Mapping[str, Any], catalog: Catalog, workload: str | None = None
) -> tuple[dict[str, Any], Previous] | None:
    """A patched pod (template) as it was before admission; None if it was never patched.

    `workload` fills `isa.flox.dev/workload` when the pod has none (a TicketWorker's).
    """
    meta = template.get("metadata")
    annotations = dict((meta or {}).get("annotations") or {}) if isinstance(meta, Mapping) else {}
    base = annotations.get(names.BASE_ENVIRONMENT_ANNOTATION)
    if not isinstance(base, str) or not isinstance(meta, Mapping):
        return None
    labels = dict(meta.get("labels") or {})
    environment = annotations.get(names.ENVIRONMENT_ANNOTATION)
    variant = labels.pop(names.VARIANT_LABEL, None)
    for key in _OUTPUT_ANNOTATIONS:
        annotations.pop(key, None)
    annotations[names.ENVIRONMENT_ANNOTATION] = base
    if workload is not None:
        annotations.setdefault(names.WORKLOAD_ANNOTATION, workload)
    spec = dict(template.get("spec") or {})
    known = catalog.get(variant) if isinstance(variant, str) else None
    if added_selector_keys(template) is not None:  # the placement controller says what it added
        spec = base_spec(template)
    elif known is not None:  # the webhook adds a variant's labels the selector lacks
        wrote = required_labels(known)
        selector = {k: v for k, v in (spec.get("nodeSelector") or {}).items() if wrote.get(k) != v}
        spec["nodeSelector"] = selector
    gates = [g for g in spec.get("schedulingGates") or [] if g.get("name") != names.PLACEMENT_GATE]
    spec["schedulingGates"] = gates
    spec.pop("nodeName", None)
    original = {
        **template,
        "metadata": {**meta, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
    previous = Previous(
        variant if isinstance(variant, str) else None,
        environment if isinstance(environment, str) else None,
        base,
        None,
        labels.get(names.TICKETWORKER_LABEL),
    )
    return original, previous


def _template_keys(kind: str | None) -> tuple[str, ...]:
    if kind in TEMPLATE_KINDS:
        return ("spec", "template")
    if kind == "CronJob":
        return ("spec", "jobTemplate", "spec", "template")
    return ()


def _replace_at(document: Mapping[str, Any], path: Sequence[str], value: Any) -> Any:
    if not path:
        return value
    inner = document.get(path[0])
    return {**document, path[0]: _replace_at(inner if isinstance(inner, Mapping) else {},
                                             path[1:], value)}  # fmt: skip

"""TicketWorker + plan -> Deployment objects (plain dicts), and nothing else: pure.

The pods are rendered exactly as the webhook's guard mode accepts them
unchanged: label `isa.flox.dev/variant`, annotation
`flox.dev/environment: <environment><variant suffix>`, and the variant's
nodeSelector (every required NFD CPUID label plus `kubernetes.io/arch`).
A preferred node affinity steers them to the nodes the plan counted for their
variant (its best nodes), after whatever preferences the template has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from flox_isa.isa import names
from flox_isa.isa.contract import environment_annotations, required_labels
from flox_isa.isa.planning import Plan, Share, best_node_preference
from flox_isa.isa.threads import container_cpu, env_entries, note_of, parse_override
from flox_isa.isa.threads import plan as plan_threads
from flox_isa.operator import models

FIELD_MANAGER: Final = "flox-isa-operator"


@dataclass(frozen=True, slots=True)
class Owner:
    """The TicketWorker a Deployment belongs to."""

    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def deployment_name(ticketworker: str, variant: str) -> str:
    return f"{ticketworker}-{variant}"


def selector_labels(owner: Owner, variant: str) -> dict[str, str]:
    """The Deployment's immutable selector: one TicketWorker, one variant."""
    return {names.TICKETWORKER_LABEL: owner.name, names.VARIANT_LABEL: variant}


def pods_selector(owner: Owner) -> str:
    """Every pod of the TicketWorker, as a label-selector string (scale subresource)."""
    return f"{names.TICKETWORKER_LABEL}={owner.name}"


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render_deployment(owner: Owner, spec: models.TicketWorkerSpec, share: Share) -> dict[str, Any]:
    variant = share.variant
    labels = {
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
        **selector_labels(owner, variant.name),
    }
    template = spec.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    pod_meta = template.setdefault("metadata", {})
    pod_meta["labels"] = {**pod_meta.get("labels", {}), **labels}
    pod_meta["annotations"] = {
        **pod_meta.get("annotations", {}),
        **environment_annotations(spec.environment, variant, spec.generations),
    }
    pod_spec = template.setdefault("spec", {})
    note = tune_threads(pod_spec, pod_meta["annotations"].get(names.THREADS_ANNOTATION))
    if note:
        pod_meta["annotations"][names.REASON_ANNOTATION] = note
    pod_spec["nodeSelector"] = {**pod_spec.get("nodeSelector", {}), **required_labels(variant)}
    preferred = best_node_preference(variant, share.outranked_by)
    if preferred:
        pod_spec["affinity"] = with_preferred_node_terms(pod_spec.get("affinity") or {}, preferred)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner.name, variant.name),
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "replicas": share.replicas,
            "selector": {"matchLabels": selector_labels(owner, variant.name)},
            "template": template,
        },
    }


def tune_threads(pod_spec: dict[str, Any], override_text: str | None) -> str:
    """Set the thread variables in the template's containers (`isa.threads`, as the webhook
    does at admission); what was set, for the reason annotation."""
    override = parse_override(override_text)  # the CRD's CEL rule admits only valid values
    containers = pod_spec.get("containers") or []
    inits = pod_spec.get("initContainers") or []
    settings = plan_threads(
        [container_cpu(c) for c in containers], [container_cpu(c) for c in inits], override
    )
    for setting in settings:
        if setting.threads is not None:
            container = containers[setting.index]
            container["env"] = [*(container.get("env") or []), *env_entries(setting.threads)]
    return note_of(settings, override)


def with_preferred_node_terms(
    affinity: Mapping[str, Any], terms: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """`affinity` with `terms` after its own preferred node terms; nothing else changes."""
    node_affinity = dict(affinity.get("nodeAffinity") or {})
    key = "preferredDuringSchedulingIgnoredDuringExecution"
    node_affinity[key] = [*(node_affinity.get(key) or []), *terms]
    return {**affinity, "nodeAffinity": node_affinity}


def render(owner: Owner, spec: models.TicketWorkerSpec, plan: Plan) -> dict[str, dict[str, Any]]:
    """Every Deployment the plan asks for, by name."""
    rendered = (render_deployment(owner, spec, share) for share in plan.shares)
    return {d["metadata"]["name"]: d for d in rendered}

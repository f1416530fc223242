"""Nodes as the API server returns them (plain dicts), turned into decision inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flox_isa.isa import names
from flox_isa.isa.capacity import allocatable_of
from flox_isa.isa.features import features_from_labels
from flox_isa.isa.fleet import NodeInfo, parse_cpu_quantity
from flox_isa.isa.scheduling import NodeState, Taint


class NodeDocumentError(ValueError):
    """A document that is not a Node, a NodeList, or a List of Nodes."""


def node_info(node: Mapping[str, Any]) -> NodeInfo:
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    status = node.get("status") or {}
    cpu = (status.get("allocatable") or {}).get("cpu", "0")
    name = metadata.get("name", "")
    try:
        allocatable_cpu = parse_cpu_quantity(str(cpu))
    except ValueError as exc:
        raise NodeDocumentError(f"node {name!r}: status.allocatable.cpu: {exc}") from None
    try:
        allocatable = tuple(sorted(allocatable_of(status).items()))
    except ValueError as exc:
        raise NodeDocumentError(f"node {name!r}: status.allocatable: {exc}") from None
    return NodeInfo(
        name=name,
        features=features_from_labels(labels),
        allocatable_cpu=allocatable_cpu,
        instance_type=labels.get(names.INSTANCE_TYPE_LABEL, ""),
        allocatable=allocatable,
    )


def node_objects(document: object) -> list[Mapping[str, Any]]:
    """The Node objects in what `kubectl get nodes -o yaml|json` writes, or in one Node."""
    if not isinstance(document, Mapping):
        raise NodeDocumentError("expected a Node or a List of Nodes (a YAML/JSON mapping)")
    kind = document.get("kind")
    if kind == "Node":
        return [document]
    if kind in ("NodeList", "List"):
        items = document.get("items") or []
        bad = [
            i for i, item in enumerate(items)
            if not isinstance(item, Mapping) or item.get("kind", "Node") != "Node"
        ]  # fmt: skip
        if bad:
            raise NodeDocumentError(f"items[{bad[0]}] is not a Node")
        return list(items)
    raise NodeDocumentError(f"expected kind Node, NodeList or List, got {kind!r}")


def node_state(node: Mapping[str, Any]) -> NodeState:
    """Readiness, schedulability, taints and labels of a Node object."""
    spec = node.get("spec") or {}
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = tuple(
        Taint(t.get("key", ""), t.get("value") or "", t.get("effect", "NoSchedule"))
        for t in spec.get("taints") or []
    )
    return NodeState(
        info=node_info(node),
        labels=dict((node.get("metadata") or {}).get("labels") or {}),
        ready=ready,
        unschedulable=bool(spec.get("unschedulable")),
        taints=taints,
    )

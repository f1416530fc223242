"""Nodes as the API server returns them (plain dicts), turned into decision inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError

from flox_isa.isa import names
from flox_isa.isa.capacity import allocatable_of
from flox_isa.isa.features import features_from_labels
from flox_isa.isa.fleet import NodeInfo, parse_cpu_quantity
from flox_isa.isa.scheduling import NodeState, Taint
from flox_isa.isa.yamltext import field_name


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


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _Meta(_Shape):
    name: str = ""
    labels: dict[str, str] | None = None


class _Taint(_Shape):
    key: str = ""
    value: str | None = None
    effect: str = "NoSchedule"


class _Spec(_Shape):
    taints: list[_Taint] | None = None
    unschedulable: bool | None = None


class _Condition(_Shape):
    type: str = ""
    status: str = ""


class _Status(_Shape):
    allocatable: dict[str, str | int | float] | None = None
    conditions: list[_Condition] | None = None


class _NodeShape(_Shape):
    """The parts of a Node flox-isa reads, with their types (the rest is not read)."""

    kind: str = "Node"
    metadata: _Meta | None = None
    spec: _Spec | None = None
    status: _Status | None = None


def node_objects(document: object) -> list[Mapping[str, Any]]:
    """The Node objects in what `kubectl get nodes -o yaml|json` writes, or in one Node.

    Each is checked for the types of the fields flox-isa reads: an error names the
    node (its name, or its index in `items`) and the field path.
    """
    if not isinstance(document, Mapping):
        raise NodeDocumentError(
            f"expected a Node or a List of Nodes (a YAML/JSON mapping), got {_type(document)}"
        )
    kind = document.get("kind")
    if kind == "Node":
        return [_checked(document, "the Node")]
    if kind in ("NodeList", "List"):
        items = document.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise NodeDocumentError(f"items: expected a list of Nodes, got {_type(items)}")
        nodes = []
        for index, item in enumerate(items):
            where = f"items[{index}]"
            if not isinstance(item, Mapping):
                raise NodeDocumentError(f"{where}: expected a Node (a mapping), got {_type(item)}")
            nodes.append(_checked(item, where))
        return nodes
    raise NodeDocumentError(f"kind: expected Node, NodeList or List, got {kind!r}")


def nodes_in(documents: list[Any]) -> list[Mapping[str, Any]]:
    """The Nodes of every document of a file (each a Node or a List of Nodes)."""
    if not documents:
        raise NodeDocumentError("holds no document; expected a Node or a List of Nodes")
    if len(documents) == 1:
        return node_objects(documents[0])
    nodes: list[Mapping[str, Any]] = []
    for index, document in enumerate(documents):
        try:
            nodes += node_objects(document)
        except NodeDocumentError as exc:
            raise NodeDocumentError(f"document {index + 1}: {exc}") from None
    return nodes


def _checked(node: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    try:
        shape = _NodeShape.model_validate(node)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = _dig_name(node)
        who = f"node {name!r} ({where})" if name else where
        raise NodeDocumentError(f"{who}: {_field(error['loc'])}: {_message(error)}") from None
    if shape.kind != "Node":
        raise NodeDocumentError(f"{where}: kind: expected Node, got {shape.kind!r}")
    return node


_UNION_TAGS: Final = frozenset({"str", "int", "float"})


def _field(loc: tuple[Any, ...]) -> str:
    """`metadata.labels`, `metadata.labels (key 1)`, `spec.taints.0.key`."""
    parts = [field_name(part) for part in loc if part not in _UNION_TAGS]
    if parts and parts[-1] == "[key]":
        return f"{'.'.join(parts[:-2])} (key {parts[-2]})"
    return ".".join(parts)


def _dig_name(node: Mapping[str, Any]) -> str:
    meta = node.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def _message(error: Any) -> str:
    given = error.get("input")
    kind = error["type"]
    if kind in ("dict_type", "model_type"):
        return f"expected a mapping, got {_type(given)}"
    if kind == "list_type":
        return f"expected a list, got {_type(given)}"
    if kind == "string_type":
        return f"expected a string, got {_type(given)}"
    if kind == "bool_type":
        return f"expected true or false, got {_type(given)}"
    return str(error["msg"])


def _type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {str(value)[:40]}"


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

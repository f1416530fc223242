"""Simulated nodes through the API: create, wait Ready, add or remove at runtime.

kwok (run with --manage-all-nodes) gives every Node a heartbeat and runs its pods.
Also the cluster-scoped objects those pods need: Flox's RuntimeClass.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException


def request_json(api: Any, method: str, path: str, body: Any = None) -> Any:
    """One API call with a plain JSON body, answered as plain JSON (None if empty).

    The typed client validates dict bodies against its models, which reject partial
    objects the API server accepts (e.g. a Node's status.nodeInfo with only architecture).
    Raises ApiException on a non-2xx answer, like the typed calls.
    """
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    params = api.param_serialize(
        method=method,
        resource_path=path,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*params)
    response.read()
    text = response.data.decode() if response.data else ""
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    return json.loads(text) if text else None


def create_nodes(api: Any, manifests: Iterable[dict[str, Any]]) -> list[str]:
    """Create the Nodes (an existing one of the same name is left as it is); return names."""
    names = []
    for manifest in manifests:
        try:
            request_json(api, "POST", "/api/v1/nodes", manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
        names.append(manifest["metadata"]["name"])
    return names


# Flox's imageless pods (and the operator's Deployments, by default) ask for this
# runtimeClassName; the operator's default is kept equal by a unit test.
FLOX_RUNTIME_CLASS: Final = "flox"
RUNTIME_CLASSES_PATH: Final = "/apis/node.k8s.io/v1/runtimeclasses"


def runtime_class(name: str = FLOX_RUNTIME_CLASS) -> dict[str, Any]:
    """A RuntimeClass whose handler has its name (kwok runs pods of any handler)."""
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name},
        "handler": name,
    }


def ensure_runtime_class(api: Any, name: str = FLOX_RUNTIME_CLASS) -> bool:
    """Create the RuntimeClass unless it exists (then it is left as it is); True if created.

    The API server rejects a pod whose RuntimeClass does not exist.
    """
    try:
        request_json(api, "POST", RUNTIME_CLASSES_PATH, runtime_class(name))
    except ApiException as exc:
        if exc.status != 409:
            raise
        return False
    return True


def delete_nodes(api: Any, names: Iterable[str]) -> None:
    """Delete Nodes by name (missing ones are fine); pod GC later removes their pods."""
    core = client.CoreV1Api(api)
    for name in names:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def node_is_ready(node: Any) -> bool:
    conditions = (node.status.conditions or []) if node.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def wait_nodes_ready(api: Any, names: Iterable[str], timeout: float | None = None) -> None:
    """Until every node is Ready; by default 120 s plus 1 s per 20 nodes (kwok on 2 busy
    cores brings a few thousand up in minutes)."""
    core = client.CoreV1Api(api)
    waiting = set(names)
    if timeout is None:
        timeout = 120.0 + len(waiting) / 20
    deadline = time.monotonic() + timeout
    while waiting:
        ready = {n.metadata.name for n in core.list_node().items if n.metadata and node_is_ready(n)}
        waiting -= ready
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(waiting)} nodes not Ready after {timeout:.0f}s: {_some(waiting)}"
                " (is kwok running? see kwok.log)"
            )
        time.sleep(0.5 if len(waiting) < 500 else 3.0)  # a list of thousands costs seconds


def wait_default_service_account(api: Any, namespace: str = "default", timeout: float = 60) -> None:
    """Pods are rejected until the controller manager has created the namespace's SA."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no default ServiceAccount in {namespace!r} after {timeout:.0f}s"
                " (is kube-controller-manager running? see kube-controller-manager.log)"
            )
        time.sleep(0.5)


def nodes_like(template: dict[str, Any], names: Iterable[str]) -> list[dict[str, Any]]:
    """Copies of a Node manifest under new names (same labels, taints and capacity)."""
    copies = []
    for name in names:
        node = copy.deepcopy(template)
        node["metadata"]["name"] = name
        labels = node["metadata"].setdefault("labels", {})
        if "kubernetes.io/hostname" in labels:
            labels["kubernetes.io/hostname"] = name
        copies.append(node)
    return copies


def _some(names: Iterable[str], shown: int = 10) -> str:
    listed = sorted(names)
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more

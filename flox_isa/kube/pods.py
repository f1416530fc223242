"""Read one Pod and its Node as plain data (`flox-isa doctor --pod`)."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from urllib3.exceptions import HTTPError

from flox_isa.kube.config import api_client


class NotFoundError(LookupError):
    """The pod (or its node) does not exist, or cannot be read."""


def read_pod_and_node(
    kubeconfig: str | None, namespace: str, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(pod, its node or None when unscheduled), as the API server's JSON."""
    try:
        return _read(kubeconfig, namespace, name)
    except (ConfigException, HTTPError, OSError) as exc:
        raise NotFoundError(f"cannot reach the API server: {exc}") from None


def _read(
    kubeconfig: str | None, namespace: str, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    with api_client(kubeconfig) as api:
        core: Any = client.CoreV1Api(api)
        try:
            pod = api.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
        except ApiException as exc:
            raise NotFoundError(f"pod {namespace}/{name}: {exc.status} {exc.reason}") from None
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            return pod, None
        try:
            node = api.sanitize_for_serialization(core.read_node(node_name))
        except ApiException as exc:
            raise NotFoundError(f"node {node_name}: {exc.status} {exc.reason}") from None
        return pod, node

"""The CLI's reads of a live cluster (`explain`, `report`): plain JSON dicts, kubectl's errors.

`fetch(kubeconfig, context, read)` resolves the kubeconfig as kubectl does, runs the
coroutine `read(api)` over one `Rest` session, and turns every failure into a one-line
`ClusterError` worded like kubectl's: no kubeconfig, an unreachable server, a 403
(the API server's message names the verb and the resource), an unknown object.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp

from flox_isa.isa import names
from flox_isa.kube.config import default_namespace
from flox_isa.kube.errors import ClusterError
from flox_isa.kube.rest import ApiError, Rest, load_connection
from flox_isa.kube.watch import list_all

T = TypeVar("T")

TIMEOUT_SECONDS: Final = 30.0
# kubectl's words for the API server's answers (Status.reason).
STATUS_REASONS: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True, slots=True)
class Resource:
    """A namespaced workload kind and where the API serves it."""

    kind: str
    prefix: str  # "/api/v1" or "/apis/GROUP/VERSION"
    plural: str

    def path(self, namespace: str | None, name: str = "") -> str:
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"{self.prefix}{where}/{self.plural}" + (f"/{name}" if name else "")


# Every kind `explain` takes a pod (or pod template) from.
WORKLOADS: Final = {
    r.kind: r
    for r in (
        Resource("Pod", "/api/v1", "pods"),
        Resource("Deployment", "/apis/apps/v1", "deployments"),
        Resource("StatefulSet", "/apis/apps/v1", "statefulsets"),
        Resource("DaemonSet", "/apis/apps/v1", "daemonsets"),
        Resource("ReplicaSet", "/apis/apps/v1", "replicasets"),
        Resource("ReplicationController", "/api/v1", "replicationcontrollers"),
        Resource("Job", "/apis/batch/v1", "jobs"),
        Resource("CronJob", "/apis/batch/v1", "cronjobs"),
    )
}
NODES: Final = "/api/v1/nodes"
NAMESPACES: Final = "/api/v1/namespaces"
TICKETWORKERS: Final = Resource("TicketWorker", f"/apis/{names.GROUP}/v1alpha1", "ticketworkers")


def fetch(kubeconfig: str | None, context: str | None, read: Callable[[Rest], Awaitable[T]]) -> T:
    """`read(api)` against the cluster kubectl would use; errors as one-line ClusterErrors."""
    connection = load_connection(kubeconfig, context)

    async def run() -> T:
        async with Rest(connection, timeout=TIMEOUT_SECONDS) as api:
            return await read(api)

    try:
        return asyncio.run(run())
    except ApiError as exc:
        raise ClusterError(server_error(exc)) from None
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, ssl.SSLError) as exc:
        reason = _connect_reason(exc)
        raise ClusterError(
            f"Unable to connect to the server {connection.server}: {reason}"
        ) from None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise ClusterError(
            f"Unable to connect to the server {connection.server}: no answer within"
            f" {TIMEOUT_SECONDS:g}s"
        ) from None
    except aiohttp.ClientError as exc:
        raise ClusterError(f"Unable to connect to the server {connection.server}: {exc}") from None


def server_error(exc: ApiError) -> str:
    """kubectl's line for an error status: `Error from server (Forbidden): ...`."""
    if exc.status == 401:
        return "You must be logged in to the server (Unauthorized)"
    reason = STATUS_REASONS.get(exc.status) or exc.reason.replace(" ", "") or str(exc.status)
    return f"Error from server ({reason}): {' '.join(exc.message.split())}"


def _connect_reason(exc: Exception) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__


def namespace_of(kubeconfig: str | None, context: str | None, namespace: str | None) -> str:
    """`-n` as kubectl reads it: the flag, else the context's namespace, else "default"."""
    return namespace or default_namespace(kubeconfig, context)


# --- reads (coroutines over one Rest session) -----------------------------------------


async def nodes(api: Rest) -> list[dict[str, Any]]:
    """Every Node, page by page, with kind and apiVersion as `kubectl get nodes -o json`."""
    items, _ = await list_all(api, NODES)
    return [{"apiVersion": "v1", "kind": "Node", **item} for item in items]


async def workload(api: Rest, kind: str, name: str, namespace: str) -> dict[str, Any]:
    """One Pod or workload by kind (see WORKLOADS) and name."""
    return await api.get(WORKLOADS[kind].path(namespace, name))


async def pods(api: Rest, namespace: str | None) -> list[dict[str, Any]]:
    """The Pods of one namespace, or of all (None), page by page."""
    items, _ = await list_all(api, WORKLOADS["Pod"].path(namespace))
    return items


async def optional(read: Awaitable[T]) -> T | None:
    """`read`, or None when it is forbidden (a read the caller can do without)."""
    try:
        return await read
    except ApiError as exc:
        if exc.status == 403:
            return None
        raise


async def opted_in_namespaces(api: Rest) -> set[str]:
    """Names of the namespaces labelled `isa.flox.dev/inject=true`."""
    items, _ = await list_all(api, NAMESPACES, {"labelSelector": f"{names.INJECT_LABEL}=true"})
    return {str((n.get("metadata") or {}).get("name")) for n in items}


async def ticketworker(api: Rest, namespace: str, name: str) -> dict[str, Any] | None:
    """One TicketWorker, None if there is none (or no CRD)."""
    try:
        return await api.get(TICKETWORKERS.path(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


async def ticketworkers(api: Rest, namespace: str | None) -> list[dict[str, Any]]:
    """The TicketWorkers of `namespace` (None: all); none where the CRD is not installed."""
    try:
        items, _ = await list_all(api, TICKETWORKERS.path(namespace))
    except ApiError as exc:
        if exc.status == 404:
            return []
        raise
    return items


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What `flox-isa report` reads: pods, nodes, and what says how pods opted in."""

    pods: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    opted_in_namespaces: set[str] | None  # None: not allowed to list namespaces
    ticketworkers: list[dict[str, Any]]
    notes: list[str]


async def snapshot(api: Rest, namespace: str | None) -> Snapshot:
    """Pods of `namespace` (None: all), every node, opted-in namespaces, TicketWorkers."""
    pod_list, node_list, opted, workers = await asyncio.gather(
        pods(api, namespace),
        nodes(api),
        optional(opted_in_namespaces(api)),
        optional(ticketworkers(api, namespace)),
    )
    notes = []
    if opted is None:
        notes.append(
            "cannot list namespaces: only pods labelled"
            f" {names.INJECT_LABEL}=true count as opted in"
        )
    if workers is None:
        notes.append(
            "cannot list ticketworkers: their pods count as the default workload unless annotated"
        )
    return Snapshot(pod_list, node_list, opted, workers or [], notes)

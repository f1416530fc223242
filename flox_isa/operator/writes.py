"""The TicketWorker controller's writes: built as plain data, then sent on `kube.rest.Rest`.

Each write is first a `Request` (method, path, body, params, content type), as
lightkube's `prepare_request` builds one, so a test compares it whole; `Writer` sends
them and owns what they need: one shared LIST for the foreign-name check, the
versions our writes returned (their watch events are our own echo), and the answers
that are no failure (gone, replaced, a namespace being deleted). The placement
controller builds its pod writes (`update_pod`, `delete_pod`) here too, and posts its
Events (`operator.events`) through `send_event`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from flox_isa.isa import names
from flox_isa.kube.rest import (
    APPLY_PATCH,
    MERGE_PATCH,
    METADATA_LIST,
    REQUEST_ERRORS,
    ApiError,
    Request,
    Rest,
)
from flox_isa.operator import models
from flox_isa.operator.diff import Action, Create, Delete, owned_by
from flox_isa.operator.events import event
from flox_isa.operator.render import FIELD_MANAGER, Owner

log = logging.getLogger("flox_isa.operator")

NOT_FOUND: Final = 404
CONFLICT: Final = 409
# What the operator logs (INFO) for a create its namespace's deletion refused: the
# namespace's objects go with it, so it is neither retried nor reported as a failure.
NAMESPACE_TERMINATING_SKIP: Final = "skipped: the namespace is being terminated"
# How long one LIST of a namespace's Deployments answers "does this name exist?": a
# burst's checks share it. A foreign Deployment made under our name in that window is
# taken over (with a GET per name the window was one round trip).
LISTED_FRESH_SECONDS: Final = 1.0
LISTED_NAMESPACES_KEPT: Final = 256


class ForeignDeploymentError(Exception):
    """A Deployment with our name that another owner made."""


# -- the requests ---------------------------------------------------------------------------


def deployments_path(namespace: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments"


def apply_deployment(namespace: str, name: str, body: Mapping[str, Any]) -> Request:
    """Server-side apply of a rendered Deployment, taking over fields others changed."""
    return Request(
        "PATCH",
        f"{deployments_path(namespace)}/{name}",
        body,
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
        content_type=APPLY_PATCH,
    )


def delete_deployment(namespace: str, name: str, uid: str) -> Request:
    """Delete exactly the Deployment we saw (a uid precondition), its pods in the background."""
    body = {"propagationPolicy": "Background", "preconditions": {"uid": uid}}
    return Request("DELETE", f"{deployments_path(namespace)}/{name}", body)


def list_deployments(namespace: str) -> Request:
    """The metadata of every Deployment of `namespace`, from the watch cache."""
    params = {"resourceVersion": "0"}
    return Request("GET", deployments_path(namespace), params=params, accept=METADATA_LIST)


def status_patch(owner: Owner, status: Mapping[str, Any], previous: Mapping[str, Any]) -> Request:
    """A merge patch of the TicketWorker's status: `status`, and null for what it dropped."""
    path = (
        f"/apis/{models.GROUP}/{models.VERSION}/namespaces/{owner.namespace}"
        f"/{models.PLURAL}/{owner.name}/status"
    )
    cleared = dict.fromkeys(sorted(set(previous) - set(status)))  # merge patch: null removes
    return Request("PATCH", path, {"status": {**cleared, **status}}, content_type=MERGE_PATCH)


def ticketworker_event(
    owner: Owner, kind: str, reason: str, message: str, instance: str, *, stamp: str
) -> Request:
    """An Event about the TicketWorker `owner`."""
    involved = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "name": owner.name,
        "namespace": owner.namespace,
        "uid": owner.uid,
    }
    return event(involved, kind, reason, message, instance, stamp=stamp)


def pod_path(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata") or {}
    return f"/api/v1/namespaces/{metadata.get('namespace')}/pods/{metadata.get('name')}"


def update_pod(pod: Mapping[str, Any], body: Mapping[str, Any]) -> Request:
    """Replace `pod` with `body` (the placement: selectors added, the gate removed); the
    resourceVersion `body` carries is the precondition (409 if the pod changed since)."""
    return Request("PUT", pod_path(pod), body)


def delete_pod(pod: Mapping[str, Any]) -> Request:
    """Delete exactly the pod we saw (uid and resourceVersion preconditions), for its
    owner to recreate."""
    metadata = pod.get("metadata") or {}
    preconditions = {"uid": metadata.get("uid"), "resourceVersion": metadata.get("resourceVersion")}
    return Request("DELETE", pod_path(pod), {"preconditions": preconditions})


def foreign(owner: Owner, name: str, metadata: Mapping[str, Any] | None) -> str:
    """Why the existing Deployment `name` (its `metadata`) is not ours to apply ("": it is)."""
    if metadata is None:
        return ""
    labels = metadata.get("labels") or {}
    ours = (
        labels.get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_VALUE
        and labels.get(names.TICKETWORKER_LABEL) == owner.name
    )
    if ours or owned_by({"metadata": metadata}, owner):
        return ""
    return (
        f"Deployment {name} already exists and is not managed by TicketWorker"
        f" {owner.name}: delete or rename it"
    )


# -- sending them ---------------------------------------------------------------------------


def namespace_terminating(exc: object) -> bool:
    """Whether `exc` is a create refused because its namespace is being deleted."""
    return isinstance(exc, ApiError) and exc.namespace_terminating


async def send_event(api: Rest, request: Request) -> None:
    """Post an Event, best effort: a refusal is logged, never raised."""
    reason = str((request.body or {}).get("reason") or "")
    try:
        await api.send(request)
    except REQUEST_ERRORS as exc:
        if namespace_terminating(exc):
            namespace = (request.body or {}).get("metadata", {}).get("namespace")
            log.info(NAMESPACE_TERMINATING_SKIP, extra={"namespace": namespace,
                                                        "event": reason})  # fmt: skip
            return
        log.warning("could not post event %s: %s", reason, exc)


class Writer:
    """Sends the controller's Deployment and status writes on `api`."""

    def __init__(self, api: Rest) -> None:
        self.api = api
        # (namespace, Deployment) -> resourceVersion our last write returned: its watch
        # event is our own echo, not someone else's edit.
        self.written: dict[tuple[str, str], str] = {}
        # namespace -> (listed at, the names and metadata of its Deployments)
        self._listed: dict[str, tuple[float, asyncio.Future[dict[str, Mapping[str, Any]]]]] = {}

    def echo(self, namespace: str, name: str, version: str) -> bool:
        """Whether `version` of Deployment `name` is what our own last write returned."""
        return bool(version) and self.written.get((namespace, name)) == version

    async def deployment(self, owner: Owner, action: Action) -> dict[str, Any] | None:
        """Make one Deployment write; the object as the API server now has it (None: deleted)."""
        if isinstance(action, Delete):
            self.written.pop((owner.namespace, action.name), None)
            try:
                await self.api.send(delete_deployment(owner.namespace, action.name, action.uid))
            except ApiError as exc:
                if exc.status not in (NOT_FOUND, CONFLICT):  # gone, or replaced since: fine
                    raise
            return None
        if isinstance(action, Create):
            existing = await self._existing(owner.namespace)
            refusal = foreign(owner, action.name, existing.get(action.name))
            if refusal:
                raise ForeignDeploymentError(refusal)
        written = await self.api.send(apply_deployment(owner.namespace, action.name, action.body))
        version = str((written.get("metadata") or {}).get("resourceVersion") or "")
        self.written[(owner.namespace, action.name)] = version
        return written

    async def status(
        self, owner: Owner, status: Mapping[str, Any], previous: Mapping[str, Any]
    ) -> bool:
        """Patch the TicketWorker's status; False when it was deleted meanwhile."""
        try:
            await self.api.send(status_patch(owner, status, previous))
        except ApiError as exc:
            if exc.status == NOT_FOUND:
                return False
            raise
        return True

    async def _existing(self, namespace: str) -> Mapping[str, Mapping[str, Any]]:
        """Name -> metadata of every Deployment in `namespace`.

        One metadata-only LIST, shared by the checks of a burst (50 new Deployments
        after a fleet change) while it is fresh, instead of a GET per new Deployment.
        """
        now = time.monotonic()
        entry = self._listed.get(namespace)
        if entry is None or now - entry[0] > LISTED_FRESH_SECONDS:
            if len(self._listed) > LISTED_NAMESPACES_KEPT:
                self._listed.clear()
            entry = (now, asyncio.ensure_future(self._list_existing(namespace)))
            self._listed[namespace] = entry
        try:
            return await asyncio.shield(entry[1])
        except REQUEST_ERRORS:
            if self._listed.get(namespace) is entry:
                del self._listed[namespace]  # the next check lists again
            raise

    async def _list_existing(self, namespace: str) -> dict[str, Mapping[str, Any]]:
        listed = await self.api.send(list_deployments(namespace))
        return {i["metadata"]["name"]: i["metadata"] for i in listed.get("items") or []}

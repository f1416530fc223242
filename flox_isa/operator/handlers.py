"""kopf registrations: watches, indexes and the hand-off to the Controller.

Level-based on purpose: TicketWorker events (create, update, resume at
startup, delete) only enqueue the key; the Controller reconciles from the
caches. No kopf change-handlers (on.create/on.update) and no finalizers: they
keep per-object progress in annotations, and a deleted TicketWorker is cleaned
up by the garbage collector through ownerReferences, operator up or not.

kopf runs no handler until every index has been listed, so the first
reconcile sees every TicketWorker and managed Deployment. Nodes are not
watched through kopf: thousands of them heartbeat, and kopf's per-object
machinery costs far more per event than the node inventory's plain watch.
"""

from __future__ import annotations

from typing import Any

import kopf

from flox_isa.isa import names
from flox_isa.kube.rest import Connection
from flox_isa.operator import models
from flox_isa.operator.controller import Controller, snapshot

TICKETWORKERS = (models.GROUP, models.VERSION, models.PLURAL)
DEPLOYMENTS = ("apps", "v1", "deployments")
MANAGED: dict[str, Any] = {  # str values or kopf's PRESENT marker
    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
    names.TICKETWORKER_LABEL: kopf.PRESENT,
}


def build_registry(controller: Controller, connection: Connection) -> kopf.OperatorRegistry:
    """A registry of this operator's handlers, bound to one Controller."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_path=connection.ca_path,
            insecure=connection.insecure,
            scheme="Bearer" if connection.token else None,
            token=connection.token,
            certificate_path=connection.cert_path,
            private_key_path=connection.key_path,
        )

    @kopf.index(*TICKETWORKERS, registry=registry, id="ticketworkers")
    async def ticketworkers(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
        return {(namespace or "", name): snapshot(body)}

    @kopf.index(*DEPLOYMENTS, labels=MANAGED, registry=registry, id="deployments")
    async def deployments(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> Any:
        return {(namespace or "", labels[names.TICKETWORKER_LABEL]): snapshot(body)}

    @kopf.on.startup(registry=registry, id="start")
    async def start(**kwargs: Any) -> None:
        controller.attach(kwargs["ticketworkers"], kwargs["deployments"])
        controller.start()

    @kopf.on.cleanup(registry=registry, id="stop")
    async def stop(**_: Any) -> None:
        await controller.stop()

    @kopf.on.event(*TICKETWORKERS, registry=registry, id="ticketworker_event")
    async def ticketworker_event(
        event: kopf.RawEvent, namespace: str | None, name: str, **_: Any
    ) -> None:
        controller.synced.set()
        if event["type"] == "DELETED":
            controller.ticketworker_gone((namespace or "", name))
        else:
            controller.ticketworker_changed((namespace or "", name))

    @kopf.on.event(*DEPLOYMENTS, labels=MANAGED, registry=registry, id="deployment_event")
    async def deployment_event(
        event: kopf.RawEvent, body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> None:
        controller.synced.set()
        key = (namespace or "", labels[names.TICKETWORKER_LABEL])
        metadata, status = body.get("metadata", {}), body.get("status", {})
        rollout_progress = metadata.get("generation") == status.get("observedGeneration")
        status_only = event["type"] == "MODIFIED" and rollout_progress
        controller.deployment_changed(
            key,
            status_only=status_only,
            name=str(metadata.get("name") or ""),
            version=str(metadata.get("resourceVersion") or ""),
        )

    return registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # we post our own Events, with our own reasons
    settings.watching.server_timeout = 300  # re-establish watches now and then
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.batching.batch_window = 0.05  # per-object event batching: keep reactions quick
    return settings

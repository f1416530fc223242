"""`flox-isa operator`: leader election, then kopf, plus a health endpoint.

High availability uses a Lease, not kopf peering: kopf peering pauses every
replica of equal priority, and with distinct priorities two replicas both act
until they have seen each other. With a Lease the standby does not even start
kopf, so at most one replica ever writes; on a clean exit the Lease is
released and the standby takes over within `retry` seconds, after a crash
within `duration` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flox_isa import logs
from flox_isa.isa.catalog import Catalog
from flox_isa.isa.offer import FleetIndex
from flox_isa.isa.placement import DEFAULT_WHEN_FULL, WhenFull
from flox_isa.kube.inventory import NodeInventory
from flox_isa.kube.lease import LeaderElector, LeaseConfig
from flox_isa.kube.rest import Rest, load_connection
from flox_isa.kube.watch import ListWatch
from flox_isa.operator.controller import Controller, Settings
from flox_isa.operator.handlers import build_registry, operator_settings
from flox_isa.operator.placement import PlacementController, PlacementSettings

log = logging.getLogger("flox_isa.operator")

SERVICE_ACCOUNT_NAMESPACE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
EXIT_LOST_LEADERSHIP: Final = 1


def default_identity() -> str:
    """Unique per process; names the pod in a cluster (POD_NAME), else host and pid."""
    stem = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{stem}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Options:
    catalog: Catalog
    kubeconfig: str | None = None
    namespaces: Sequence[str] = ()  # empty: every namespace
    health_port: int = 0  # 0: no health endpoint
    leader_election: bool = True
    lease_name: str = "flox-isa-operator"
    lease_namespace: str = ""
    lease_duration: float = 15.0
    identity: str = field(default_factory=default_identity)
    workers: int | None = None  # None: Settings' default
    placement: bool = True
    when_full: WhenFull = DEFAULT_WHEN_FULL
    growable: frozenset[str] | None = None
    max_gate_age: float = 120.0
    placement_lease_duration: float = 15.0


def default_lease_namespace() -> str:
    """The pod's namespace when in a cluster (POD_NAMESPACE or the service account's)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError), open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
        return f.read().strip()
    return "default"


def run(options: Options) -> int:
    # kopf logs per object at INFO; aiohttp.access per request.
    logs.setup_logging(logging.INFO, quiet=["kopf", "aiohttp.access"])
    return asyncio.run(_main(options))


async def _main(options: Options) -> int:
    connection = load_connection(options.kubeconfig)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    state: dict[str, Any] = {"role": "standby", "synced": False}
    async with Rest(connection) as api:
        health = await _serve_health(options.health_port, state)
        try:
            elector = LeaderElector(
                api,
                LeaseConfig(
                    namespace=options.lease_namespace or default_lease_namespace(),
                    name=options.lease_name,
                    identity=options.identity,
                    duration=options.lease_duration,
                    renew_deadline=options.lease_duration * 2 / 3,
                    retry=max(0.5, options.lease_duration / 7.5),
                ),
            )
            if options.leader_election and not await _first(elector.acquire(), stopping.wait()):
                return 0
            state["role"] = "leader"
            settings = Settings(options.catalog, identity=options.identity)
            if options.workers is not None:
                settings.workers = options.workers
            controller = Controller(settings, api)
            state["controller"] = controller
            placement = _placement(options, api, elector.config.namespace)
            state["placement"] = placement
            return await _lead(
                options, connection, controller=controller, placement=placement,
                elector=elector, stopping=stopping,
            )  # fmt: skip
        finally:
            if health is not None:
                await health.cleanup()


def _placement(options: Options, api: Rest, namespace: str) -> PlacementController | None:
    if not options.placement:
        return None
    settings = PlacementSettings(
        options.catalog,
        lease_namespace=namespace,
        identity=options.identity,
        when_full=options.when_full,
        growable=options.growable,
        max_gate_age=options.max_gate_age,
        lease_duration=options.placement_lease_duration,
    )
    return PlacementController(settings, api)


async def _lead(
    options: Options,
    connection: Any,
    *,
    controller: Controller,
    placement: PlacementController | None,
    elector: LeaderElector,
    stopping: asyncio.Event,
) -> int:
    """Run kopf until a signal, kopf's own exit, or the loss of the Lease."""
    nodes = asyncio.create_task(_watch_nodes(controller.api, controller, placement).run())
    placing = asyncio.create_task(placement.run()) if placement else None
    kopf_stop = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(controller, connection),
            settings=operator_settings(),
            standalone=True,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            stop_flag=kopf_stop,
        )
    )
    holding = asyncio.create_task(
        elector.hold() if options.leader_election else asyncio.Event().wait()
    )
    signalled = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait(
        {operator, holding, signalled}, return_when=asyncio.FIRST_COMPLETED
    )
    kopf_stop.set()
    if placing is not None:
        placing.cancel()  # releases the placement Lease: the webhook stops gating
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await placing
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(operator, timeout=10)
    for task in (holding, signalled):
        task.cancel()
    nodes.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await nodes
    if holding in done:
        return EXIT_LOST_LEADERSHIP  # never act without the Lease: exit, get restarted
    if options.leader_election:
        await elector.release()
    return 0


def _watch_nodes(
    api: Rest, controller: Controller, placement: PlacementController | None
) -> ListWatch:
    """The node inventory's list+watch, on the operator's one API client, in its loop."""

    def publish(fleet: FleetIndex) -> None:
        controller.fleet_changed(fleet)
        if placement is not None:
            placement.fleet_changed(fleet)

    inventory = NodeInventory(publish)
    return ListWatch(api, "/api/v1/nodes", inventory.replace, inventory.apply)


async def _first(wanted: Any, stop: Any) -> bool:
    """Await `wanted` unless `stop` finishes first; True if `wanted` did."""
    wanted_task = asyncio.ensure_future(wanted)
    stop_task = asyncio.ensure_future(stop)
    done, pending = await asyncio.wait(
        {wanted_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    return wanted_task in done


async def _serve_health(port: int, state: dict[str, Any]) -> web.AppRunner | None:
    """`GET /healthz`: 200 and this replica's role (leader or standby)."""
    if not port:
        return None

    async def healthz(_: web.Request) -> web.Response:
        controller = state.get("controller")
        body = {
            "role": state["role"],
            "synced": bool(controller and controller.synced.is_set()),
        }
        if controller is not None:
            body["stats"] = {
                "reconciles": controller.stats.reconciles,
                "writes": controller.stats.writes,
                "failures": controller.stats.failures,
                "nodes": controller.fleet.node_count,
                "queue": len(controller.queue) if controller.queue is not None else 0,
            }
        placement = state.get("placement")
        if placement is not None:
            body["placement"] = {
                "gated": len(placement.gated),
                "placed": placement.stats.placed,
                "writes": placement.stats.writes,
                "byReason": placement.stats.by_reason,
                "conflicts": placement.stats.conflicts,
                "healthy": placement.healthy(),
            }
        return web.json_response(body)

    async def metrics(_: web.Request) -> web.Response:
        placement = state.get("placement")
        payload = generate_latest(placement.metrics.registry) if placement else b""
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # probes come from the kubelet
    return runner

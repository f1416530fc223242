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
from flox_isa.isa.fleet_index import FleetIndex
from flox_isa.isa.placement import DEFAULT_WHEN_FULL, WhenFull
from flox_isa.kube.inventory import NodeInventory
from flox_isa.kube.lease import LeaderElector, LeaseConfig
from flox_isa.kube.rest import Rest, load_connection
from flox_isa.kube.watch import WATCH_RESTART_REASONS, ListWatch
from flox_isa.operator.controller import Controller, Settings
from flox_isa.operator.defaults import DEFAULT_WRITE_CONCURRENCY
from flox_isa.operator.handlers import build_registry, operator_settings
from flox_isa.operator.placement import PlacementController, PlacementSettings, Planner

log = logging.getLogger("flox_isa.operator")

SERVICE_ACCOUNT_NAMESPACE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
EXIT_LOST_LEADERSHIP: Final = 1
# On SIGTERM: kopf gets this long to stop its watchers and workers, then is cancelled, so
# the process (and the Lease release) is done within 5 s, well inside the pod's grace period.
KOPF_STOP_SECONDS: Final = 1.5
CANCEL_WAIT_SECONDS: Final = 1.0
RECLAIM_SIGNALS_AFTER: Final = (0.1, 0.4, 1.0, 3.0)  # seconds after kopf is started, cumulative


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
    recover_after: float | None = None  # None: recovery off
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    capacity_planning: bool = True  # plan TicketWorkers by free room (else allocatable CPU)


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
    state: dict[str, Any] = {"role": "standby", "synced": False, "options": options}
    async with Rest(connection) as api:
        health = await _serve_health(options.health_port, state)
        try:
            state["elector"] = elector = LeaderElector(
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
            settings = Settings(
                options.catalog, identity=options.identity, growable=options.growable
            )
            if options.workers is not None:
                settings.workers = options.workers
            controller = Controller(settings, api)
            state["controller"] = controller
            placement = _placement(options, api, elector.config.namespace)
            state["placement"] = placement
            return await _lead(
                options, connection, controller=controller, placement=placement,
                elector=elector, stopping=stopping, state=state,
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
        recover_after=options.recover_after,
        write_concurrency=options.write_concurrency,
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
    state: dict[str, Any],
) -> int:
    """Run kopf until a signal, kopf's own exit, or the loss of the Lease."""
    capacity: Planner | None = None
    pods: ListWatch | None = None
    if options.capacity_planning and placement is not None:
        capacity = placement
        controller.attach_capacity(placement, placement.pods.synced)
    elif options.capacity_planning:  # no placement controller: a pod watch of our own
        capacity = Planner(PlacementSettings(options.catalog, "", options.identity))
        pods = ListWatch(controller.api, "/api/v1/pods", capacity.replace_pods,
                         capacity.pod_changed)  # fmt: skip
        controller.attach_capacity(capacity, pods.synced)
    state["nodes"] = watcher = _watch_nodes(controller.api, controller, capacity or placement)
    nodes = asyncio.create_task(watcher.run())
    placing = asyncio.create_task(placement.run()) if placement else None
    watching = asyncio.create_task(pods.run()) if pods else None
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
    reclaim = asyncio.create_task(_reclaim_signals(stopping))
    done, _ = await asyncio.wait(
        {operator, holding, signalled}, return_when=asyncio.FIRST_COMPLETED
    )
    reclaim.cancel()
    kopf_stop.set()
    began = asyncio.get_running_loop().time()
    if placing is not None:
        placing.cancel()  # releases the placement Lease: the webhook stops gating
    for task in (holding, signalled):
        task.cancel()
    # Stop acting first (bounded), then hand the Lease over: never two leaders at once.
    # Awaited here, in the main task: kopf cancels every task started after it when it
    # is cancelled itself.
    await _stop_within(operator, KOPF_STOP_SECONDS)
    if placing is not None:
        await _stop_within(placing, CANCEL_WAIT_SECONDS)
    if watching is not None:
        watching.cancel()
        await _stop_within(watching, CANCEL_WAIT_SECONDS)
    nodes.cancel()
    await _stop_within(nodes, CANCEL_WAIT_SECONDS)
    log.info("stopped", extra={"seconds": round(asyncio.get_running_loop().time() - began, 2)})
    if holding in done:
        return EXIT_LOST_LEADERSHIP  # never act without the Lease: exit, get restarted
    if options.leader_election:
        await elector.release()
    return 0


def _watch_nodes(api: Rest, controller: Controller, planner: Planner | None) -> ListWatch:
    """The node inventory's list+watch, on the operator's one API client, in its loop
    (`planner`: the placement controller, or the capacity accounting of its own)."""

    def publish(fleet: FleetIndex) -> None:
        if planner is not None:
            planner.fleet_changed(fleet)  # first: the reconciles it triggers read its room
        controller.fleet_changed(fleet)

    inventory = NodeInventory(publish)
    return ListWatch(api, "/api/v1/nodes", inventory.replace, inventory.apply)


async def _reclaim_signals(stopping: asyncio.Event) -> None:
    """kopf replaces our SIGTERM/SIGINT handlers as it starts (within its first loop
    ticks), and on a signal stops by itself, waiting 5 s for every other task of the
    loop. Take the signals back soon after: our shutdown stops kopf within seconds."""
    loop = asyncio.get_running_loop()
    for delay in RECLAIM_SIGNALS_AFTER:
        await asyncio.sleep(delay)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)


async def _stop_within(task: asyncio.Task[Any], seconds: float) -> None:
    """Let `task` finish for `seconds`, then cancel it and wait a little more."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(task), timeout=seconds)
    if not task.done():
        log.warning("kopf did not stop in time; cancelling it", extra={"seconds": seconds})
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=CANCEL_WAIT_SECONDS)


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


def operator_metrics(state: dict[str, Any]) -> bytes:
    """The Prometheus text exposition of this replica (leader or not, what it manages)."""
    controller: Controller | None = state.get("controller")
    nodes: ListWatch | None = state.get("nodes")
    degraded = len(controller.stats.degraded) if controller else 0
    failures = controller.stats.failures if controller else 0
    lines = [
        "# HELP flox_isa_operator_leader 1 while this replica holds the Lease and acts.",
        "# TYPE flox_isa_operator_leader gauge",
        f"flox_isa_operator_leader {1 if state['role'] == 'leader' else 0}",
        "# HELP flox_isa_operator_ticketworkers_degraded TicketWorkers whose status says"
        " Degraded=True (leader only).",
        "# TYPE flox_isa_operator_ticketworkers_degraded gauge",
        f"flox_isa_operator_ticketworkers_degraded {degraded}",
        "# HELP flox_isa_operator_reconcile_failures_total Reconciles that failed.",
        "# TYPE flox_isa_operator_reconcile_failures_total counter",
        f"flox_isa_operator_reconcile_failures_total {failures}",
        "# HELP flox_isa_operator_inventory_nodes Nodes in the leader's node inventory.",
        "# TYPE flox_isa_operator_inventory_nodes gauge",
        f"flox_isa_operator_inventory_nodes {controller.fleet.node_count if controller else 0}",
        "# HELP flox_isa_operator_watch_restarts_total Node list/watch restarts by reason"
        " (gone, error, stalled; leader only).",
        "# TYPE flox_isa_operator_watch_restarts_total counter",
        *(
            f'flox_isa_operator_watch_restarts_total{{reason="{reason}"}}'
            f" {nodes.restart_reasons.get(reason, 0) if nodes else 0}"
            for reason in WATCH_RESTART_REASONS
        ),
    ]
    return ("\n".join(lines) + "\n").encode()


def not_ready_reason(state: dict[str, Any], now: float) -> str:
    """Why this replica is not Ready ("" when it is): it must reach the API server (its
    Lease requests succeed, leader or standby alike: a standby is Ready, or the PDB
    would block node drains) and, when it leads, have listed the nodes it plans on."""
    options: Options = state["options"]
    elector: LeaderElector | None = state.get("elector")
    if options.leader_election:
        contact = elector.last_contact if elector is not None else None
        if contact is None:
            return "no Lease request has succeeded yet"
        if now - contact > options.lease_duration:
            return f"no Lease request has succeeded for {now - contact:.0f} s"
    if state["role"] == "leader":
        nodes: ListWatch | None = state.get("nodes")
        if nodes is None or not nodes.synced.is_set():
            return "leading, but the nodes are not listed yet"
    return ""


async def _serve_health(port: int, state: dict[str, Any]) -> web.AppRunner | None:
    """`GET /healthz`: 200 and this replica's role (leader or standby); `GET /readyz`:
    200 when healthy and watching (see `not_ready_reason`), else 503 and why."""
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
                "writeSeconds": round(placement.stats.write_seconds, 3),
                "healthy": placement.healthy(),
            }
        return web.json_response(body)

    async def readyz(_: web.Request) -> web.Response:
        problem = not_ready_reason(state, asyncio.get_running_loop().time())
        if problem:
            return web.json_response({"ready": False, "reason": problem}, status=503)
        return web.json_response({"ready": True, "role": state["role"]})

    async def metrics(_: web.Request) -> web.Response:
        placement = state.get("placement")
        payload = operator_metrics(state)
        if placement:
            payload += generate_latest(placement.metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # probes come from the kubelet
    return runner

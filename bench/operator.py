"""Operator benchmark (not a test): converge and react times, and RSS, at 1,000 and 5,000 nodes.

    python bench/operator.py [--kubeconfig FILE] [--sizes 1000 5000] [--ticketworkers 50]
    python bench/operator.py --scenario busy [--sizes 5000] [--ticketworkers 50]

Without --kubeconfig it starts its own devcluster (default fleet) and stops it at the end.
Per size: simulated nodes (m4, c5, m6i, c6g, labelled bench.flox.dev/pool) are added
until the pool has that many; the operator starts fresh; then

- converge: from applying N TicketWorkers to every planned Deployment existing;
- react:    once every replica is Ready, from 10 Ready Graviton4 (c8g) nodes joining the
            pool (a label change) to every TicketWorker rebalanced (each gains an armv9
            Deployment, replicas re-split);
- RSS:      the operator's resident memory after both (VmRSS; peak VmHWM).

Each size starts once kwok has brought every node up (each holds its Lease): kwok
registers thousands of new nodes' Leases minutes after they turn Ready, and on a
2-core machine that storm, not the operator, would set the times.

Targets at 5,000 nodes: converge <= 10 s, react <= 2 s, RSS <= 200 MB.

`--scenario busy` (issue 14): N int8 TicketWorkers (placement best, 3-CPU replicas: one per
xlarge node) on the same pool, half of whose VNNI nodes (the best pool for int8) another
team's pods fill; the replicas ask for 1.6x the room the free half has. The operator runs
twice, in one cluster, one after the other: room-blind (`--no-capacity-planning`, today's
plan: every replica on avx512vnni) and planned by free room. Per mode: converge (from
applying the TicketWorkers until every pod is Running or Unschedulable and the Deployments
hold every replica) and the replicas Pending at the end (10 s later).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flox_isa.devcluster import cluster as devcluster
from flox_isa.devcluster.fleet import fleet_yaml, node_manifests, parse_fleet
from flox_isa.devcluster.nodes import nodes_like
from flox_isa.isa.catalog import WORKLOADS, default_catalog
from flox_isa.isa.names import INSTANCE_TYPE_LABEL
from flox_isa.isa.nodes import node_state
from flox_isa.isa.planning import group_eligible, plan_replicas
from flox_isa.kube.rest import ApiError, Rest, load_connection
from flox_isa.operator.crd import crd
from flox_isa.operator.models import TicketWorkerSpec

POOL = "bench.flox.dev/pool"
FAMILIES = ("m4.xlarge", "c5.xlarge", "m6i.xlarge", "c6g.xlarge")
NAMESPACE = "flox-isa-bench"
HEALTH_PORT = 18765
CATALOG = default_catalog()


@dataclass
class Result:
    nodes: int
    converge: float
    react: float
    rss_mb: float
    peak_mb: float


async def gather_limited(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int = 48) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def create(api: Rest, path: str, body: dict[str, Any]) -> None:
    try:
        await api.post(path, body)
    except ApiError as exc:
        if exc.status != 409:
            raise


async def add_pool_nodes(
    api: Rest, family: str, count: int, stem: str, pool: str = "true"
) -> list[str]:
    fleet = parse_fleet(f"nodes: [{{instanceType: {family}, labels: {{{POOL}: '{pool}'}}}}]")
    manifests = nodes_like(node_manifests(fleet)[0], [f"{stem}-{i}" for i in range(count)])
    await gather_limited([functools.partial(create, api, "/api/v1/nodes", m) for m in manifests])
    return [m["metadata"]["name"] for m in manifests]


async def pool_nodes(api: Rest, pool: str = "true") -> list[dict[str, Any]]:
    listed = await api.get("/api/v1/nodes", {"labelSelector": f"{POOL}={pool}"})
    return list(listed["items"])


async def grow_pool(api: Rest, size: int) -> None:
    have = len(await pool_nodes(api))
    missing = size - have
    if missing > 0:
        share = -(-missing // len(FAMILIES))
        started = time.monotonic()
        for family in FAMILIES:
            await add_pool_nodes(api, family, share, f"bench-{size}-{family.split('.')[0]}")
        print(f"  added {share * len(FAMILIES)} nodes in {time.monotonic() - started:.1f}s")
    await wait_ready(api, size)


async def wait_settled(api: Rest, timeout: float = 600) -> None:
    """Until kwok has brought the whole fleet up: every node holds its Lease.

    kwok creates the Leases of thousands of new nodes at its own pace, minutes after
    they turn Ready; measured in that storm, the times would be kwok's, not ours.
    """
    started = time.monotonic()
    while True:
        nodes = await api.list_metadata("/api/v1/nodes", {"resourceVersion": "0"})
        leases = await api.list_metadata(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {"resourceVersion": "0"},
        )
        missing = len(nodes["items"]) - len(leases["items"])
        if missing <= 0:
            waited = time.monotonic() - started
            print(f"  fleet settled (every node holds its Lease) after {waited:.0f}s")
            return
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{missing} nodes still have no Lease")
        await asyncio.sleep(2)


async def wait_ready(api: Rest, at_least: int, timeout: float = 600, pool: str = "true") -> None:
    deadline = time.monotonic() + timeout
    while True:
        ready = sum(1 for n in await pool_nodes(api, pool) if node_state(n).ready)
        if ready >= at_least:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {ready}/{at_least} pool nodes Ready")
        await asyncio.sleep(1)


def ticketworkers(
    count: int, stem: str = "bench", replicas: int = 10, **spec: Any
) -> list[dict[str, Any]]:
    """`count` TicketWorkers on the pool, workloads in turn (`spec` overrides)."""
    return [
        {
            "apiVersion": "isa.flox.dev/v1alpha1",
            "kind": "TicketWorker",
            "metadata": {"name": f"{stem}-{i}", "namespace": NAMESPACE},
            "spec": {
                "environment": f"acme/service-{i}",
                "workload": WORKLOADS[i % len(WORKLOADS)],
                "replicas": replicas,
                "template": {"spec": {"nodeSelector": {POOL: "true"}}},
                **spec,
            },
        }
        for i in range(count)
    ]


async def expected(
    api: Rest, tws: list[dict[str, Any]], joining: Sequence[str] = ()
) -> dict[str, int]:
    """Deployment name -> replicas, from the pure plan on the pool's nodes as they are now,
    plus the standby nodes named in `joining` as if they had joined it."""
    nodes = [node_state(n) for n in await pool_nodes(api)]
    for node in await pool_nodes(api, "standby"):
        if node["metadata"]["name"] in joining:
            node["metadata"]["labels"][POOL] = "true"
            nodes.append(node_state(node))
    out: dict[str, int] = {}
    for tw in tws:
        spec = TicketWorkerSpec.model_validate(tw["spec"])
        pod_spec = spec.template.spec.model_dump(by_alias=True, exclude_none=True)
        plan = plan_replicas(
            CATALOG, group_eligible(nodes, pod_spec), workload=spec.workload, replicas=10
        )
        for share in plan.shares:
            out[f"{tw['metadata']['name']}-{share.variant.name}"] = share.replicas
    return out


async def actual(api: Rest) -> dict[str, int]:
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    listed = await api.get(path, {"labelSelector": "app.kubernetes.io/managed-by=flox-isa"})
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in listed["items"]}


async def until_matches(
    api: Rest, want: dict[str, int], started: float, timeout: float = 300
) -> float:
    while True:
        if await actual(api) == want:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError("the operator did not converge")
        await asyncio.sleep(0.05)


def start_operator(kubeconfig: Path, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flox_isa.cli", "operator", "--kubeconfig", str(kubeconfig),
         "--namespace", NAMESPACE, "--no-leader-election", "--health-port", str(HEALTH_PORT),
         *flags],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


async def wait_indexed(size: int) -> None:
    """Until the operator has indexed `size` nodes (before any handler runs)."""
    while True:
        try:
            if healthz().get("stats", {}).get("nodes", 0) >= size:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)


def healthz() -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/healthz", timeout=2) as r:
        return dict(json.loads(r.read()))


def memory_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


async def run_size(api: Rest, kubeconfig: Path, size: int, count: int, logs: Path) -> Result:
    print(f"== {size} nodes")
    # The nodes of the fleet change first: kwok marks new nodes Ready slowly once it
    # heartbeats thousands, and the change must be one of labels, not of kwok's pace.
    graviton4 = await add_pool_nodes(api, "c8g.xlarge", 10, f"bench-react-{size}", "standby")
    await wait_ready(api, 10, pool="standby")
    await grow_pool(api, size)
    await wait_settled(api)
    await create(api, "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    operator = start_operator(kubeconfig, logs / f"operator-{size}.log")
    try:
        started = time.monotonic()
        await wait_indexed(size)
        print(f"  operator indexed {size}+ nodes in {time.monotonic() - started:.1f}s")
        tws = ticketworkers(count)
        want = await expected(api, tws)
        path = f"/apis/isa.flox.dev/v1alpha1/namespaces/{NAMESPACE}/ticketworkers"
        started = time.monotonic()
        await gather_limited([functools.partial(create, api, path, tw) for tw in tws])
        converge = await until_matches(api, want, started)
        print(f"  converge: {len(want)} Deployments for {count} TicketWorkers in {converge:.2f}s")
        await wait_rolled_out(api)  # the react clock starts in a settled cluster
        # The fleet change: 10 Ready Graviton3 nodes join the pool (a label change). The
        # plan to wait for is computed before the clock starts: planning 5,000 nodes here
        # takes seconds that are not the operator's.
        want = await expected(api, tws, graviton4)
        joined = {"metadata": {"labels": {POOL: "true"}}}
        started = time.monotonic()
        await gather_limited(
            [functools.partial(api.merge_patch, f"/api/v1/nodes/{n}", joined) for n in graviton4]
        )
        react = await until_matches(api, want, started)
        print(f"  react: rebalanced after 10 Graviton3 nodes joined the pool in {react:.2f}s")
        rss, peak = memory_mb(operator.pid)
        print(f"  RSS: {rss:.0f} MB (peak {peak:.0f} MB)")
        await gather_limited(
            [functools.partial(api.delete, f"/api/v1/nodes/{n}") for n in graviton4]
        )
        await api.delete(f"/api/v1/namespaces/{NAMESPACE}")
        await wait_gone(api, f"/api/v1/namespaces/{NAMESPACE}")
        return Result(size, converge, react, rss, peak)
    finally:
        operator.terminate()
        operator.wait(timeout=30)


async def wait_rolled_out(api: Rest, timeout: float = 600) -> None:
    """Until every managed Deployment has all its replicas Ready (the scheduler has placed
    the converge's 500 pods: on 5,000 nodes that takes it a while)."""
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    started = time.monotonic()
    while True:
        listed = await api.get(path, {"labelSelector": "app.kubernetes.io/managed-by=flox-isa"})
        pending = sum(
            1
            for d in listed["items"]
            if (d.get("status") or {}).get("readyReplicas", 0) != d["spec"]["replicas"]
        )
        if not pending:
            print(f"  rolled out (every replica Ready) after {time.monotonic() - started:.0f}s")
            await asyncio.sleep(2)  # the last status writes
            return
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{pending} Deployments not rolled out")
        await asyncio.sleep(1)


async def wait_gone(api: Rest, path: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await api.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return
        await asyncio.sleep(1)


async def prepare(api: Rest) -> None:
    await create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd())
    runtime_class = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                     "metadata": {"name": "flox"}, "handler": "flox"}  # fmt: skip
    await create(api, "/apis/node.k8s.io/v1/runtimeclasses", runtime_class)
    await asyncio.sleep(2)  # CRD established


async def bench_busy(kubeconfig: Path, size: int, count: int, logs: Path) -> list[BusyResult]:
    async with Rest(load_connection(str(kubeconfig)), timeout=120, limit=64) as api:
        await prepare(api)
        return await run_busy(api, kubeconfig, size, count, logs)


async def bench(kubeconfig: Path, sizes: list[int], count: int, logs: Path) -> list[Result]:
    async with Rest(load_connection(str(kubeconfig)), timeout=120, limit=64) as api:
        await prepare(api)
        return [await run_size(api, kubeconfig, size, count, logs) for size in sorted(sizes)]


BUSY_NAMESPACE = "flox-isa-bench-busy"


async def fill_nodes(api: Rest, nodes: Sequence[str]) -> None:
    """Another team's pods, bound to `nodes` (no scheduler): each takes its node's CPU."""
    await create(api, "/api/v1/namespaces", {"metadata": {"name": BUSY_NAMESPACE}})

    def body(node: str) -> dict[str, Any]:
        container = {"name": "c", "image": "busy", "resources": {"requests": {"cpu": "3"}}}
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"busy-{node}"[:63], "namespace": BUSY_NAMESPACE},
                "spec": {"nodeName": node, "containers": [container]}}  # fmt: skip

    path = f"/api/v1/namespaces/{BUSY_NAMESPACE}/pods"
    await gather_limited([functools.partial(create, api, path, body(n)) for n in nodes])


async def settle_pods(
    api: Rest, namespace: str, desired: int, started: float, timeout: float = 900
) -> tuple[float, int, int]:
    """Until the Deployments hold `desired` replicas and every pod is Running or
    Unschedulable: (seconds, Running, Pending) then."""
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    pods = f"/api/v1/namespaces/{namespace}/pods"
    while True:
        listed = await api.get(
            deployments, {"labelSelector": "app.kubernetes.io/managed-by=flox-isa"}
        )
        planned = sum(d["spec"]["replicas"] for d in listed["items"])
        running = pending = undecided = 0
        for pod in (await api.get(pods))["items"]:
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                undecided += 1
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Running":
                running += 1
            elif any(c.get("reason") == "Unschedulable"
                     for c in (pod.get("status") or {}).get("conditions") or ()):  # fmt: skip
                pending += 1
            else:
                undecided += 1
        if planned == desired and running + pending == desired and not undecided:
            return time.monotonic() - started, running, pending
        if time.monotonic() - started > timeout:
            raise TimeoutError(
                f"not settled: {running} Running, {pending} Pending, {undecided} other"
            )
        await asyncio.sleep(0.5)


@dataclass
class BusyResult:
    mode: str
    converge: float
    running: int
    pending: int


async def run_busy(
    api: Rest, kubeconfig: Path, size: int, count: int, logs: Path
) -> list[BusyResult]:
    print(f"== busy: {size} nodes, half the VNNI pool full")
    await grow_pool(api, size)
    await wait_settled(api)
    vnni = sorted(n["metadata"]["name"] for n in await pool_nodes(api)
                  if n["metadata"]["labels"].get(INSTANCE_TYPE_LABEL) == "m6i.xlarge")  # fmt: skip
    await fill_nodes(api, vnni[: len(vnni) // 2])
    free = len(vnni) - len(vnni) // 2
    replicas = max(1, round(free * 1.6 / count))
    desired = replicas * count
    print(f"  {len(vnni)} VNNI nodes, {len(vnni) // 2} busy: room for {free} 3-CPU replicas;"
          f" {count} TicketWorkers x {replicas} = {desired} replicas")  # fmt: skip
    results = []
    for mode, flag in (("room-blind (today)", "--no-capacity-planning"),
                       ("by free room", "--capacity-planning")):  # fmt: skip
        await create(api, "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        operator = start_operator(kubeconfig, logs / f"operator-busy-{size}{flag}.log", flag)
        try:
            await wait_indexed(size)
            three_cpus = {"name": "w", "resources": {"requests": {"cpu": "3"}}}
            template = {"spec": {"nodeSelector": {POOL: "true"}, "containers": [three_cpus]}}
            tws = ticketworkers(count, "busy", replicas, workload="int8-inference",
                                placement="best", template=template)  # fmt: skip
            path = f"/apis/isa.flox.dev/v1alpha1/namespaces/{NAMESPACE}/ticketworkers"
            started = time.monotonic()
            await gather_limited([functools.partial(create, api, path, tw) for tw in tws])
            converge, _, _ = await settle_pods(api, NAMESPACE, desired, started)
            await asyncio.sleep(10)
            _, running, pending = await settle_pods(api, NAMESPACE, desired, time.monotonic())
            print(f"  {mode}: converged in {converge:.1f}s; at the end {running} Running,"
                  f" {pending} Pending")  # fmt: skip
            results.append(BusyResult(mode, converge, running, pending))
        finally:
            operator.terminate()
            operator.wait(timeout=30)
        await api.delete(f"/api/v1/namespaces/{NAMESPACE}")
        await wait_gone(api, f"/api/v1/namespaces/{NAMESPACE}", timeout=600)
    return results


def report_busy(results: list[BusyResult]) -> None:
    print(f"\n{'plan':<20} {'converge s':>11} {'Running':>8} {'Pending':>8}")
    for r in results:
        print(f"{r.mode:<20} {r.converge:>11.1f} {r.running:>8} {r.pending:>8}")
    blind, room = results
    print(
        f"by free room / room-blind: converge {room.converge / blind.converge:.2f}x,"
        f" Pending {room.pending} vs {blind.pending}"
    )


def report(results: list[Result]) -> None:
    print(f"\n{'nodes':>6} {'converge s':>11} {'react s':>8} {'RSS MB':>7} {'peak MB':>8}")
    for r in results:
        print(
            f"{r.nodes:>6} {r.converge:>11.2f} {r.react:>8.2f} {r.rss_mb:>7.0f} {r.peak_mb:>8.0f}"
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        print(
            f"ratio {large.nodes}/{small.nodes}: converge {large.converge / small.converge:.2f}x,"
            f" react {large.react / small.react:.2f}x, RSS {large.rss_mb / small.rss_mb:.2f}x"
        )
    last = results[-1]
    print(
        f"targets at {last.nodes} nodes: converge {last.converge:.2f}s (<= 10),"
        f" react {last.react:.2f}s (<= 2), RSS {last.rss_mb:.0f} MB (<= 200)"
    )


def fleet_file(directory: Path, args: argparse.Namespace) -> str | None:
    """For `busy`, the whole pool in the devcluster's fleet: kwok brings 5,000 nodes up in
    minutes that way, and takes over 10 minutes for nodes created one by one."""
    if args.scenario != "busy":
        return None
    share = -(-max(args.sizes) // len(FAMILIES))
    path = directory / "fleet.yaml"
    path.write_text(fleet_yaml((family, share, {POOL: "true"}) for family in FAMILIES))
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster (default: start one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--ticketworkers", type=int, default=50)
    parser.add_argument("--logs", type=Path, help="keep the operator logs here")
    parser.add_argument("--scenario", choices=("react", "busy"), default="react",
                        help="react: converge/react/RSS; busy: half the best pool full,"
                        " room-blind vs by free room (largest --sizes only)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flox-isa-bench-") as tmp:
        directory = Path(tmp)
        logs = args.logs or directory
        logs.mkdir(parents=True, exist_ok=True)
        kubeconfig = args.kubeconfig
        if kubeconfig is None:
            fleet = fleet_file(directory, args)
            kubeconfig = devcluster.up(directory / "cluster", fleet).kubeconfig
        try:
            if args.scenario == "busy":
                size = max(args.sizes)
                report_busy(asyncio.run(bench_busy(kubeconfig, size, args.ticketworkers, logs)))
            else:
                report(asyncio.run(bench(kubeconfig, args.sizes, args.ticketworkers, logs)))
        finally:
            if args.kubeconfig is None:
                devcluster.down(directory / "cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())

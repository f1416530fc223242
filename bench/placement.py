"""Placement benchmark (not a test): late binding vs admission-only pinning, one run.

    python bench/placement.py [--vnni-nodes 100] [--avx2-nodes 100] [--other-pods 400]

Starts its own devcluster with a pool of m6i.2xlarge (AVX512VNNI, 7 one-CPU pods each)
and m4.2xlarge (AVX2 only, 7 each) nodes, and `--other-pods` one-CPU pods of another
team on the VNNI nodes (not opted in). Then, for each mode, the real webhook and the
real operator (late binding: gate + placement controller; admission-only: what
flox-isa did before, `--no-late-binding` / `--no-placement`) and one opted-in int8
Deployment of one-CPU replicas:

- (a) as many replicas as the VNNI nodes have room for: seconds from the Deployment's
  creation to every replica Running; the ratio late / admission (goal <= 1.3);
- (b) twice that many: pods still Pending once the run has settled (goal 0 with late
  binding; admission-only pins all of them to the full VNNI pool).

Also: the placement controller's writes per placed pod (goal: exactly 1) and the
operator's RSS (VmRSS, VmHWM). The modes run in one cluster, one after the other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from flox_isa.devcluster import cluster as devcluster
from flox_isa.devcluster.cluster import free_ports
from flox_isa.devcluster.fleet import fleet_yaml
from flox_isa.isa import names
from flox_isa.kube.config import api_client
from flox_isa.operator.defaults import DEFAULT_WRITE_CONCURRENCY
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.registration import webhook_configuration

NAMESPACE = "bench-placement"
LEASE_NAMESPACE = "default"
PER_NODE = 7
MODES = ("admission", "late")
WATCH: Any = watch.Watch  # untyped


@dataclass
class Run:
    mode: str
    scenario: str
    replicas: int
    seconds: float
    running: int
    pending: int
    writes_per_pod: float
    rss_mb: float
    peak_mb: float
    stages: dict[str, tuple[float, float]]  # stage -> (median, p99) seconds
    cpu: dict[str, float]  # process -> CPU seconds spent during the run
    mean_write: float  # seconds per placement write (late binding)
    bound_seconds: float  # from the Deployment's creation to its last pod bound


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each process (/proc/PID/stat), seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            spent[name] = (int(fields[11]) + int(fields[12])) / ticks
    return spent


STAGES = ("created->ungated", "ungated->bound", "bound->running")


class Timeline:
    """When the bench saw each pod created, ungated, bound and Running (its own watch:
    creationTimestamp has one-second resolution), to tell where late binding spends."""

    def __init__(self, core: Any, app: str) -> None:
        self.seen: dict[str, dict[str, float]] = {}
        self._watch = WATCH()
        self._thread = threading.Thread(target=self._run, args=(core, app), daemon=True)
        self._thread.start()

    def _run(self, core: Any, app: str) -> None:
        stream = self._watch.stream(core.list_namespaced_pod, NAMESPACE,
                                    label_selector=f"app={app}", timeout_seconds=3600)  # fmt: skip
        with contextlib.suppress(Exception):  # stop() ends the stream mid-read
            self._follow(stream)

    def _follow(self, stream: Any) -> None:
        for event in stream:
            pod, now = event["object"], time.monotonic()
            marks = self.seen.setdefault(pod.metadata.uid, {"created": now})
            if not pod.spec.scheduling_gates:
                marks.setdefault("ungated", now)
            if pod.spec.node_name:
                marks.setdefault("bound", now)
            if pod.status.phase == "Running":
                marks.setdefault("running", now)

    def last(self, mark: str) -> float:
        """When the last pod got `mark` (monotonic clock; 0.0: none did)."""
        return max((m[mark] for m in self.seen.values() if mark in m), default=0.0)

    def stop(self) -> dict[str, tuple[float, float]]:
        self._watch.stop()
        stages: dict[str, tuple[float, float]] = {}
        for stage in STAGES:
            start, end = stage.split("->")
            spans = sorted(m[end] - m[start] for m in self.seen.values() if end in m)
            if spans:
                p99 = spans[min(len(spans) - 1, int(len(spans) * 0.99))]
                stages[stage] = (statistics.median(spans), p99)
        return stages


def fleet_file(directory: Path, vnni: int, avx2: int) -> Path:
    path = directory / "fleet.yaml"
    path.write_text(fleet_yaml([("m6i.2xlarge", vnni, {"pool": "vnni"}),
                                ("m4.2xlarge", avx2, {"pool": "avx2"})]))  # fmt: skip
    return path


def deployment(name: str, replicas: int, *, opted_in: bool, selector: dict[str, str]) -> Any:
    annotations = {names.ENVIRONMENT_ANNOTATION: "acme/embedder",
                   names.WORKLOAD_ANNOTATION: "int8-inference"}  # fmt: skip
    labels = {"app": name, names.INJECT_LABEL: "true" if opted_in else "false"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "runtimeClassName": "flox",
                    "nodeSelector": selector,
                    "containers": [{"name": "w", "image": "flox/empty:1.0.0",
                                    "resources": {"requests": {"cpu": "1", "memory": "64Mi"}}}],
                },
            },
        },
    }  # fmt: skip


def bind_other_pods(core: Any, count: int) -> None:
    """Another team's pods, created bound round-robin on the VNNI nodes (`spec.nodeName`).

    Bound at creation, they skip the ReplicaSet controller (about 20 creates/s here, its
    client's rate limit) and the scheduler: 10,000 of them are set up in a minute or two.
    """
    nodes = sorted(n.metadata.name for n in core.list_node(label_selector="pool=vnni").items)
    template: dict[str, Any] = deployment("other", 0, opted_in=False, selector={})["spec"][
        "template"
    ]
    spec = {k: v for k, v in template["spec"].items() if k != "nodeSelector"}

    def create(index: int) -> None:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {**template["metadata"], "name": f"other-{index}"},
               "spec": {**spec, "nodeName": nodes[index % len(nodes)]}}  # fmt: skip
        core.create_namespaced_pod(NAMESPACE, pod)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for done, _ in enumerate(pool.map(create, range(count)), start=1):
            if done % 2000 == 0:
                print(f"    {done} created", flush=True)


class Components:
    """The webhook and the operator, started per mode."""

    def __init__(
        self,
        directory: Path,
        kubeconfig: Path,
        profile: Path | None = None,
        writers: int = DEFAULT_WRITE_CONCURRENCY,
    ) -> None:
        self.directory = directory
        self.writers = writers
        self.kubeconfig = kubeconfig
        self.profile = profile
        self.certs = write_serving_certs(directory / "tls")
        self.webhook_port, self.health_port = free_ports(2)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, mode: str) -> None:
        late = mode == "late"
        cli = [sys.executable, "-m", "flox_isa.cli"]
        webhook = [*cli, "webhook", "--host", "127.0.0.1", "--port", str(self.webhook_port),
                   "--tls-cert", str(self.certs.cert_path), "--tls-key", str(self.certs.key_path),
                   "--kubeconfig", str(self.kubeconfig), "--namespace", "flox-isa-system",
                   "--placement-lease-namespace", LEASE_NAMESPACE, "--log-level", "WARNING",
                   "--late-binding" if late else "--no-late-binding"]  # fmt: skip
        if late and self.profile is not None:  # cProfile writes it when the operator exits
            cli = [sys.executable, "-m", "cProfile", "-o", str(self.profile), "-m", "flox_isa.cli"]
        operator = [*cli, "operator", "--kubeconfig", str(self.kubeconfig),
                    "--health-port", str(self.health_port), "--no-leader-election",
                    "--lease-namespace", LEASE_NAMESPACE,
                    *(["--placement", f"--placement-write-concurrency={self.writers}"]
                      if late else ["--no-placement"])]  # fmt: skip
        for name, argv in (("webhook", webhook), ("operator", operator)):
            log = (self.directory / f"{name}-{mode}.log").open("wb")
            self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        wait(f"the {mode} webhook", lambda: self.metrics() is not None, 60)
        if late:
            wait("late binding on", lambda: b"late_binding 1.0" in (self.metrics() or b""), 60)

    def metrics(self) -> bytes | None:
        import ssl  # noqa: PLC0415 - bench only

        context = ssl.create_default_context(cafile=str(self.certs.ca_path))
        url = f"https://127.0.0.1:{self.webhook_port}/metrics"
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                return bytes(response.read())
        except OSError:
            return None

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            health: dict[str, Any] = json.loads(response.read())
            return health

    def rss(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.processes[1].pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = []


def wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def pod_count(core: Any, app: str) -> int:
    """Pods of `app` that still exist, terminating ones included (they hold room)."""
    return len(core.list_namespaced_pod(NAMESPACE, label_selector=f"app={app}").items)


def pod_phases(core: Any, app: str) -> tuple[int, int, str]:
    """(Running, not yet bound, why the scheduler left one unbound) of `app`'s live pods."""
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={app}").items
    live = [p for p in pods if not p.metadata.deletion_timestamp]
    running = sum(1 for p in live if p.status.phase == "Running")
    unbound = [p for p in live if not p.spec.node_name]
    why = ""
    for condition in (unbound[0].status.conditions or []) if unbound else []:
        if condition.type == "PodScheduled":
            why = f"{condition.reason}: {condition.message}"
    return running, len(unbound), why


def measure(
    api: Any,
    parts: Components,
    mode: str,
    *,
    scenario: str,
    replicas: int,
    settle: float,
    quiet: float,
    pids: dict[str, int],
) -> Run:
    apps: Any = client.AppsV1Api(api)
    core: Any = client.CoreV1Api(api)
    name = f"{scenario}-{mode}"
    health_before = parts.health().get("placement", {})
    before = health_before.get("writes", 0)
    timeline = Timeline(core, name)
    time.sleep(1)  # the watch is open before the first pod
    pids = {**pids, "webhook": parts.processes[0].pid, "operator": parts.processes[1].pid}
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    apps.create_namespaced_deployment(
        NAMESPACE, deployment(name, replicas, opted_in=True, selector={})
    )
    deadline = started + settle
    last_change, last = time.monotonic(), (-1, -1)
    while time.monotonic() < deadline:
        running, unbound, _ = pod_phases(core, name)
        if (running, unbound) != last:
            last, last_change = (running, unbound), time.monotonic()
        if running == replicas:
            break
        # Settled with pods Pending: every bound pod Running (kwok lags at 5,000 nodes) and
        # no bind for `quiet` s (the scheduler retries Unschedulable pods on a backoff).
        if running + unbound == replicas and time.monotonic() - last_change > quiet:
            break
        time.sleep(0.25)
    seconds = time.monotonic() - started
    cpu_after = cpu_seconds(pids)
    cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
    running, _, why = pod_phases(core, name)
    pending = replicas - running
    if why:
        print(f"    the scheduler, on a pod left Pending: {why[:300]}", flush=True)
    health = parts.health()
    placed = health.get("placement", {}).get("writes", 0) - before
    write_seconds = health.get("placement", {}).get("writeSeconds", 0.0) - health_before.get(
        "writeSeconds", 0.0
    )
    mean_write = write_seconds / placed if placed else 0.0
    rss, peak = parts.rss()
    stages = timeline.stop()
    bound_seconds = max(0.0, timeline.last("bound") - started)
    apps.delete_namespaced_deployment(name, NAMESPACE)
    # Terminating pods still count on their nodes: the next run starts once they are gone.
    wait("the bench pods gone", lambda: pod_count(core, name) == 0, 900)
    return Run(mode, scenario, replicas, seconds, running, pending,
               placed / replicas if mode == "late" else 0.0, rss, peak, stages, cpu,
               mean_write, bound_seconds)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vnni-nodes", type=int, default=100)
    parser.add_argument("--avx2-nodes", type=int, default=100)
    parser.add_argument("--other-pods", type=int, default=400)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="the modes to run, in this order (default: %(default)s)")  # fmt: skip
    parser.add_argument("--settle", type=float, default=900.0,
                        help="give up on a run after this many seconds")  # fmt: skip
    parser.add_argument("--quiet", type=float, default=120.0,
                        help="a run with pods Pending has settled once nothing bound for"
                        " this many seconds")  # fmt: skip
    parser.add_argument("--write-concurrency", type=int, metavar="N",
                        default=DEFAULT_WRITE_CONCURRENCY,
                        help="the operator's --placement-write-concurrency")  # fmt: skip
    parser.add_argument("--profile-operator", type=Path, metavar="FILE",
                        help="profile the late-binding operator (stats to FILE)")  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the cluster still goes down
    room = args.vnni_nodes * PER_NODE - args.other_pods
    with tempfile.TemporaryDirectory(prefix="bench-placement-") as tmp:
        directory = Path(tmp)
        fleet = fleet_file(directory, args.vnni_nodes, args.avx2_nodes)
        state = devcluster.up(directory / "cluster", str(fleet))
        parts = Components(directory, state.kubeconfig, args.profile_operator,
                           args.write_concurrency)  # fmt: skip
        pids = {p.name: p.pid for p in state.running()}
        runs: list[Run] = []
        try:
            with api_client(str(state.kubeconfig)) as api:
                core: Any = client.CoreV1Api(api)
                opted_in = {names.INJECT_LABEL: "true"}
                core.create_namespace({"metadata": {"name": NAMESPACE, "labels": opted_in}})
                print(f"==> {args.other_pods} other pods on the VNNI pool", flush=True)
                bind_other_pods(core, args.other_pods)
                wait("the other pods Running",
                     lambda: pod_phases(core, "other")[0] == args.other_pods, 900)  # fmt: skip
                registration = webhook_configuration(
                    "flox-isa-bench", f"https://127.0.0.1:{parts.webhook_port}",
                    parts.certs.ca_pem, own_namespace="flox-isa-system",
                )  # fmt: skip
                admission: Any = client.AdmissionregistrationV1Api(api)
                admission.create_mutating_webhook_configuration(registration)
                for mode in args.modes:
                    parts.start(mode)
                    for scenario, replicas in (("a", room), ("b", 2 * room)):
                        print(f"==> {mode}: scenario {scenario}, {replicas} replicas", flush=True)
                        runs.append(measure(api, parts, mode, scenario=scenario,
                                            replicas=replicas, settle=args.settle,
                                            quiet=args.quiet, pids=pids))  # fmt: skip
                        print(f"    {runs[-1]}", flush=True)
                    parts.stop()
        finally:
            parts.stop()
            devcluster.down(directory / "cluster")
    report(runs, args, room)


def report(runs: list[Run], args: argparse.Namespace, room: int) -> None:
    print(f"\nnodes: {args.vnni_nodes} VNNI + {args.avx2_nodes} AVX2; other pods:"
          f" {args.other_pods}; VNNI room: {room} one-CPU pods")  # fmt: skip
    print(f"{'mode':10} {'scen':4} {'replicas':>8} {'seconds':>8} {'running':>8} {'pending':>8}"
          f" {'writes/pod':>10} {'rss MB':>7} {'peak MB':>7}")  # fmt: skip
    for r in runs:
        cells = (
            f"{r.mode:10} {r.scenario:4} {r.replicas:8} {r.seconds:8.1f} {r.running:8}",
            f" {r.pending:8} {r.writes_per_pod:10.2f} {r.rss_mb:7.0f} {r.peak_mb:7.0f}",
        )
        print("".join(cells))
    print("\nCPU seconds per process during each run (2 cores: what late binding adds):")
    for r in runs:
        spent = "  ".join(f"{k} {v:.1f}" for k, v in sorted(r.cpu.items()))
        writes = f"  (mean placement write {r.mean_write:.2f} s)" if r.mean_write else ""
        print(f"  {r.mode:10} {r.scenario:2} {spent}{writes}")
    print("\nstages, median / p99 seconds (the bench's own watch):")
    for r in runs:
        spans = "  ".join(f"{k} {m:.2f}/{p:.2f}" for k, (m, p) in r.stages.items())
        print(f"  {r.mode:10} {r.scenario:2} {spans}")
    by = {(r.mode, r.scenario): r for r in runs}
    if ("late", "a") not in by or ("admission", "a") not in by:
        return  # one mode only: no ratio
    late, admission = by["late", "a"], by["admission", "a"]
    print(f"(a) time to all Running, late / admission: {late.seconds / admission.seconds:.2f}x"
          f" (goal <= 1.3); to all bound (the scheduler's part, kwok's lag left out):"
          f" {late.bound_seconds / admission.bound_seconds:.2f}x"
          f" ({late.bound_seconds:.1f} / {admission.bound_seconds:.1f} s)")  # fmt: skip
    print(
        f"(b) Pending at the end: late {by['late', 'b'].pending} vs admission"
        f" {by['admission', 'b'].pending} (goal 0)"
    )


if __name__ == "__main__":
    main()

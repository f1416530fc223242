"""Fault suite (issue 16). Not a test: starts a devcluster, injects faults under load, prints
a table. Each fault runs while a load generator creates opted-in pods (dry runs: the API
server's full admission chain, nothing stored) at a steady rate.

    python bench/faults.py [--rate 10] [--only stall,cert,operator,...] [--kubeconfig FILE]

Refusals are the API server's own count, apiserver_admission_webhook_rejection_count
{error_type="calling_webhook_error"} for this run's webhook configuration (the webhook's
failures, not the API server's), plus the load's failed creates. "Wrong" counts
answers that contradict the fleet at the time they were given, plus operator pods bound
to a node that lacks their variant's instructions.

Cases:
- stall: the webhook reaches the API server through a local TCP proxy that black-holes
  every byte for 60 s (connections stay open) while 100 nodes are relabelled (AVX-512 taken
  away): answers on the stale inventory, time until the webhook notices (its "watch
  stalled" log line), time until its answers follow the fleet again.
- cert: the serving certificate is replaced by a new leaf of the same CA mid-load.
- operator: two `flox-isa operator` replicas; the leader gets SIGTERM right after a scale
  of its TicketWorker: time to exit, time until the standby holds the Lease, time until
  the Deployments match the new replica count.
- leader-fleet: two replicas; the leader is frozen (SIGSTOP) just before 6 Graviton nodes
  join its TicketWorker's pool, so it cannot act on the change, then killed (SIGKILL, no
  Lease release): time until the standby leads and its Deployments match the plan for
  the new fleet (the pure core's plan on a fresh node list).
- apiserver: the devcluster's kube-apiserver is stopped and started again (same flags,
  ports and etcd data) under load, with a webhook and an operator (a 120 s Lease, so the
  same leader rides it out) running; right after, the pool's nodes are relabelled and the
  TicketWorker scaled: time until the webhook's answers and the operator's Deployments
  follow. Creates that fail while the API server is down are its own, reported apart.
  Needs the devcluster this script starts (skipped with --kubeconfig).
- fuzz: 10,000 fuzzed AdmissionReviews posted straight to the webhook while the load runs:
  HTTP 500s, crashes, RSS before and after.
- relabel1000 (last: it leaves 1,000 more nodes until the cleanup): 1,000 nodes added, then
  relabelled at once (an NFD upgrade: AVX-512 taken away, 16 patches in flight): time
  until the webhook's answers follow, until its inventory (nodes, groups from its
  /metrics) equals an index built from a fresh list, until the operator's node count
  (/healthz) does and its Deployments match the new plan.

- service: the chart's own MutatingWebhookConfiguration (the Service form) in front of 3
  webhook processes, each on an address of the run's own (a veth pair into a network
  namespace the script creates and removes: needs root and `ip`); the script plays kubelet
  and endpoint controller, publishing them in a selector-less Service's EndpointSlice, which
  the API server follows (the devcluster runs it with --enable-aggregator-routing). Rolling
  restart: SIGTERM one process, mark its endpoint not ready a second later, wait for it to
  exit, start it again, mark it ready, next. What it proves: the chart's registration, the
  API server's pooled connections moving off a draining process (Connection: close during
  shutdownDelay), the drain. What it cannot: kubelet, probe and endpoint propagation
  delays, the CNI.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flox_isa.certs import KeyPair, issue, make_ca  # noqa: E402
from flox_isa.devcluster import fleet as fleets  # noqa: E402
from flox_isa.isa import names  # noqa: E402
from flox_isa.webhook.registration import webhook_configuration  # noqa: E402

RUN = uuid.uuid4().hex[:6]
RUN_LABEL = "faults.flox.dev/run"
POOL_LABEL = "faults.flox.dev/pool"
ENV = "acme/fault-probe"
AVX512 = names.NFD_CPUID_PREFIX + "AVX512F"
JSON_HEADERS = {"content-type": "application/json"}


@dataclass
class Row:
    fault: str
    load: str
    refused: int
    failed: int
    wrong: int
    recovery: str


# --- the webhook under test ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Webhook:
    directory: Path
    kubeconfig: Path
    ca: KeyPair
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    dns_names: tuple[str, ...] = ()
    shutdown_delay: float = 0.0

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "webhook.log"

    def write_leaf(self) -> None:
        leaf = issue(self.ca, "flox-isa-webhook", ip_addresses=(self.host,),
                     dns_names=self.dns_names, server=True)  # fmt: skip
        # Key first, then the certificate: the webhook only swaps in a pair that matches.
        (self.directory / "tls.key").write_bytes(leaf.key_pem)
        (self.directory / "tls.crt").write_bytes(leaf.cert_pem)

    def start(self) -> None:
        self.write_leaf()
        argv = [
            sys.executable, "-m", "flox_isa.cli", "webhook", "--host", self.host,
            "--port", str(self.port), "--tls-cert", str(self.directory / "tls.crt"),
            "--tls-key", str(self.directory / "tls.key"), "--kubeconfig", str(self.kubeconfig),
            "--shutdown-delay", str(self.shutdown_delay), "--no-late-binding",
        ]  # fmt: skip
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the webhook exited: {self.log.read_text()[-2000:]}")
            return self.get("/readyz") == 200

        wait(ready, 60, "the webhook to be ready")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca.cert_pem.decode())

    def get(self, path: str) -> int:
        import urllib.request  # noqa: PLC0415 - only here

        try:
            with urllib.request.urlopen(self.url + path, context=self.context(), timeout=5) as r:
                return int(r.status)
        except OSError:
            return 0

    def text(self, path: str) -> str:
        import urllib.request  # noqa: PLC0415 - only here

        try:
            with urllib.request.urlopen(self.url + path, context=self.context(), timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def inventory(self) -> tuple[int, int]:
        """(nodes, node groups) of its inventory, from its /metrics."""
        found = {"flox_isa_inventory_nodes": -1, "flox_isa_inventory_node_groups": -1}
        for line in self.text("/metrics").splitlines():
            name, _, value = line.partition(" ")
            if name in found:
                found[name] = int(float(value))
        return found["flox_isa_inventory_nodes"], found["flox_isa_inventory_node_groups"]

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


# --- load -----------------------------------------------------------------------------------


@dataclass
class Answer:
    at: float
    ok: bool
    variant: str | None
    message: str = ""


class Load:
    """Dry-run creates of opted-in pods at `rate` per second, in a thread."""

    def __init__(self, core: Any, namespace: str, rate: float, pod: dict[str, Any]) -> None:
        self.core, self.namespace, self.rate, self.pod = core, namespace, rate, pod
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from kubernetes.client import ApiException  # noqa: PLC0415

        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            body = copy.deepcopy(self.pod)
            body["metadata"]["name"] = f"load-{uuid.uuid4().hex[:8]}"
            at = time.monotonic()
            try:
                created = self.core.create_namespaced_pod(
                    self.namespace, body, dry_run="All", _request_timeout=30
                )
                labels = created.metadata.labels or {}
                self.answers.append(Answer(at, True, labels.get(names.VARIANT_LABEL)))
            except ApiException as exc:
                self.answers.append(Answer(at, False, None, str(exc.body or exc.reason)[:200]))
            except Exception as exc:
                self.answers.append(Answer(at, False, None, repr(exc)[:200]))
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def failed(self) -> int:
        return sum(not a.ok for a in self.answers)


def rejections(api: Any, config_name_prefix: str) -> int:
    """The API server's calling_webhook_error rejections for this run's webhooks."""
    params = api.param_serialize(
        method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
    )
    response = api.call_api(*params)
    response.read()
    total = 0.0
    for line in response.data.decode().splitlines():
        if (
            line.startswith("apiserver_admission_webhook_rejection_count{")
            and 'error_type="calling_webhook_error"' in line
            and f'name="{config_name_prefix}' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


# --- a black-holing TCP proxy ------------------------------------------------------------------


class Proxy:
    """127.0.0.1:port -> target, byte for byte; while `blackhole` is set nothing moves in
    either direction (connections stay open: what a dropped route looks like)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.blackhole = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.5)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        sockets = [client, upstream]
        with client, upstream:
            while not self._stop.is_set():
                if self.blackhole.is_set():
                    time.sleep(0.05)
                    continue
                readable, _, _ = select.select(sockets, [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._server.close()


def proxied_kubeconfig(kubeconfig: Path, proxy_port: int, out: Path) -> tuple[str, int]:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    parts = urlsplit(cluster["server"])
    cluster["server"] = f"https://127.0.0.1:{proxy_port}"
    for key in ("certificate-authority", "client-certificate", "client-key"):
        for section in ("clusters", "users"):
            for entry in config.get(section, []):
                inner = entry.get("cluster" if section == "clusters" else "user", {})
                if key in inner and not Path(inner[key]).is_absolute():
                    inner[key] = str((kubeconfig.parent / inner[key]).resolve())
    out.write_text(yaml.safe_dump(config))
    return parts.hostname or "127.0.0.1", parts.port or 443


# --- the cluster side ---------------------------------------------------------------------------


@dataclass
class Harness:
    kubeconfig: Path
    api: Any
    core: Any
    registrations: Any
    directory: Path
    rate: float
    made: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)

    def namespace(self, suffix: str) -> str:
        name = f"faults-{suffix}-{RUN}"
        labels = {RUN_LABEL: f"{suffix}-{RUN}", names.INJECT_LABEL: "true"}  # one webhook each
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        self.made.append(("namespace", name))
        return name

    def register(self, webhook: Webhook, suffix: str) -> str:
        name = f"faults-{suffix}-{RUN}"
        config = webhook_configuration(
            name, webhook.url, webhook.ca.cert_pem, namespace_labels={RUN_LABEL: f"{suffix}-{RUN}"},
            timeout_seconds=2,
        )  # fmt: skip
        for hook in config["webhooks"]:
            hook["name"] = f"{name}.{hook['name']}"
        self.registrations.create_mutating_webhook_configuration(config)
        self.made.append(("webhook", name))
        return name

    def unregister(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.registrations.delete_mutating_webhook_configuration(name)

    def pool(self, size: int, instance_type: str, pool: str, prefix: str = "") -> list[str]:
        template = next(
            n for n in fleets.node_manifests(fleets.load_fleet(None))
            if n["metadata"]["labels"][names.INSTANCE_TYPE_LABEL] == instance_type
        )  # fmt: skip
        from flox_isa.devcluster.nodes import create_nodes, wait_nodes_ready  # noqa: PLC0415

        manifests = []
        for i in range(size):
            node = copy.deepcopy(template)
            name = f"{prefix or pool}-{i}"
            node["metadata"]["name"] = name
            node["metadata"]["labels"]["kubernetes.io/hostname"] = name
            node["metadata"]["labels"][POOL_LABEL] = pool
            manifests.append(node)
            self.made.append(("node", name))
        created = create_nodes(self.api, manifests)  # plain JSON: kwok's partial status
        wait_nodes_ready(self.api, created)
        return created

    def cleanup(self) -> None:
        for kind, name in reversed(self.made):
            with contextlib.suppress(Exception):
                if kind == "node":
                    self.core.delete_node(name)
                elif kind == "namespace":
                    self.core.delete_namespace(name)
                else:
                    self.registrations.delete_mutating_webhook_configuration(name)


def probe_pod(pool: str | None, workload: str = "fp32-inference") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "flox/empty:1.0.0"}]}
    if pool:
        spec["nodeSelector"] = {POOL_LABEL: pool}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "x",
            "annotations": {names.ENVIRONMENT_ANNOTATION: ENV, names.WORKLOAD_ANNOTATION: workload},
        },
        "spec": spec,
    }


def new_webhook(h: Harness, suffix: str, kubeconfig: Path | None = None) -> Webhook:
    directory = h.directory / suffix
    directory.mkdir(parents=True)
    return Webhook(directory, kubeconfig or h.kubeconfig, make_ca(f"faults-{suffix}-ca"))


def effective(h: Harness, namespace: str, pod: dict[str, Any]) -> None:
    def patched() -> bool:
        answer = h.core.create_namespaced_pod(namespace, pod, dry_run="All")
        return bool((answer.metadata.labels or {}).get(names.VARIANT_LABEL))

    wait(patched, 30, "the webhook configuration to take effect")


# --- the faults -----------------------------------------------------------------------------------


def fault_stall(h: Harness) -> Row:
    hole_seconds = 60.0
    pool = f"stall-{RUN}"
    nodes = h.pool(100, "m6i.xlarge", pool)
    config = yaml.safe_load(h.kubeconfig.read_text())
    parts = urlsplit(config["clusters"][0]["cluster"]["server"])
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 443))
    proxied = h.directory / "proxied-kubeconfig"
    proxied_kubeconfig(h.kubeconfig, proxy.port, proxied)
    webhook = new_webhook(h, "stall", proxied)
    namespace = h.namespace("stall")
    pod = probe_pod(pool)
    try:
        webhook.start()
        name = h.register(webhook, "stall")
        effective(h, namespace, pod)
        before = rejections(h.api, name)
        with Load(h.core, namespace, h.rate, pod) as load:
            time.sleep(5)
            hole_at = time.monotonic()
            hole_wall = time.time()
            proxy.blackhole.set()
            time.sleep(1)
            for node in nodes:  # an NFD relabel: these CPUs no longer offer AVX-512
                h.core.patch_node(node, {"metadata": {"labels": {AVX512: None}}})
            relabelled_at = time.monotonic()
            time.sleep(max(0.0, hole_at + hole_seconds - time.monotonic()))
            proxy.blackhole.clear()
            open_at = time.monotonic()

            def follows() -> bool:
                recent = [a for a in load.answers if a.at > time.monotonic() - 1.5 and a.ok]
                return bool(recent) and all(a.variant == "avx2" for a in recent)

            wait(follows, 120, "answers to follow the relabelled fleet")
            recovered_at = time.monotonic()
            time.sleep(2)
        stale = [
            a for a in load.answers if a.at > relabelled_at + 0.5 and a.ok and a.variant != "avx2"
        ]
        stalled = [
            line for line in webhook.log_lines()
            if line.get("message", "").startswith("watch stalled")
        ]  # fmt: skip
        noticed = "never"
        if stalled:
            first = _epoch(stalled[0]["time"]) - hole_wall
            noticed = f"{first:.0f} s"
        refused = rejections(h.api, name) - before
        recovery = (
            f"noticed after {noticed} (was ~330 s); answers right {recovered_at - open_at:.1f} s"
            f" after the hole closed ({recovered_at - relabelled_at:.0f} s after the relabel)"
        )
        return Row("node watch black-holed 60 s, 100 nodes relabelled", _load(load), refused,
                   load.failed(), len(stale), recovery)  # fmt: skip
    finally:
        h.unregister(f"faults-stall-{RUN}")
        webhook.stop()
        proxy.close()


def _epoch(stamp: str) -> float:
    import datetime as dt  # noqa: PLC0415

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _load(load: Load) -> str:
    return f"{len(load.answers)} creates at {load.rate:g}/s"


def fault_cert(h: Harness) -> Row:
    webhook = new_webhook(h, "cert")
    namespace = h.namespace("cert")
    pod = probe_pod(None)
    try:
        webhook.start()
        name = h.register(webhook, "cert")
        effective(h, namespace, pod)
        before = rejections(h.api, name)
        with Load(h.core, namespace, h.rate, pod) as load:
            time.sleep(5)
            rotated_at = time.time()
            webhook.write_leaf()  # a new leaf (new key) from the same CA: caBundle unchanged

            def reloaded() -> bool:
                return any(
                    line.get("message") == "certificate reloaded"
                    and _epoch(line["time"]) >= rotated_at
                    for line in webhook.log_lines()
                )  # fmt: skip

            took = wait(reloaded, 30, "the webhook to reload its certificate")
            time.sleep(10)
        refused = rejections(h.api, name) - before
        return Row("serving certificate rotated (same CA)", _load(load), refused, load.failed(), 0,
                   f"reloaded {took:.1f} s after the files changed")  # fmt: skip
    finally:
        h.unregister(f"faults-cert-{RUN}")
        webhook.stop()


class Operators:
    """`flox-isa operator` replicas sharing one Lease in one namespace, and what they made."""

    def __init__(self, h: Harness, namespace: str, lease_seconds: float = 15.0) -> None:
        from flox_isa.operator.crd import crd_yaml  # noqa: PLC0415

        self.h, self.namespace, self.lease_seconds = h, namespace, lease_seconds
        self.kubectl = _kubectl(h.kubeconfig)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = h.directory / f"operators-{namespace}"
        self.logs.mkdir()
        subprocess.run([*self.kubectl, "apply", "-f", "-"], input=crd_yaml(), text=True,
                       check=True, capture_output=True)  # fmt: skip
        established = ["wait", "--for=condition=Established", "crd/ticketworkers.isa.flox.dev"]
        subprocess.run([*self.kubectl, *established], check=True, capture_output=True)

    def start(self, health_port: int = 0) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "flox_isa.cli", "operator", "--kubeconfig",
                str(self.h.kubeconfig), "--namespace", self.namespace, "--lease-namespace",
                self.namespace, "--lease-name", "faults", "--lease-duration",
                str(self.lease_seconds), "--health-port", str(health_port)]  # fmt: skip
        with (self.logs / f"operator-{len(self.processes)}.log").open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def leader_and_standby(self) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """Two replicas, the first started (and leading) before the second."""
        first = self.start(0)
        wait(lambda: self.leads(first), 60, "a leader")
        return first, self.start(0)

    def holder(self) -> str:
        with contextlib.suppress(Exception):
            lease = self.h.api.call_api(*self.h.api.param_serialize(
                method="GET", auth_settings=["BearerToken"], resource_path=(
                    f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/faults"),
            ))  # fmt: skip
            lease.read()
            return str((json.loads(lease.data).get("spec") or {}).get("holderIdentity") or "")
        return ""

    def leads(self, process: subprocess.Popen[bytes]) -> bool:
        return f"-{process.pid}-" in self.holder()

    def apply(self, tw: dict[str, Any]) -> None:
        subprocess.run([*self.kubectl, "apply", "-f", "-"], input=yaml.safe_dump(tw), text=True,
                       check=True, capture_output=True)  # fmt: skip

    def scale(self, name: str, replicas: int) -> None:
        subprocess.run([*self.kubectl, "scale", f"tw/{name}", "-n", self.namespace,
                        f"--replicas={replicas}"], check=True, capture_output=True)  # fmt: skip

    def split(self) -> dict[str, int]:
        """Replicas by variant of the Deployments in the namespace."""
        command = [*self.kubectl, "get", "deployments", "-n", self.namespace, "-o", "json"]
        out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
        with contextlib.suppress(ValueError):
            return {
                d["metadata"]["labels"].get(names.VARIANT_LABEL, "?"): int(
                    d["spec"].get("replicas") or 0
                )
                for d in json.loads(out)["items"]
            }
        return {}

    def replicas(self) -> int:
        return sum(self.split().values())

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
            if process.poll() is None:
                process.kill()


def ticketworker(namespace: str, replicas: int, pool: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"environment": ENV, "workload": "int8-inference", "replicas": replicas}
    if pool:
        spec["template"] = {"spec": {"nodeSelector": {POOL_LABEL: pool}}}
    return {"apiVersion": "isa.flox.dev/v1alpha1", "kind": "TicketWorker",
            "metadata": {"name": "faults", "namespace": namespace}, "spec": spec}  # fmt: skip


def planned(h: Harness, replicas: int, pool: str) -> dict[str, int]:
    """The operator's plan for `pool` on a fresh node list (the pure core, fed independently)."""
    from flox_isa.isa.catalog import default_catalog  # noqa: PLC0415
    from flox_isa.isa.nodes import node_state  # noqa: PLC0415
    from flox_isa.isa.planning import group_eligible, plan_replicas  # noqa: PLC0415

    nodes = [node_state(n) for n in fresh_nodes(h)]
    pod_spec = {"nodeSelector": {POOL_LABEL: pool}, "runtimeClassName": "flox"}
    plan = plan_replicas(default_catalog(), group_eligible(nodes, pod_spec),
                         workload="int8-inference", replicas=replicas)  # fmt: skip
    return {share.variant.name: share.replicas for share in plan.shares}


def fresh_nodes(h: Harness) -> list[dict[str, Any]]:
    from flox_isa.devcluster.nodes import request_json  # noqa: PLC0415

    return list(request_json(h.api, "GET", "/api/v1/nodes")["items"])


def misplaced(h: Harness, namespace: str) -> int:
    """Pods of the namespace bound to a node that lacks their variant's instructions."""
    from flox_isa.devcluster.nodes import request_json  # noqa: PLC0415
    from flox_isa.isa.catalog import default_catalog  # noqa: PLC0415
    from flox_isa.isa.features import features_from_labels  # noqa: PLC0415
    from flox_isa.isa.selection import fits  # noqa: PLC0415

    catalog = default_catalog()
    labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in fresh_nodes(h)}
    wrong = 0
    for pod in request_json(h.api, "GET", f"/api/v1/namespaces/{namespace}/pods")["items"]:
        node = (pod.get("spec") or {}).get("nodeName")
        variant = catalog.get((pod["metadata"].get("labels") or {}).get(names.VARIANT_LABEL, ""))
        if node in labels and variant is not None:
            wrong += not fits(variant, features_from_labels(labels[node]))
    return wrong


def converged(ops: Operators, h: Harness, replicas: int, pool: str) -> Callable[[], bool]:
    def check() -> bool:
        split = ops.split()
        return sum(split.values()) == replicas and split == planned(h, replicas, pool)

    return check


def fault_operator(h: Harness) -> Row:
    namespace = h.namespace("operator")
    ops = Operators(h, namespace)
    try:
        first, second = ops.leader_and_standby()
        ops.apply(ticketworker(namespace, 4))
        wait(lambda: ops.replicas() == 4, 60, "4 replicas")
        ops.scale("faults", 9)
        signalled = time.monotonic()
        first.send_signal(15)
        code = first.wait(timeout=60)
        exited = time.monotonic() - signalled
        wait(lambda: ops.leads(second), 60, "the standby to lead")
        leads = time.monotonic() - signalled
        wait(lambda: ops.replicas() == 9, 60, "9 replicas")
        converged_after = time.monotonic() - signalled
        recovery = (f"exit {exited:.1f} s (code {code}), standby leads {leads:.1f} s,"
                    f" scale done {converged_after:.1f} s after SIGTERM (Lease 15 s)")  # fmt: skip
        return Row("operator leader SIGTERM mid-scale", "TicketWorker 4 -> 9 replicas", 0,
                   0, misplaced(h, namespace), recovery)  # fmt: skip
    finally:
        ops.stop()


def fault_leader_fleet(h: Harness) -> Row:
    """The leader is frozen (SIGSTOP) just before the fleet changes, so it cannot act on
    the change, then killed (SIGKILL, no Lease release): the standby must lead once the
    Lease expires and plan on the new fleet."""
    import signal  # noqa: PLC0415

    pool = f"fleet-{RUN}"
    h.pool(6, "m4.xlarge", pool)
    namespace = h.namespace("fleet")
    ops = Operators(h, namespace)
    first: subprocess.Popen[bytes] | None = None
    try:
        first, second = ops.leader_and_standby()
        ops.apply(ticketworker(namespace, 8, pool))
        wait(converged(ops, h, 8, pool), 60, "the first plan")
        before = ops.split()
        first.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        h.pool(6, "c8g.xlarge", pool, prefix=f"{pool}-arm")  # Graviton4 joins the pool
        after = planned(h, 8, pool)
        if after == before:
            raise RuntimeError(f"the fleet change does not change the plan ({after})")
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.wait(timeout=30)
        wait(lambda: ops.leads(second), 90, "the standby to lead")
        leads = time.monotonic() - killed
        wait(converged(ops, h, 8, pool), 90, "the plan for the new fleet")
        done = time.monotonic() - killed
        time.sleep(5)  # the new pods are scheduled and bound
        wrong = misplaced(h, namespace)
        recovery = (
            f"standby leads {leads:.1f} s after the kill ({killed - frozen:.1f} s frozen"
            f" before), {before} -> {after} {done:.1f} s after the kill (Lease 15 s)"
        )
        return Row("operator leader killed mid-fleet-change", "6 avx2 nodes + 6 armv9 join",
                   0, 0, wrong, recovery)  # fmt: skip
    finally:
        if first is not None and first.poll() is None:
            first.send_signal(signal.SIGCONT)
        ops.stop()


def _kubectl(kubeconfig: Path) -> list[str]:
    from flox_isa.devcluster.build import bin_dir  # noqa: PLC0415

    return [str(bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig)]


def fuzzed_bodies(count: int, seed: int = 16) -> Iterator[bytes]:
    """AdmissionReview-shaped garbage: valid reviews with fields of the wrong type, deleted,
    deeply nested or huge; byte flips; truncations."""
    rng = random.Random(seed)
    base: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "fuzz", "userInfo": {"username": "x"},
            "object": probe_pod(None),
        },
    }  # fmt: skip
    odd: list[Any] = [
        None,
        0,
        -1,
        1e308,
        "",
        "x" * 10000,
        [],
        {},
        [[[[[]]]]],
        True,
        {"a": {"b": {}}},
    ]
    paths = [
        ("request",), ("request", "uid"), ("request", "object"), ("request", "object", "metadata"),
        ("request", "object", "spec"), ("request", "object", "spec", "containers"),
        ("request", "object", "metadata", "annotations"), ("request", "operation"),
        ("request", "object", "spec", "nodeSelector"), ("request", "object", "spec", "affinity"),
        ("request", "object", "spec", "tolerations"), ("request", "kind"),
    ]  # fmt: skip
    for i in range(count):
        review = copy.deepcopy(base)
        review["request"]["uid"] = f"fuzz-{i}"
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(paths)
            target: Any = review
            for key in path[:-1]:
                target = target.get(key) if isinstance(target, dict) else None
            if isinstance(target, dict):
                if rng.random() < 0.2:
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = copy.deepcopy(rng.choice(odd))
        body = json.dumps(review).encode()
        roll = rng.random()
        if roll < 0.15:
            body = body[: rng.randint(0, len(body))]
        elif roll < 0.3:
            raw = bytearray(body)
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            body = bytes(raw)
        elif roll < 0.35:
            body = b'{"a":' * 5000 + b"1" + b"}" * 5000
        yield body


def fault_fuzz(h: Harness, count: int = 10_000) -> Row:
    import httpx  # noqa: PLC0415

    webhook = new_webhook(h, "fuzz")
    namespace = h.namespace("fuzz")
    pod = probe_pod(None)
    statuses: dict[int, int] = {}
    errors = 0
    try:
        webhook.start()
        name = h.register(webhook, "fuzz")
        effective(h, namespace, pod)
        before = rejections(h.api, name)
        rss_before = webhook.rss_kib()
        with (
            Load(h.core, namespace, h.rate, pod) as load,
            httpx.Client(base_url=webhook.url, verify=webhook.context(), timeout=10) as client,
        ):
            for body in fuzzed_bodies(count):
                try:
                    response = client.post("/mutate", content=body, headers=JSON_HEADERS)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                except httpx.HTTPError:
                    errors += 1
        rss_after = webhook.rss_kib()
        alive = webhook.process is not None and webhook.process.poll() is None
        refused = rejections(h.api, name) - before
        answered = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        recovery = (f"{count} fuzzed: {answered}; transport errors {errors}; alive {alive};"
                    f" RSS {rss_before // 1024} -> {rss_after // 1024} MiB")  # fmt: skip
        return Row("10,000 fuzzed reviews beside real ones", _load(load), refused,
                   load.failed() + statuses.get(500, 0), 0, recovery)  # fmt: skip
    finally:
        h.unregister(f"faults-fuzz-{RUN}")
        webhook.stop()


def relabel(h: Harness, nodes: list[str], workers: int = 16) -> float:
    """Take AVX-512 away from `nodes` at once (an NFD upgrade), `workers` patches in flight;
    the seconds it took."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    started = time.monotonic()
    patch = {"metadata": {"labels": {AVX512: None}}}
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda node: h.core.patch_node(node, patch), nodes))
    return time.monotonic() - started


def answers_follow(load: Load, variant: str) -> Callable[[], bool]:
    def check() -> bool:
        recent = [a for a in load.answers if a.at > time.monotonic() - 1.5 and a.ok]
        return bool(recent) and all(a.variant == variant for a in recent)

    return check


def fresh_inventory(h: Harness) -> tuple[int, int]:
    """(nodes, node groups) of an index built from a fresh list, as the webhook groups them."""
    from flox_isa.isa.fleet_index import index_nodes  # noqa: PLC0415
    from flox_isa.isa.nodes import node_state  # noqa: PLC0415

    index = index_nodes(node_state(n) for n in fresh_nodes(h))
    return index.node_count, len(index.groups)


def operator_nodes(port: int) -> int:
    import urllib.request  # noqa: PLC0415 - only here

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(json.loads(r.read()).get("stats", {}).get("nodes", -1))
    except (OSError, ValueError):
        return -1


def start_both(
    h: Harness,
    webhook: Webhook,
    suffix: str,
    ops: Operators,
    *,
    replicas: int,
    pool: str,
    health_port: int = 0,
) -> tuple[str, subprocess.Popen[bytes]]:
    """The webhook serving `faults-<suffix>-<run>` (its configuration's name) and one operator
    leading, its TicketWorker on `pool` planned; the configuration's name and the leader."""
    webhook.start()
    name = h.register(webhook, suffix)
    effective(h, f"faults-{suffix}-{RUN}", probe_pod(pool))
    leader = ops.start(health_port)
    wait(lambda: ops.leads(leader), 60, "a leader")
    ops.apply(ticketworker(ops.namespace, replicas, pool))
    wait(converged(ops, h, replicas, pool), 120, "the first plan")
    return name, leader


def fault_apiserver(h: Harness) -> Row:
    """The kube-apiserver is stopped and started again (same flags, ports, etcd data) under
    load; right after, the pool's nodes are relabelled and the TicketWorker scaled: only
    watches that came back see either."""
    from flox_isa.devcluster.cluster import ClusterState, restart_component  # noqa: PLC0415

    fault = "kube-apiserver restarted"
    directory = h.kubeconfig.parent
    if ClusterState.load(directory) is None:
        return Row(fault, "-", 0, 0, 0, "skipped: needs the devcluster this script starts")
    pool = f"restart-{RUN}"
    nodes = h.pool(20, "m6i.xlarge", pool)
    webhook = new_webhook(h, "restart")
    namespace = h.namespace("restart")
    pod = probe_pod(pool)
    # A long Lease: the leader rides the restart out, so what recovers is its watches.
    ops = Operators(h, h.namespace("restart-operator"), lease_seconds=120)
    try:
        name, leader = start_both(h, webhook, "restart", ops, replicas=4, pool=pool)
        before = rejections(h.api, name)
        with Load(h.core, namespace, h.rate, pod) as load:
            time.sleep(5)
            refused = rejections(h.api, name) - before
            stopped_at = time.monotonic()
            down = restart_component(directory, "kube-apiserver", log=lambda _line: None)
            up_at = time.monotonic()
            relabel(h, nodes)
            ops.scale("faults", 7)
            relabelled_at = time.monotonic()
            webhook_back = wait(answers_follow(load, "avx2"), 120, "answers to follow") + (
                relabelled_at - up_at
            )
            operator_back = wait(converged(ops, h, 7, pool), 120, "the new plan") + (
                relabelled_at - up_at
            )
            time.sleep(2)
        refused += rejections(h.api, name)  # the API server's counters restarted with it
        during = [a for a in load.answers if stopped_at <= a.at <= up_at]
        failed = sum(not a.ok for a in load.answers if a not in during)
        stale = [a for a in load.answers if a.at > relabelled_at and a.ok and a.variant != "avx2"]
        same = ops.leads(leader)
        recovery = (
            f"API server back in {down:.1f} s ({sum(not a.ok for a in during)} creates failed"
            f" meanwhile, not counted); after it: webhook answers follow a relabel"
            f" {webhook_back:.1f} s, operator plan {operator_back:.1f} s"
            f" (same leader: {same})"
        )
        time.sleep(3)
        return Row(fault, _load(load), refused, failed, len(stale) + misplaced(h, ops.namespace),
                   recovery)  # fmt: skip
    finally:
        h.unregister(f"faults-restart-{RUN}")
        webhook.stop()
        ops.stop()


def fault_relabel_1000(h: Harness, count: int = 1000) -> Row:
    """An NFD upgrade: `count` nodes relabelled at once while the webhook and the operator
    watch them; both inventories must end equal to a fresh list, the operator re-plan."""
    pool = f"nfd-{RUN}"
    t0 = time.monotonic()
    nodes = h.pool(count, "m6i.xlarge", pool)
    created = time.monotonic() - t0
    webhook = new_webhook(h, "nfd")
    namespace = h.namespace("nfd")
    pod = probe_pod(pool)
    ops = Operators(h, h.namespace("nfd-operator"))
    health = free_port()
    try:
        name, _ = start_both(h, webhook, "nfd", ops, replicas=10, pool=pool, health_port=health)
        before = rejections(h.api, name)
        with Load(h.core, namespace, h.rate, pod) as load:
            time.sleep(3)
            patched = relabel(h, nodes)
            relabelled_at = time.monotonic()
            follows = wait(answers_follow(load, "avx2"), 180, "answers to follow")
            fresh = fresh_inventory(h)
            same = wait(lambda: webhook.inventory() == fresh, 120, "the webhook's inventory")
            operator = wait(lambda: operator_nodes(health) == fresh[0], 120, "operator nodes")
            plan = wait(converged(ops, h, 10, pool), 180, "the new plan")
            time.sleep(2)
        refused = rejections(h.api, name) - before
        stale = [a for a in load.answers if a.at > relabelled_at + follows and a.ok
                 and a.variant != "avx2"]  # fmt: skip
        time.sleep(3)
        recovery = (
            f"{count} nodes created in {created:.0f} s, patched in {patched:.1f} s; webhook"
            f" answers follow {follows:.1f} s after the last patch, its inventory equals a fresh"
            f" list ({fresh[0]} nodes, {fresh[1]} groups) {same:.1f} s later, the operator's"
            f" node count {operator:.1f} s, its plan {plan:.1f} s"
        )
        return Row(f"{count} nodes relabelled at once (NFD upgrade)", _load(load), refused,
                   load.failed(), len(stale) + misplaced(h, ops.namespace), recovery)  # fmt: skip
    finally:
        h.unregister(f"faults-nfd-{RUN}")
        webhook.stop()
        ops.stop()


# --- the webhook's rolling restart behind a Service ------------------------------------------

SERVICE_PROCESSES = 3
SHUTDOWN_DELAY = 10.0  # the chart's webhook.shutdownDelaySeconds
PROPAGATION = 1.0  # SIGTERM to "endpoint not ready": the endpoint controller's delay here


@contextlib.contextmanager
def own_addresses(count: int) -> Iterator[list[str]]:
    """`count` addresses of this run's own: on the host end of a veth pair into a network
    namespace it creates and removes. EndpointSlices refuse loopback addresses; these are
    in 198.18.0.0/15, kept for benchmarks (RFC 2544), so never another host's."""
    netns, host, peer = f"fxi-{RUN}", f"fxh{RUN}", f"fxn{RUN}"
    taken = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    octet = next(o for o in random.sample(range(256), 256) if f"198.18.{o}." not in taken)
    addresses = [f"198.18.{octet}.{10 + i}" for i in range(count)]

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", netns)
    try:
        ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", netns)
        for address in addresses:
            ip("addr", "add", f"{address}/32", "dev", host)
        ip("link", "set", host, "up")
        ip("-n", netns, "link", "set", peer, "up")
        yield addresses
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def chart_registration(namespace: str, ca_pem: bytes, scope: str) -> dict[str, Any]:
    """The chart's own MutatingWebhookConfiguration (the Service form), confined to `scope`."""
    import base64  # noqa: PLC0415 - only here

    from flox_isa.devcluster.build import find_helm  # noqa: PLC0415

    rendered = subprocess.run(
        [find_helm(), "template", "flox-isa", str(ROOT / "charts" / "flox-isa"),
         "--namespace", namespace],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    config: dict[str, Any] = next(
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "MutatingWebhookConfiguration"
    )
    config["metadata"] = {"name": f"faults-service-{RUN}"}
    for hook in config["webhooks"]:
        hook["name"] = f"{config['metadata']['name']}.{hook['name']}"  # `rejections` reads it
        hook["clientConfig"]["caBundle"] = base64.b64encode(ca_pem).decode()
        selector = hook.setdefault("namespaceSelector", {})
        selector.setdefault("matchExpressions", []).append(
            {"key": RUN_LABEL, "operator": "In", "values": [scope]}
        )
    return config


def endpoint_slice(service: str, port: int, ready: dict[str, bool]) -> dict[str, Any]:
    """What the endpoint controller would publish for the webhook pods, as the harness says."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-faults", "labels": {
            "kubernetes.io/service-name": service,
            "endpointslice.kubernetes.io/managed-by": "faults.flox.dev"}},
        "addressType": "IPv4",
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [address],
             "conditions": {"ready": up, "serving": True, "terminating": not up}}
            for address, up in ready.items()
        ],
    }  # fmt: skip


def fault_service(h: Harness) -> Row:
    from kubernetes import client  # noqa: PLC0415

    discovery: Any = client.DiscoveryV1Api(h.api)
    service_ns = f"faults-svcns-{RUN}"
    h.core.create_namespace({"metadata": {"name": service_ns}})
    h.made.append(("namespace", service_ns))
    namespace = h.namespace("service")
    ca = make_ca("faults-service-ca")
    config = chart_registration(service_ns, ca.cert_pem, f"service-{RUN}")
    target = config["webhooks"][0]["clientConfig"]["service"]
    service, port = target["name"], free_port()
    dns = (f"{service}.{service_ns}.svc",)
    with own_addresses(SERVICE_PROCESSES) as addresses:
        hooks = []
        for index, address in enumerate(addresses):
            directory = h.directory / f"service-{index}"
            directory.mkdir(parents=True)
            hooks.append(Webhook(directory, h.kubeconfig, ca, port, host=address,
                                 dns_names=dns, shutdown_delay=SHUTDOWN_DELAY))  # fmt: skip
        try:
            for hook in hooks:
                hook.start()
            h.core.create_namespaced_service(service_ns, {
                "metadata": {"name": service},
                "spec": {"ports": [{"name": "https", "port": target.get("port", 443),
                                    "targetPort": port, "protocol": "TCP"}]}})  # fmt: skip
            ready = dict.fromkeys(addresses, True)
            discovery.create_namespaced_endpoint_slice(
                service_ns, endpoint_slice(service, port, ready)
            )
            h.registrations.create_mutating_webhook_configuration(config)
            h.made.append(("webhook", config["metadata"]["name"]))
            pod = probe_pod(None)
            effective(h, namespace, pod)
            before = rejections(h.api, config["metadata"]["name"])
            started = time.monotonic()
            with Load(h.core, namespace, h.rate, pod) as load:
                time.sleep(5)
                for hook in hooks:  # the rollout, one process at a time (maxUnavailable 1)
                    assert hook.process is not None
                    hook.process.terminate()
                    time.sleep(PROPAGATION)
                    ready[hook.host] = False
                    discovery.replace_namespaced_endpoint_slice(
                        f"{service}-faults", service_ns, endpoint_slice(service, port, ready)
                    )
                    hook.process.wait(timeout=SHUTDOWN_DELAY + 30)
                    hook.start()
                    ready[hook.host] = True
                    discovery.replace_namespaced_endpoint_slice(
                        f"{service}-faults", service_ns, endpoint_slice(service, port, ready)
                    )
                    time.sleep(3)
                took = time.monotonic() - started
                time.sleep(5)
            refused = rejections(h.api, config["metadata"]["name"]) - before
            wrong = sum(1 for a in load.answers if a.ok and not a.variant)
            return Row(
                f"webhook rolling restart behind a Service ({SERVICE_PROCESSES} processes,"
                " EndpointSlices)", _load(load), refused, load.failed(), wrong,
                f"{SERVICE_PROCESSES} restarts in {took:.0f} s (shutdownDelay"
                f" {SHUTDOWN_DELAY:.0f} s, endpoint not ready {PROPAGATION:.0f} s after SIGTERM)",
            )  # fmt: skip
        finally:
            h.unregister(config["metadata"]["name"])
            for hook in hooks:
                hook.stop()


FAULTS: dict[str, Callable[[Harness], Row]] = {
    "service": fault_service,
    "stall": fault_stall, "cert": fault_cert, "operator": fault_operator,
    "leader-fleet": fault_leader_fleet, "apiserver": fault_apiserver, "fuzz": fault_fuzz,
    "relabel1000": fault_relabel_1000,
}  # fmt: skip


def print_table(rows: list[Row]) -> None:
    headers = ("fault", "load", "refused", "failed", "wrong", "recovery")
    cells = [
        (r.fault, r.load, str(r.refused), str(r.failed), str(r.wrong), r.recovery) for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:-1])]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  recovery")
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=False)) + "  " + c[-1])
    print(
        "refused: the API server's calling_webhook_error rejections; failed: the load's failed"
        " creates (and, for fuzz, HTTP 500s); wrong: answers contradicting the fleet, and"
        " operator pods on nodes that lack their variant's instructions."
    )


@contextlib.contextmanager
def cluster_kubeconfig(explicit: str | None) -> Iterator[Path]:
    if explicit:
        yield Path(explicit)
        return
    from flox_isa.devcluster.cluster import temporary  # noqa: PLC0415

    with temporary() as kubeconfig:
        yield kubeconfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=10.0, help="pod creates per second")
    parser.add_argument("--only", default=",".join(FAULTS), help="comma-separated faults")
    parser.add_argument("--kubeconfig", help="an existing cluster (default: start a devcluster)")
    args = parser.parse_args(argv)
    wanted = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(wanted) - set(FAULTS))
    if unknown:
        parser.error(f"--only: unknown fault(s) {', '.join(unknown)}; allowed: {', '.join(FAULTS)}")
    from kubernetes import client  # noqa: PLC0415

    from flox_isa.kube.config import api_client  # noqa: PLC0415

    rows = []
    with (
        cluster_kubeconfig(args.kubeconfig) as kubeconfig,
        tempfile.TemporaryDirectory() as tmp,
        api_client(str(kubeconfig)) as api,
    ):
        harness = Harness(kubeconfig, api, client.CoreV1Api(api),
                          client.AdmissionregistrationV1Api(api), Path(tmp), args.rate)  # fmt: skip
        try:
            for name in wanted:
                print(f"==> {name}", flush=True)
                rows.append(FAULTS[name](harness))
                print_table(rows[-1:])
        finally:
            harness.cleanup()
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

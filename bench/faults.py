"""Fault suite (issue 16). Not a test: starts a devcluster, injects faults under load, prints
a table. Each fault runs while a load generator creates opted-in pods (dry runs: the API
server's full admission chain, nothing stored) at a steady rate.

    python bench/faults.py [--rate 10] [--only stall,cert,operator,fuzz] [--kubeconfig FILE]

Refusals are the API server's own count, apiserver_admission_webhook_rejection_count
{error_type="calling_webhook_error"} for this run's webhook configuration (the webhook's
failures, not the API server's), plus the load's failed creates. "Wrong" counts
answers that contradict the fleet at the time they were given.

Cases:
- stall: the webhook reaches the API server through a local TCP proxy that black-holes
  every byte for 60 s (connections stay open) while 100 nodes are relabelled (AVX-512 taken
  away): answers on the stale inventory, time until the webhook notices (its "watch
  stalled" log line), time until its answers follow the fleet again.
- cert: the serving certificate is replaced by a new leaf of the same CA mid-load.
- operator: two `flox-isa operator` replicas; the leader gets SIGTERM right after a scale
  of its TicketWorker: time to exit, time until the standby holds the Lease, time until
  the Deployments match the new replica count.
- fuzz: 10,000 fuzzed AdmissionReviews posted straight to the webhook while the load runs:
  HTTP 500s, crashes, RSS before and after.

Not covered here (see the issue-16 report): the rolling restart behind a Service
(aggregator routing, network namespaces), a kube-apiserver restart, 1,000 nodes
relabelled at once.
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

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "webhook.log"

    def write_leaf(self) -> None:
        leaf = issue(self.ca, "flox-isa-webhook", ip_addresses=("127.0.0.1",), server=True)
        # Key first, then the certificate: the webhook only swaps in a pair that matches.
        (self.directory / "tls.key").write_bytes(leaf.key_pem)
        (self.directory / "tls.crt").write_bytes(leaf.cert_pem)

    def start(self) -> None:
        self.write_leaf()
        argv = [
            sys.executable, "-m", "flox_isa.cli", "webhook", "--host", "127.0.0.1",
            "--port", str(self.port), "--tls-cert", str(self.directory / "tls.crt"),
            "--tls-key", str(self.directory / "tls.key"), "--kubeconfig", str(self.kubeconfig),
            "--shutdown-delay", "0", "--no-late-binding",
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

    def pool(self, size: int, instance_type: str, pool: str) -> list[str]:
        template = next(
            n for n in fleets.node_manifests(fleets.load_fleet(None))
            if n["metadata"]["labels"][names.INSTANCE_TYPE_LABEL] == instance_type
        )  # fmt: skip
        from flox_isa.devcluster.nodes import create_nodes, wait_nodes_ready  # noqa: PLC0415

        manifests = []
        for i in range(size):
            node = copy.deepcopy(template)
            name = f"{pool}-{i}"
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


def fault_operator(h: Harness) -> Row:
    from flox_isa.operator.crd import crd_yaml  # noqa: PLC0415

    namespace = h.namespace("operator")
    kubectl = _kubectl(h.kubeconfig)
    subprocess.run([*kubectl, "apply", "-f", "-"], input=crd_yaml(), text=True, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*kubectl, "wait", "--for=condition=Established",
                    "crd/ticketworkers.isa.flox.dev"], check=True, capture_output=True)  # fmt: skip
    logs = h.directory / "operators"
    logs.mkdir()

    def start(index: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "flox_isa.cli", "operator", "--kubeconfig", str(h.kubeconfig),
                "--namespace", namespace, "--lease-namespace", namespace, "--lease-name", "faults",
                "--health-port", "0"]  # fmt: skip
        with (logs / f"operator-{index}.log").open("wb") as sink:
            return subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)

    def holder() -> str:
        with contextlib.suppress(Exception):
            lease = h.api.call_api(*h.api.param_serialize(
                method="GET", auth_settings=["BearerToken"],
                resource_path=f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/faults",
            ))  # fmt: skip
            lease.read()
            return str((json.loads(lease.data).get("spec") or {}).get("holderIdentity") or "")
        return ""

    def replicas() -> int:
        out = subprocess.run([*kubectl, "get", "deployments", "-n", namespace, "-o", "json"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return sum(int(d["spec"].get("replicas") or 0) for d in json.loads(out)["items"])

    tw = {"apiVersion": "isa.flox.dev/v1alpha1", "kind": "TicketWorker",
          "metadata": {"name": "faults", "namespace": namespace},
          "spec": {"environment": ENV, "workload": "int8-inference", "replicas": 4}}  # fmt: skip
    first = start(0)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait(lambda: f"-{first.pid}-" in holder(), 60, "a leader")
        second = start(1)
        subprocess.run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(tw), text=True,
                       check=True, capture_output=True)  # fmt: skip
        wait(lambda: replicas() == 4, 60, "4 replicas")
        subprocess.run([*kubectl, "scale", "tw/faults", "-n", namespace, "--replicas=9"],
                       check=True, capture_output=True)  # fmt: skip
        signalled = time.monotonic()
        first.send_signal(15)
        code = first.wait(timeout=60)
        exited = time.monotonic() - signalled
        standby_pid = second.pid
        wait(lambda: f"-{standby_pid}-" in holder(), 60, "the standby to lead")
        leads = time.monotonic() - signalled
        wait(lambda: replicas() == 9, 60, "9 replicas")
        converged = time.monotonic() - signalled
        recovery = (f"exit {exited:.1f} s (code {code}), standby leads {leads:.1f} s,"
                    f" scale done {converged:.1f} s after SIGTERM (Lease 15 s)")  # fmt: skip
        return Row("operator leader SIGTERM mid-scale", "TicketWorker 4 -> 9 replicas", 0,
                   0, 0, recovery)  # fmt: skip
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


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


FAULTS: dict[str, Callable[[Harness], Row]] = {
    "stall": fault_stall, "cert": fault_cert, "operator": fault_operator, "fuzz": fault_fuzz,
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
        " creates (and, for fuzz, HTTP 500s); wrong: answers contradicting the fleet."
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

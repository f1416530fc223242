"""Pod creates through the real kube-apiserver: no webhook, bare webhooks (the floor), ours."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flox_isa.isa import names
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.registration import (
    NAMESPACE_OPT_IN_PATH,
    NAMESPACE_OPT_IN_WEBHOOK,
    webhook_configuration,
)
from webhookbench.servers import ENTRY, free_port, wait_listening
from webhookbench.streams import ENV, realistic_pod


def apiserver_benchmark(kubeconfig: Path, count: int) -> None:
    """Pod creates through kube-apiserver: no webhook, bare webhooks (the floor), ours."""
    from kubernetes import client  # noqa: PLC0415 - only with --kubeconfig

    from flox_isa.kube.config import api_client  # noqa: PLC0415 - only with --kubeconfig

    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp, api_client(str(kubeconfig)) as api:
        core: Any = client.CoreV1Api(api)  # dict bodies: the client's models are not needed
        registrations: Any = client.AdmissionregistrationV1Api(api)
        certs = write_serving_certs(Path(tmp))
        patch = Path(tmp) / "patch.b64"
        hooks = _webhook_servers(kubeconfig, certs.cert_path, certs.key_path, Path(tmp), patch)
        plain = f"bench-plain-{run}"
        sides = {f"bench-{key}-{run}": hook for key, hook in hooks.items()}
        logs = {side: Path(tmp) / f"{side}.log" for side in sides}
        # Ours first: the floors answer the patch ours answers for the bench pod, so the
        # API server applies the same patch on every side.
        ours, *floors = sides
        servers = [subprocess.Popen(sides[ours].argv, stderr=logs[ours].open("wb"))]
        _started(sides[ours], logs[ours])
        patch.write_text(_answered_patch(sides[ours].port, certs.ca_path, ours))
        servers += [subprocess.Popen(sides[s].argv, stderr=logs[s].open("wb")) for s in floors]
        for name in (plain, *sides):
            labels = {"bench.flox.dev/run": run}
            if name != plain:
                labels[names.INJECT_LABEL] = "true"
                labels["bench.flox.dev/webhook"] = name
            core.create_namespace({"metadata": {"name": name, "labels": labels}})
        configs = {side: f"flox-isa-bench-{side}" for side in sides}
        registered: list[str] = []
        try:
            for side, config in configs.items():
                _started(sides[side], logs[side])
                registrations.create_mutating_webhook_configuration(
                    _bench_webhook(config, side, sides[side].port, certs.ca_pem)
                )
                registered.append(config)
            time.sleep(2)  # ours: the first node list
            for side in configs:
                _wait_effective(core, side)
            calls_before = _webhook_calls(api)
            timings = _interleaved_creates(core, (plain, *sides), count)
            calls_after = _webhook_calls(api)
        finally:
            for config in registered:
                registrations.delete_mutating_webhook_configuration(config)
            for server in servers:
                server.terminate()
                server.wait(timeout=20)
            for name in (plain, *sides):
                core.delete_namespace(name)
    _report(timings, plain, sides, calls_before, calls_after, count)


def _report(  # noqa: PLR0917 - the measurements of one run
    timings: dict[str, list[float]],
    plain: str,
    sides: dict[str, WebhookServer],
    calls_before: dict[str, tuple[float, float]],
    calls_after: dict[str, tuple[float, float]],
    count: int,
) -> None:
    medians = {ns: statistics.median(t) * 1000 for ns, t in timings.items()}
    p99 = {ns: sorted(t)[int(len(t) * 0.99)] * 1000 for ns, t in timings.items()}
    print(f"pod create through kube-apiserver ({count} each, interleaved, sequential;"
          " the API server's own mean time per webhook call in brackets):")  # fmt: skip
    print(f"  {'no webhook':30} p50 {medians[plain]:6.2f} ms   p99 {p99[plain]:6.2f} ms")
    for side, hook in sides.items():
        total = calls_after.get(side, (0.0, 0.0))[0] - calls_before.get(side, (0.0, 0.0))[0]
        calls = calls_after.get(side, (0.0, 0.0))[1] - calls_before.get(side, (0.0, 0.0))[1]
        call = f"[call {total / calls * 1000:.2f} ms]" if calls else ""
        added = medians[side] - medians[plain]
        print(f"  {hook.label:30} p50 {medians[side]:6.2f} ms   p99 {p99[side]:6.2f} ms"
              f"   added {added:+6.2f} ms {call}")  # fmt: skip
    ours = next(side for side, hook in sides.items() if hook.label.startswith("ours"))
    over = {hook.label: medians[ours] - medians[side] for side, hook in sides.items()
            if side != ours}  # fmt: skip
    print(
        f"  ours added {medians[ours] - medians[plain]:+.2f} ms at the median; over "
        + ", ".join(f"{label} {ms:+.2f} ms" for label, ms in over.items())
        + " (target over the bare Go one: <= +0.5 ms)"
    )


def _started(server: WebhookServer, log: Path) -> None:
    try:
        wait_listening(server.port)
    except RuntimeError:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{server.label} did not start:\n{tail}") from None


def _answered_patch(port: int, ca: Path, namespace: str) -> str:
    """The base64 JSONPatch ours answers for the bench pod in `namespace` (once it has
    listed the nodes: until then it answers 503)."""
    pod = {**_bench_pod("probe"), "apiVersion": "v1", "kind": "Pod"}
    review = json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "probe", "operation": "CREATE", "namespace": namespace,
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "object": pod},
    })  # fmt: skip
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 60
    while True:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        connection.request("POST", NAMESPACE_OPT_IN_PATH, review,
                           {"Content-Type": "application/json"})  # fmt: skip
        reply = connection.getresponse()
        body = json.loads(reply.read())
        connection.close()
        patch = (body.get("response") or {}).get("patch")
        if reply.status == 200 and patch:
            return str(patch)
        if time.monotonic() > deadline:
            raise RuntimeError(f"ours gave no patch for the bench pod: {reply.status} {body}")
        time.sleep(0.5)


@dataclass(frozen=True)
class WebhookServer:
    label: str
    port: int
    argv: list[str]


def _webhook_servers(
    kubeconfig: Path, cert: Path, key: Path, tmp: Path, patch: Path
) -> dict[str, WebhookServer]:
    """Ours, the bare ASGI app on the same uvicorn, and a bare Go net/http one (if Go is
    here); the bare ones answer the patch in `patch` (written once ours runs)."""
    ours, bare, go = free_port(), free_port(), free_port()
    servers = {
        "hook": WebhookServer("ours (flox-isa webhook)", ours, [
            sys.executable, "-m", "flox_isa.cli", "webhook", "--host", "127.0.0.1",
            "--port", str(ours), "--tls-cert", str(cert), "--tls-key", str(key),
            "--kubeconfig", str(kubeconfig),  # logs as shipped: a line per decision
            "--no-late-binding"]),  # no placement controller here: it pins at admission
        "floor": WebhookServer("bare ASGI on uvicorn", bare, [
            sys.executable, str(ENTRY), "--serve", "bare", "--port", str(bare),
            "--cert", str(cert), "--key", str(key), "--patch-file", str(patch)]),
    }  # fmt: skip
    binary = tmp / "floorhook"
    source = ENTRY.parent / "floorhook"
    if (
        shutil.which("go")
        and subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=source, check=False
        ).returncode
        == 0
    ):
        argv = [str(binary), "-addr", f"127.0.0.1:{go}", "-cert", str(cert), "-key", str(key),
                "-patch-file", str(patch)]  # fmt: skip
        servers["gofloor"] = WebhookServer("bare Go net/http", go, argv)
    return servers


def _webhook_calls(api: Any) -> dict[str, tuple[float, float]]:
    """Per bench configuration: (sum of seconds, count) the API server spent calling it."""
    params = api.param_serialize(
        method="GET", resource_path="/metrics", auth_settings=["BearerToken"]
    )
    response = api.call_api(*params)
    response.read()
    found: dict[str, tuple[float, float]] = {}
    pattern = re.compile(
        r"^apiserver_admission_webhook_admission_duration_seconds_(sum|count)\{.*"
        r'name="([^"]+)\.'
        + re.escape(NAMESPACE_OPT_IN_WEBHOOK)
        + r'".*operation="CREATE".*\} (\S+)$'
    )
    for line in response.data.decode().splitlines():
        match = pattern.match(line)
        if match:
            kind, side, value = match.groups()
            total, count = found.get(side, (0.0, 0.0))
            found[side] = (
                (total + float(value), count) if kind == "sum" else (total, count + float(value))
            )
    return found


def _bench_webhook(name: str, side: str, port: int, ca_pem: bytes) -> dict[str, Any]:
    """The chart's two entries for namespace `side` only (its pods opt in by namespace).

    Entry names are prefixed with `side`, so the API server's metrics tell the two apart.
    """
    config = webhook_configuration(
        name, f"https://127.0.0.1:{port}", ca_pem,
        namespace_labels={"bench.flox.dev/webhook": side},
    )  # fmt: skip
    for hook in config["webhooks"]:
        hook["name"] = f"{side}.{hook['name']}"
    return config


def _bench_pod(name: str) -> dict[str, Any]:
    pod = realistic_pod()
    pod["metadata"] = {
        "name": name,
        "labels": {"app": "bench"},
        "annotations": {names.ENVIRONMENT_ANNOTATION: ENV},
    }
    pod["spec"]["nodeSelector"] = {"bench.flox.dev/pool": "none"}  # stays Pending: no scheduling
    pod["spec"]["volumes"] = [{"name": "cache", "emptyDir": {}}]
    for container in pod["spec"]["containers"]:
        container["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    del pod["status"]
    return pod


def _wait_effective(core: Any, namespace: str) -> None:
    """Until a dry-run create comes back patched (either webhook adds a label)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = core.create_namespaced_pod(namespace, _bench_pod("probe"), dry_run="All")
        if set(answer.metadata.labels or {}) - set(_bench_pod("probe")["metadata"]["labels"]):
            return
        time.sleep(0.3)
    raise RuntimeError("the webhook configuration did not take effect")


def _interleaved_creates(
    core: Any, namespaces: tuple[str, ...], count: int
) -> dict[str, list[float]]:
    """`count` creates per namespace, taking turns (a rotating order), after 20 warm-ups each."""
    timings: dict[str, list[float]] = {ns: [] for ns in namespaces}
    for i in range(count + 20):
        turn = i % len(namespaces)
        for ns in namespaces[turn:] + namespaces[:turn]:
            started = time.perf_counter()
            core.create_namespaced_pod(ns, _bench_pod(f"p{i}"), _preload_content=False)
            if i >= 20:
                timings[ns].append(time.perf_counter() - started)
    return timings

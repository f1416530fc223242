"""Run the demo: control plane, operator, webhook, two workloads, a throughput report."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from flox_isa.demo import scenario
from flox_isa.devcluster import cluster, processes
from flox_isa.devcluster.cluster import free_ports
from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog
from flox_isa.isa.inputs import parse_workload
from flox_isa.isa.nodes import node_state
from flox_isa.isa.planning import ThroughputPlan, group_eligible, plan_throughput
from flox_isa.isa.report import DEFAULT_BASELINES, ReportRow, sized_line
from flox_isa.isa.threads import container_cpu
from flox_isa.isa.throughput import per_replica, replica_cpus
from flox_isa.kube.config import api_client
from flox_isa.operator.crd import crd
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.commands import cluster_report
from flox_isa.webhook.registration import webhook_configuration
from flox_isa.webhook.report import render_text

Log = Callable[[str], None]
WEBHOOK_CONFIGURATION = "flox-isa-demo"
STATE_FILE = "demo.json"
TLS_DIR = "webhook-tls"
WEBHOOK_NAMESPACE = "flox-isa-system"  # the webhook never touches pods here
LEASE_NAMESPACE = "default"  # the placement controller's Lease, which the webhook reads


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where its log is."""


@dataclass(frozen=True, slots=True)
class Options:
    directory: Path
    fleet: str = "mixed"
    once: bool = False
    timeout: float = 180.0


def run(options: Options, catalog: Catalog, log: Log = print) -> list[ReportRow]:
    """The whole flow; leaves everything running unless `options.once`."""
    directory = options.directory.resolve()
    step = _Steps(log, total=6)
    step("starting the local control plane with the fleet " + repr(options.fleet))
    state = _cluster_up(directory, options.fleet, log)
    kubeconfig = state.kubeconfig
    try:
        with api_client(str(kubeconfig)) as api:
            step("installing the TicketWorker CRD and the demo namespace")
            _install_basics(api)
            step("starting the operator and the webhook (TLS, registered with the API server)")
            _start_components(directory, kubeconfig, api, log)
            step("applying the TicketWorker (int8 embeddings) and the summarizer Deployment")
            _apply(api, scenario.ticketworker())
            # Its pods are pinned by their Deployments, not gated: the placement controller
            # counts them once they are bound, so the summarizer comes once they run.
            _wait_running(api, options.timeout, log, scenario.ticketworker()["spec"]["replicas"])
            _apply(api, scenario.summarizer())
            step("waiting for every pod to be Running")
            expected = sum(
                w["spec"]["replicas"] for w in (scenario.ticketworker(), scenario.summarizer())
            )
            pods = _wait_running(api, options.timeout, log, expected)
            step("what happened")
            # The same code as `flox-isa report -n flox-demo` (kubectl flox-isa report).
            report = cluster_report(
                str(kubeconfig), None, scenario.NAMESPACE, catalog, DEFAULT_BASELINES
            )
            for line in render_text(report):
                log(line)
            log("Sized by throughput instead (spec.throughput), on this fleet: "
                + sized_line(_sized(api, catalog, scenario.THROUGHPUT_TARGET)))  # fmt: skip
            rows = report.rows
            print_spills(spills(pods), log)
    except BaseException:
        if options.once:
            down(directory, log)
        raise
    if options.once:
        down(directory, log)
    else:
        log(f"The cluster keeps running. Point kubectl at it:\n  export KUBECONFIG={kubeconfig}")
        log(f"  kubectl -n {scenario.NAMESPACE} get tw,deploy,pods -o wide")
        log(f"  kubectl flox-isa report -n {scenario.NAMESPACE}  # this report, again")
        log("Stop everything with: make demo-down")
    return rows


def down(directory: Path, log: Log = print) -> None:
    """Stop the operator and webhook this demo started, then the control plane."""
    directory = directory.resolve()
    for record in _load_records(directory):
        if processes.stop(record):
            log(f"stopped {record.name} (pid {record.pid})")
    (directory / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory / TLS_DIR, ignore_errors=True)
    cluster.down(directory, log=log)


class _Steps:
    def __init__(self, log: Log, total: int) -> None:
        self.log, self.total, self.done, self.started = log, total, 0, time.monotonic()

    def __call__(self, what: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        self.log(f"==> [{self.done}/{self.total}] {what} (t+{elapsed:.0f}s)")


def _cluster_up(directory: Path, fleet: str, log: Log) -> cluster.ClusterState:
    try:
        return cluster.up(directory, fleet, log=log)
    except cluster.AlreadyRunningError as running:
        raise DemoError(
            f"a demo cluster is already running in {directory}; stop it first with `make demo-down`"
        ) from running


def _install_basics(api: client.ApiClient) -> None:
    _apply(api, crd())
    _wait(
        "the TicketWorker CRD to be established",
        lambda: _crd_established(api),
        timeout=30,
    )
    _apply(api, scenario.namespace())


def _crd_established(api: client.ApiClient) -> bool:
    name = crd()["metadata"]["name"]
    extensions: Any = client.ApiextensionsV1Api(api)
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _start_components(directory: Path, kubeconfig: Path, api: client.ApiClient, log: Log) -> None:
    certs = write_serving_certs(directory / TLS_DIR)
    webhook_port, health_port = free_ports(2)
    flox_isa = (sys.executable, "-m", "flox_isa")
    webhook = _spawn(
        directory,
        "webhook",
        (*flox_isa, "webhook", "--host", "127.0.0.1", "--port", str(webhook_port),
         "--tls-cert", str(certs.cert_path), "--tls-key", str(certs.key_path),
         "--kubeconfig", str(kubeconfig), "--namespace", WEBHOOK_NAMESPACE,
         "--placement-lease-namespace", LEASE_NAMESPACE),
    )  # fmt: skip
    operator = _spawn(
        directory,
        "operator",
        (*flox_isa, "operator", "--kubeconfig", str(kubeconfig),
         "--health-port", str(health_port), "--no-leader-election",
         "--lease-namespace", LEASE_NAMESPACE),
    )  # fmt: skip
    _save_records(directory, [webhook, operator])
    _wait_https_ready(f"https://127.0.0.1:{webhook_port}/readyz", certs.ca_path, webhook)
    _wait_https_ready(
        f"https://127.0.0.1:{webhook_port}/metrics",
        certs.ca_path,
        webhook,
        what="the webhook to see the placement controller (late binding)",
        body_has=b"flox_isa_webhook_late_binding 1.0",
    )
    configuration = webhook_configuration(
        WEBHOOK_CONFIGURATION,
        f"https://127.0.0.1:{webhook_port}",
        certs.ca_pem,
        own_namespace=WEBHOOK_NAMESPACE,
    )
    _apply(api, configuration, replace=True)
    log(f"webhook on https://127.0.0.1:{webhook_port} (log {webhook.log})")
    log(f"operator running (log {operator.log})")


def _spawn(directory: Path, name: str, argv: tuple[str, ...]) -> processes.ProcessRecord:
    record, _ = processes.spawn(name, argv, directory / f"{name}.log", directory, "")
    return record


def _wait_https_ready(
    url: str,
    ca: Path,
    record: processes.ProcessRecord,
    *,
    what: str = "",
    body_has: bytes = b"",
) -> None:
    """Until `url` answers 200 (and its body holds `body_has`); fails if `record` exits."""
    import ssl  # noqa: PLC0415 - only needed here
    import urllib.request  # noqa: PLC0415 - only needed here

    context = ssl.create_default_context(cafile=str(ca))

    def ready() -> bool:
        if not processes.is_alive(record):
            raise DemoError(f"{record.name} exited; its log:\n{_tail(Path(record.log))}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                return bool(response.status == 200) and body_has in response.read()
        except OSError:
            return False

    _wait(what or f"{record.name} to be ready", ready, timeout=60)


def _apply(api: client.ApiClient, obj: dict[str, Any], replace: bool = False) -> None:
    """Create `obj`; if it exists, keep it (or replace it, for configurations we own)."""
    kind = obj["kind"]
    if kind == "TicketWorker":
        group, version = obj["apiVersion"].split("/")
        custom: Any = client.CustomObjectsApi(api)
        try:
            custom.create_namespaced_custom_object(
                group, version, obj["metadata"]["namespace"], "ticketworkers", obj
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        return
    try:
        create_from_dict: Any = utils.create_from_dict  # untyped in the kubernetes package
        create_from_dict(api, obj)
    except utils.FailToCreateError as exc:
        if not all(e.status == 409 for e in exc.api_exceptions):
            raise
        if replace and kind == "MutatingWebhookConfiguration":
            admission: Any = client.AdmissionregistrationV1Api(api)
            current = admission.read_mutating_webhook_configuration(obj["metadata"]["name"])
            obj["metadata"]["resourceVersion"] = current.metadata.resource_version
            admission.replace_mutating_webhook_configuration(obj["metadata"]["name"], obj)


def _wait_running(api: client.ApiClient, timeout: float, log: Log, expected: int) -> list[Any]:
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    last = ""

    def all_running() -> list[Any] | None:
        nonlocal last
        pods = core.list_namespaced_pod(scenario.NAMESPACE).items
        running = [
            p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]
        progress = f"{len(running)}/{expected} pods Running"
        if progress != last:
            log("    " + progress)
            last = progress
        return running if len(running) >= expected else None

    try:
        pods: list[Any] = _wait("the demo pods to be Running", all_running, timeout)
        return pods
    except DemoError:
        tw = custom.get_namespaced_custom_object(
            names.GROUP, "v1alpha1", scenario.NAMESPACE, "ticketworkers", scenario.TICKETWORKER
        )
        log("TicketWorker status: " + json.dumps(tw.get("status", {}), indent=2))
        raise


def _sized(api: client.ApiClient, catalog: Catalog, target: float) -> ThroughputPlan:
    """The fewest replicas of the demo's TicketWorker reaching `target`, as the operator
    plans them for `spec.throughput` (the same pure functions), on the cluster's nodes."""
    core: Any = client.CoreV1Api(api)
    nodes = [node_state(api.sanitize_for_serialization(n)) for n in core.list_node().items]  # type: ignore[no-untyped-call]
    spec = scenario.ticketworker()["spec"]
    pod_spec, workload = spec["template"]["spec"], parse_workload(spec["workload"])
    cpus = replica_cpus([container_cpu(c) for c in pod_spec["containers"]])
    return plan_throughput(
        catalog,
        group_eligible(nodes, pod_spec),
        workload=workload,
        target=target,
        replica_cpus=cpus,
        tickets_of=lambda v: per_replica(v, workload, cpus).tickets or 0.0,
    )


@dataclass(frozen=True, slots=True)
class Spill:
    """Pods of one workload the placement controller could not give their best variant."""

    app: str
    variant: str
    spilled_from: str
    pods: int
    reason: str


def spills(pods: list[Any]) -> list[Spill]:
    counts: dict[tuple[str, str, str], tuple[int, str]] = {}
    for pod in pods:
        annotations = pod.metadata.annotations or {}
        spilled = annotations.get(names.SPILLED_FROM_ANNOTATION)
        if not spilled:
            continue
        app = (pod.metadata.labels or {}).get("app") or pod.metadata.generate_name or "?"
        key = (app, (pod.metadata.labels or {}).get(names.VARIANT_LABEL, "?"), spilled)
        count, _ = counts.get(key, (0, ""))
        counts[key] = (count + 1, annotations.get(names.REASON_ANNOTATION, ""))
    return [Spill(*key, count, reason) for key, (count, reason) in sorted(counts.items())]


def print_spills(found: list[Spill], log: Log = print) -> None:
    if not found:
        log("No spill: every gated pod got its best variant.")
        return
    for spill in found:
        log(
            f"Spilled: {spill.pods} {spill.app} pods to {spill.variant}, no room on"
            f" {spill.spilled_from}"
        )
        log(f"  reason: {spill.reason}")


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _save_records(directory: Path, records: list[processes.ProcessRecord]) -> None:
    (directory / STATE_FILE).write_text(json.dumps([asdict(r) for r in records], indent=2))


def _load_records(directory: Path) -> list[processes.ProcessRecord]:
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [processes.ProcessRecord(**item) for item in data]

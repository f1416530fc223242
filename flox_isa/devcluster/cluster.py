"""`up`, `down` and `status` of the local control plane, with its state in one directory.

DIR holds: state.json (pids, ports), kubeconfig (admin), pki/, etcd/, and one log per
component. Processes are found again by pid plus start time, never by name.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from flox_isa.devcluster import components, nodes, pki, processes
from flox_isa.devcluster import fleet as fleets
from flox_isa.devcluster.build import ensure_binaries
from flox_isa.devcluster.components import Component, Ports
from flox_isa.devcluster.processes import ProcessRecord
from flox_isa.devcluster.versions import Versions, load_versions
from flox_isa.kube.config import api_client

STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
DEFAULT_DIR = Path(".devcluster")
# How long each component may take to answer healthy (a cold kube-apiserver on 2 busy cores
# needs tens of seconds: it installs every built-in API and the RBAC bootstrap policy).
HEALTH_TIMEOUTS = {"etcd": 30.0, "kube-apiserver": 120.0}
DEFAULT_HEALTH_TIMEOUT = 60.0
PORT_RETRIES = 2

Log = Callable[[str], None]


class DevclusterError(RuntimeError):
    """The cluster could not be started or inspected; the message says which part and why."""


class FleetInputError(DevclusterError):
    """The fleet file is malformed: nothing was started (the CLI exits 2)."""


class AlreadyRunningError(DevclusterError):
    def __init__(self, state: ClusterState) -> None:
        super().__init__(f"a devcluster is already running in {state.directory}")
        self.state = state


class ComponentFailedError(DevclusterError):
    def __init__(self, component: str, reason: str, log_path: str) -> None:
        tail = processes.log_tail(log_path)
        super().__init__(
            f"{component} failed to start: {reason}\n--- last lines of {log_path} ---\n{tail}"
        )
        self.component = component
        self.tail = tail


@dataclass(slots=True)
class ClusterState:
    directory: Path
    kubernetes_version: str
    apiserver_url: str
    processes: list[ProcessRecord] = field(default_factory=list)
    node_names: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / KUBECONFIG_FILE

    def save(self) -> None:
        data = asdict(self)
        data["directory"] = str(self.directory)
        path = self.directory / STATE_FILE
        path.with_suffix(".tmp").write_text(json.dumps(data, indent=2))
        path.with_suffix(".tmp").replace(path)

    @classmethod
    def load(cls, directory: Path) -> ClusterState | None:
        try:
            data = json.loads((directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError) as exc:
            raise DevclusterError(f"unreadable {directory / STATE_FILE}: {exc}") from exc
        records = [
            ProcessRecord(**{**p, "argv": tuple(p.get("argv") or ())})
            for p in data.pop("processes")
        ]
        data["directory"] = Path(data["directory"])
        return cls(processes=records, **data)

    def running(self) -> list[ProcessRecord]:
        return [p for p in self.processes if processes.is_alive(p)]


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; sockets held open together so all differ.

    Several clusters share this machine, so no port is ever fixed. A port can still be taken
    between here and the component's bind: `up` retries with new ports when that happens.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((components.LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def up(
    directory: Path = DEFAULT_DIR,
    fleet: str | None = None,
    log: Log = print,
    versions: Versions | None = None,
) -> ClusterState:
    """Start the control plane and the simulated fleet; return once all are healthy.

    Also creates the `flox` RuntimeClass that Flox's imageless pods name.

    Raises AlreadyRunningError if DIR's cluster is up, DevclusterError (nothing left running)
    if any part fails.
    """
    directory = directory.resolve()
    versions = versions or load_versions()
    existing = ClusterState.load(directory)
    if existing is not None and existing.running():
        raise AlreadyRunningError(existing)
    manifests = fleet_manifests(fleet)  # a bad fleet fails before anything starts
    bins = ensure_binaries(versions, log=log)
    for attempt in range(PORT_RETRIES + 1):
        _reset(directory)
        try:
            return _start(directory, bins, versions, manifests, log)
        except ComponentFailedError as exc:
            if "address already in use" not in exc.tail or attempt == PORT_RETRIES:
                raise
            log(f"{exc.component}: its port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def _reset(directory: Path) -> None:
    """Remove a previous (stopped) cluster's state; logs are kept until the next start."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("etcd", "pki", STATE_FILE, KUBECONFIG_FILE, "kwok.yaml"):
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for old in directory.glob("*.log"):
        old.unlink()


def fleet_manifests(fleet: str | None) -> list[dict[str, Any]]:
    """The Node objects of a fleet name or file (None: the default fleet)."""
    try:
        return fleets.node_manifests(fleets.load_fleet(fleet))
    except fleets.FleetError as exc:
        raise FleetInputError(str(exc)) from exc


def _start(
    directory: Path,
    bins: Path,
    versions: Versions,
    manifests: list[dict[str, Any]],
    log: Log,
) -> ClusterState:
    started = time.monotonic()
    ports = Ports(*free_ports(6))
    url = components.apiserver_url(ports)
    files = pki.write_pki(directory / "pki", url)
    (directory / "kwok.yaml").write_text(components.KWOK_CONFIG)
    shutil.copyfile(files.kubeconfig(pki.ADMIN), directory / KUBECONFIG_FILE)
    (directory / KUBECONFIG_FILE).chmod(0o600)
    state = ClusterState(directory, versions.kubernetes, url)
    try:
        for component in components.control_plane(bins, directory, files, ports):
            _start_component(component, state, files, log)
        _create_fleet(state, manifests, log)
        _check_alive(state)
    except BaseException:
        down(directory, log=lambda _msg: None, keep_logs=True)
        raise
    log(f"devcluster up in {time.monotonic() - started:.1f}s: {url} ({versions.kubernetes})")
    return state


def _start_component(
    component: Component, state: ClusterState, files: pki.PkiFiles, log: Log
) -> None:
    t0 = time.monotonic()
    log_path = state.directory / f"{component.name}.log"
    record, process = processes.spawn(
        component.name, component.argv, log_path, state.directory, component.health_url
    )
    state.processes.append(record)
    state.save()  # saved before waiting: a `down` from elsewhere can stop a half-started cluster
    timeout = HEALTH_TIMEOUTS.get(component.name, DEFAULT_HEALTH_TIMEOUT)
    deadline = time.monotonic() + timeout
    context = _tls_context(files, component.needs_client_cert)
    while not _healthy(component.health_url, context):
        if process.poll() is not None:
            raise ComponentFailedError(
                component.name, f"exited with code {process.returncode}", str(log_path)
            )
        if time.monotonic() > deadline:
            raise ComponentFailedError(
                component.name,
                f"not healthy after {timeout:.0f}s at {component.health_url}",
                str(log_path),
            )
        time.sleep(0.25)
    log(f"{component.name} healthy (pid {record.pid}) in {time.monotonic() - t0:.1f}s")


def _check_alive(state: ClusterState) -> None:
    """Fail unless every process we started still runs.

    A healthy answer could have come from a neighbour's cluster on a port that was free
    when picked (and our process then failed to bind it).
    """
    for record in state.processes:
        if not processes.is_alive(record):
            raise ComponentFailedError(record.name, "exited after starting", record.log)


def _tls_context(files: pki.PkiFiles, client_cert: bool) -> ssl.SSLContext:
    if client_cert:
        context = ssl.create_default_context(cafile=str(files.ca_cert))
        context.load_cert_chain(str(files.client_cert(pki.ADMIN)), str(files.client_key(pki.ADMIN)))
        return context
    # Controller manager and scheduler serve /healthz with a self-signed cert they make.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _healthy(url: str, context: ssl.SSLContext | None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(
            url, context=context if url.startswith("https") else None, timeout=timeout
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _create_fleet(state: ClusterState, manifests: list[dict[str, Any]], log: Log) -> None:
    t0 = time.monotonic()
    try:
        with api_client(str(state.kubeconfig)) as api:
            names = nodes.create_nodes(api, manifests)
            state.node_names = names
            state.save()
            nodes.wait_nodes_ready(api, names)
            nodes.wait_default_service_account(api)
            nodes.ensure_runtime_class(api)  # Flox's pods name it; kwok runs any handler
    except TimeoutError as exc:
        raise ComponentFailedError("kwok", str(exc), str(state.directory / "kwok.log")) from exc
    except ApiException as exc:
        raise DevclusterError(
            f"creating the simulated fleet failed: {exc.status} {exc.reason}: {exc.body}"
        ) from exc
    log(
        f"fleet: {len(names)} simulated nodes Ready, RuntimeClass {nodes.FLOX_RUNTIME_CLASS!r},"
        f" in {time.monotonic() - t0:.1f}s"
    )


@contextlib.contextmanager
def temporary(log: Log = lambda line: None) -> Iterator[Path]:
    """A cluster in a temporary directory for the duration of a `with` (benchmarks); its
    kubeconfig."""
    with tempfile.TemporaryDirectory() as tmp:
        state = up(Path(tmp), log=log)
        try:
            yield state.kubeconfig
        finally:
            down(Path(tmp), log=log)


def down(directory: Path = DEFAULT_DIR, log: Log = print, keep_logs: bool = False) -> bool:
    """Stop every recorded process (reverse start order) and remove the state.

    Returns False if DIR held no cluster. Logs are removed too unless keep_logs.
    """
    directory = directory.resolve()
    state = ClusterState.load(directory)
    if state is None:
        return False
    for record in reversed(state.processes):
        if processes.stop(record):
            log(f"stopped {record.name} (pid {record.pid})")
    for name in ("etcd", "pki", KUBECONFIG_FILE, "kwok.yaml", STATE_FILE):
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if not keep_logs:
        for old in directory.glob("*.log"):
            old.unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty: never remove what a user put there
    return True


def restart_component(directory: Path, name: str, log: Log = print) -> float:
    """Stop one running component and start it again with the same command line and log
    (a fault test's kube-apiserver restart); return once it is healthy, with the seconds
    it took from the stop. State (etcd's data, ports, PKI) is kept; clients reconnect."""
    directory = directory.resolve()
    state = ClusterState.load(directory)
    if state is None:
        raise DevclusterError(f"no devcluster in {directory}")
    found = [i for i, p in enumerate(state.processes) if p.name == name]
    if not found or not state.processes[found[0]].argv:
        known = ", ".join(p.name for p in state.processes)
        raise DevclusterError(f"no restartable component {name!r} in {directory} (has: {known})")
    index = found[0]
    record = state.processes.pop(index)
    started = time.monotonic()
    processes.stop(record)
    files = pki.PkiFiles.at(directory / "pki")
    component = Component(name, record.argv, record.health_url, _needs_client_cert(name))
    count = len(state.processes)
    try:
        _start_component(component, state, files, log)
    finally:
        if len(state.processes) > count:  # spawned: back in its place (`down` stops
            state.processes.insert(index, state.processes.pop())  # in reverse start order)
        state.save()
    return time.monotonic() - started


def _needs_client_cert(component: str) -> bool:
    """Only the API server's health check (/readyz) wants a client certificate."""
    return component == "kube-apiserver"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    healthy: bool
    log: str


def status(directory: Path = DEFAULT_DIR) -> tuple[ClusterState | None, list[ComponentStatus]]:
    directory = directory.resolve()
    state = ClusterState.load(directory)
    if state is None:
        return None, []
    files = pki.PkiFiles.at(directory / "pki")
    report = []
    for record in state.processes:
        running = processes.is_alive(record)
        context = _tls_context(files, _needs_client_cert(record.name))
        healthy = running and _healthy(record.health_url, context)
        report.append(ComponentStatus(record.name, record.pid, running, healthy, record.log))
    return state, report

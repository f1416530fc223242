"""What runs in the local control plane: each component's command line and health check.

Pure data: given the binary directory, state directory, ports and PKI paths, return the
argv of each process. Everything listens on 127.0.0.1 only, on ports picked at `up` time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flox_isa.devcluster import pki

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"
LOOPBACK = "127.0.0.1"
# Controllers kube-controller-manager runs: all the defaults except node-lifecycle, which
# taints nodes not-ready and evicts their pods whenever a heartbeat is late; kwok keeps the
# simulated nodes Ready itself, and a busy 2-core machine must not turn a slow heartbeat
# into a test failure.
CONTROLLERS = "*,-node-lifecycle-controller,-cloud-node-lifecycle-controller"
# NodeRestriction goes with the Node authorizer; the webhook plugins are on by default,
# named here because flox-isa is a mutating webhook and the tests depend on them.
ADMISSION_PLUGINS = "NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
# TaintNodesByCondition gives every new Node the not-ready taint, which only the disabled
# node-lifecycle controller would lift: without it, simulated nodes start schedulable.
DISABLED_ADMISSION_PLUGINS = "TaintNodesByCondition"


@dataclass(frozen=True, slots=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


@dataclass(frozen=True, slots=True)
class Component:
    """One process: its argv and the URL that answers 200 once it is healthy."""

    name: str
    argv: tuple[str, ...]
    health_url: str
    # Client certificate for the health check (the API server's /readyz), if any.
    needs_client_cert: bool = False


def apiserver_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def etcd(bins: Path, state: Path, ports: Ports) -> Component:
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    argv = (
        str(bins / "etcd"),
        "--name=devcluster",
        f"--data-dir={state / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=devcluster={peer}",
        "--initial-cluster-state=new",
        # A throwaway dev cluster: skip fsync, the slowest part of etcd on a shared disk.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    )
    return Component("etcd", argv, f"{client}/health")


def kube_apiserver(bins: Path, files: pki.PkiFiles, ports: Ports) -> Component:
    argv = (
        str(bins / "kube-apiserver"),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={files.serving_cert}",
        f"--tls-private-key-file={files.serving_key}",
        f"--client-ca-file={files.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={files.sa_public}",
        f"--service-account-signing-key-file={files.sa_private}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The `kubernetes` Endpoints may not hold a loopback address: don't try every 10s.
        "--endpoint-reconciler-type=none",
        # No kube-proxy here, so a Service's ClusterIP leads nowhere: reach Service-registered
        # webhooks (the chart's form) through their EndpointSlices, as `bench/faults.py`'s
        # rolling restart does.
        "--enable-aggregator-routing=true",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        f"--disable-admission-plugins={DISABLED_ADMISSION_PLUGINS}",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    )
    return Component(
        "kube-apiserver", argv, f"{apiserver_url(ports)}/readyz", needs_client_cert=True
    )


def kube_controller_manager(bins: Path, files: pki.PkiFiles, ports: Ports) -> Component:
    argv = (
        str(bins / "kube-controller-manager"),
        f"--kubeconfig={files.kubeconfig(pki.CONTROLLER_MANAGER)}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={files.directory / 'controller-manager'}",
        f"--controllers={CONTROLLERS}",
        f"--service-account-private-key-file={files.sa_private}",
        f"--root-ca-file={files.ca_cert}",
        f"--cluster-signing-cert-file={files.ca_cert}",
        f"--cluster-signing-key-file={files.ca_key}",
        f"--cluster-name={pki.CLUSTER_NAME}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    )
    return Component(
        "kube-controller-manager", argv, f"https://{LOOPBACK}:{ports.controller_manager}/healthz"
    )


def kube_scheduler(bins: Path, files: pki.PkiFiles, ports: Ports) -> Component:
    argv = (
        str(bins / "kube-scheduler"),
        f"--kubeconfig={files.kubeconfig(pki.SCHEDULER)}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={files.directory / 'scheduler'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    )
    return Component("kube-scheduler", argv, f"https://{LOOPBACK}:{ports.scheduler}/healthz")


def kwok(bins: Path, files: pki.PkiFiles, state: Path, ports: Ports) -> Component:
    argv = (
        str(bins / "kwok"),
        f"--kubeconfig={files.kubeconfig(pki.KWOK)}",
        # Its own (empty) config: never pick up a user's ~/.kwok/kwok.yaml.
        f"--config={state / 'kwok.yaml'}",
        # Manage every node: all nodes of this cluster are simulated.
        "--manage-all-nodes=true",
        f"--server-address={LOOPBACK}:{ports.kwok}",
        f"--cidr={POD_CIDR}",
        f"--node-ip={LOOPBACK}",
        "--node-lease-duration-seconds=40",
    )
    return Component("kwok", argv, f"http://{LOOPBACK}:{ports.kwok}/healthz")


KWOK_CONFIG = "kind: KwokConfiguration\napiVersion: config.kwok.x-k8s.io/v1alpha1\noptions: {}\n"


def control_plane(bins: Path, state: Path, files: pki.PkiFiles, ports: Ports) -> list[Component]:
    """The components in start order: each needs the ones before it healthy."""
    return [
        etcd(bins, state, ports),
        kube_apiserver(bins, files, ports),
        kube_controller_manager(bins, files, ports),
        kube_scheduler(bins, files, ports),
        kwok(bins, files, state, ports),
    ]

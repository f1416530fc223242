"""The local control plane is a real Kubernetes: version, Ready nodes, scheduling, webhooks.

The kubernetes client types every model field Optional; these tests hold API objects as Any
and let a missing field fail the test, which is what it should do.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from flox_isa import certs
from flox_isa.devcluster import processes
from flox_isa.devcluster.cluster import ClusterState
from flox_isa.devcluster.versions import load_versions
from tests.e2e.conftest import DevCluster, NodeFactory
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.e2e

VNNI = "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI"
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def _wait_long(what: str, check: Callable[[], object], timeout: float = 90.0) -> None:
    """Cluster start-up waits get longer than the default: scheduling after `up`."""
    wait_until(what, check, timeout, interval=0.5)


@pytest.fixture
def namespace(core: Any) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"e2e-namespace": name}}})
    yield name
    core.delete_namespace(name)


def test_version_is_the_pinned_release(cluster: DevCluster) -> None:
    with cluster.api_client() as api:
        info = client.VersionApi(api).get_code()
    if cluster.managed:
        assert info.git_version == load_versions().kubernetes


def test_fleet_nodes_are_ready_and_untainted(cluster: DevCluster, core: Any) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(cluster.fleet_node_names) <= set(nodes)
    assert nodes
    for name, node in nodes.items():
        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        assert ready and ready[0].status == "True", name
        assert not {t.key for t in node.spec.taints or []} & NOT_READY_TAINTS, name
        assert node.metadata.labels.get("kubernetes.io/arch") in {"amd64", "arm64"}


def test_the_flox_runtime_class_exists_and_admits_pods(cluster: DevCluster) -> None:
    runtime_class = cluster.request("GET", "/apis/node.k8s.io/v1/runtimeclasses/flox")
    assert runtime_class["handler"] == "flox"
    # The API server admits a pod naming it (dry run: nothing is stored).
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"flox-{uuid.uuid4().hex[:6]}"},
        "spec": {"runtimeClassName": "flox", "containers": [{"name": "c", "image": "flox"}]},
    }
    created = cluster.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", pod)
    assert created["spec"]["runtimeClassName"] == "flox"


def _deployment(name: str, replicas: int, selector: dict[str, str]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": selector,
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


def _running_pods(core: Any, namespace: str, app: str) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.status.phase == "Running"]


@pytest.mark.parametrize("selector", [{}, {VNNI: "true"}], ids=["plain", "nfd-avx512vnni"])
def test_deployment_pods_run_on_matching_simulated_nodes(
    cluster: DevCluster, core: Any, namespace: str, selector: dict[str, str]
) -> None:
    labels_by_node = {n.metadata.name: n.metadata.labels or {} for n in core.list_node().items}
    if selector and not any(
        all(labels.get(k) == v for k, v in selector.items()) for labels in labels_by_node.values()
    ):
        pytest.skip(f"no node in this fleet matches {selector}")
    with cluster.api_client() as api:
        apps: Any = client.AppsV1Api(api)
        apps.create_namespaced_deployment(namespace, _deployment("web", 3, selector))
    _wait_long("3 Running pods", lambda: len(_running_pods(core, namespace, "web")) == 3)
    for pod in _running_pods(core, namespace, "web"):
        assert pod.spec.node_name in labels_by_node  # placed by the real scheduler
        node_labels = labels_by_node[pod.spec.node_name]
        assert all(node_labels.get(k) == v for k, v in selector.items()), pod.spec.node_name


class _Webhook(http.server.BaseHTTPRequestHandler):
    """Mutating webhook: adds the label `e2e-webhook: called` to what it admits."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        patch = [{"op": "add", "path": "/metadata/labels", "value": {"e2e-webhook": "called"}}]
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def https_webhook(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """An HTTPS webhook on 127.0.0.1:<free port>; yields (port, CA bundle PEM)."""
    ca = certs.make_ca("e2e-webhook-ca")
    serving = certs.issue(ca, "webhook", ip_addresses=("127.0.0.1",), server=True)
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], ca.cert_pem
    server.shutdown()
    server.server_close()


def test_apiserver_calls_an_https_webhook_on_loopback(
    cluster: DevCluster,
    core: Any,
    namespace: str,
    https_webhook: tuple[int, bytes],
) -> None:
    port, ca_pem = https_webhook
    name = f"{namespace}.e2e.flox.dev"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": name,
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/mutate",
                    "caBundle": b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"e2e-namespace": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    with cluster.api_client() as api:
        admission: Any = client.AdmissionregistrationV1Api(api)
        admission.create_mutating_webhook_configuration(config)
        try:
            # The API server picks up new webhook configurations asynchronously: retry.
            def created_and_labelled() -> bool:
                cm = f"cm-{uuid.uuid4().hex[:6]}"
                created = core.create_namespaced_config_map(namespace, {"metadata": {"name": cm}})
                return bool((created.metadata.labels or {}).get("e2e-webhook") == "called")

            _wait_long("the webhook to label a ConfigMap", created_and_labelled, timeout=30)
        finally:
            admission.delete_mutating_webhook_configuration(name)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flox_isa.cli", "devcluster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.skipif(
    bool(os.environ.get("FLOX_ISA_E2E_KUBECONFIG")), reason="starts its own local cluster"
)
def test_cli_up_status_second_up_and_down_leaves_no_process(tmp_path: Path) -> None:
    directory = tmp_path / "cli-cluster"
    started = _cli("up", "--dir", str(directory))
    assert started.returncode == 0, started.stderr + started.stdout
    assert started.stdout.strip().splitlines()[-1] == f"KUBECONFIG={directory / 'kubeconfig'}"
    state = ClusterState.load(directory)
    assert state is not None
    try:
        assert _cli("status", "--dir", str(directory)).returncode == 0
        again = _cli("up", "--dir", str(directory))
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        stopped = _cli("down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert [p.name for p in state.processes if processes.is_alive(p)] == []
    assert not (directory / "state.json").exists()


def test_nodes_added_at_runtime_are_ready_and_schedulable(
    cluster: DevCluster, nodes: NodeFactory, core: Any, namespace: str
) -> None:
    marker = {"e2e-pool": namespace}
    added = nodes.add("m7i.xlarge", count=2, labels=marker)
    found = core.list_node(label_selector=f"e2e-pool={namespace}").items
    assert sorted(n.metadata.name for n in found) == sorted(added)
    assert {n.metadata.labels["node.kubernetes.io/instance-type"] for n in found} == {"m7i.xlarge"}
    with cluster.api_client() as api:
        apps: Any = client.AppsV1Api(api)
        apps.create_namespaced_deployment(namespace, _deployment("pinned", 2, marker))
    _wait_long(
        "2 Running pods on the new nodes",
        lambda: len(_running_pods(core, namespace, "pinned")) == 2,
    )
    assert {p.spec.node_name for p in _running_pods(core, namespace, "pinned")} <= set(added)
    nodes.delete(added)
    _wait_long(
        "the nodes to be gone",
        lambda: not core.list_node(label_selector=f"e2e-pool={namespace}").items,
    )

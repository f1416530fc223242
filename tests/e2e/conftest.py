"""End-to-end fixtures: one real control plane per test session.

Fixtures (use them from any tests/e2e/test_*.py; mark the tests `pytest.mark.e2e`):

``cluster`` (session scope) -> :class:`DevCluster`
    The local control plane (`flox-isa devcluster up` in a temporary directory, stopped
    by `down` at the end of the session), or, if ``FLOX_ISA_E2E_KUBECONFIG`` is set, the
    cluster that kubeconfig points to (kind, a real cluster: then nothing is started or
    stopped, and ``dir`` is an empty temporary directory). Either way the ``flox``
    RuntimeClass exists (`up` creates it; on another cluster the fixture creates it if
    missing, and leaves it). Attributes and helpers:

    - ``kubeconfig: Path`` -- admin kubeconfig (client-certificate auth, system:masters).
    - ``dir: Path`` -- the devcluster state directory: component logs (``*.log``),
      ``pki/ca.crt`` (cluster CA), ``state.json``.
    - ``managed: bool`` -- True if this session started the cluster.
    - ``api_client() -> kubernetes.client.ApiClient`` -- a new client; close it (or use
      it as a context manager: ``with cluster.api_client() as api: ...``).
    - ``add_nodes(instance_type, count=1, prefix=None, labels=None, taints=None)
      -> list[str]`` -- create simulated nodes of a fleet profile's instance type (e.g.
      ``"m7i.xlarge"``; taints as ``{"key", "value", "effect"}`` dicts), wait until they
      are Ready (kwok manages every node), return their unique names.
    - ``delete_nodes(names)`` -- delete nodes; the pod garbage collector removes their
      pods within about a minute (ReplicaSets then reschedule them elsewhere).
    - ``fleet_node_names: list[str]`` -- the nodes `up` created.
    - ``restart_apiserver()`` -- stop the kube-apiserver and start it again (same flags,
      ports and etcd data), back once healthy; skips the test on an external cluster.
      Every client reconnects; the rest of the session keeps using the cluster.
    - ``request(method, path, body=None) -> Any`` -- a raw JSON API call (plain dicts in
      and out). Use it for bodies the typed client rejects: kubernetes>=37 validates dict
      bodies against its pydantic models (a Deployment's pod template may not carry
      apiVersion/kind, a Node's partial status.nodeInfo is refused), the API server not.

``nodes`` (function scope) -> :class:`NodeFactory`
    ``nodes.add(instance_type, count=1, ...)`` like ``cluster.add_nodes``, but every node
    added is deleted again after the test: use it when a test changes the fleet.

``core`` (function scope) -> ``kubernetes.client.CoreV1Api`` on the admin kubeconfig.

Environment: ``FLOX_ISA_E2E_KUBECONFIG`` (use that cluster), ``FLOX_ISA_CACHE`` (binary
cache), ``FLOX_ISA_E2E_FLEET`` (fleet name or file for `up`).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from flox_isa.devcluster import cluster as devcluster
from flox_isa.devcluster import fleet as fleets
from flox_isa.devcluster import nodes as node_api
from flox_isa.devcluster.build import BuildError
from flox_isa.devcluster.versions import VersionsError
from flox_isa.kube.config import api_client

_counter = itertools.count()


@dataclass
class DevCluster:
    """A running cluster for e2e tests; see this module's docstring."""

    kubeconfig: Path
    dir: Path
    managed: bool
    fleet_node_names: list[str] = field(default_factory=list)

    def api_client(self) -> Any:
        """A new `kubernetes.client.ApiClient` for the admin kubeconfig (close it after)."""
        return api_client(str(self.kubeconfig))

    def add_nodes(
        self,
        instance_type: str,
        count: int = 1,
        prefix: str | None = None,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
    ) -> list[str]:
        """Create `count` simulated nodes of `instance_type`; return once they are Ready.

        Any instance type of the fleet profiles works (`fleet.instance_profiles()`);
        `labels` may not use the NFD / kubernetes.io prefixes the profile owns.
        """
        group = {
            "instanceType": instance_type,
            "count": count,
            "labels": labels or {},
            "taints": taints or [],
        }
        fleet = fleets.Fleet.model_validate({"nodes": [group]})
        stem = prefix or f"e2e-{instance_type.replace('.', '-')}-{uuid.uuid4().hex[:6]}"
        names = [f"{stem}-{next(_counter)}" for _ in range(count)]
        manifests = [
            node_api.nodes_like(manifest, [name])[0]
            for manifest, name in zip(fleets.node_manifests(fleet), names, strict=True)
        ]
        with self.api_client() as api:
            node_api.create_nodes(api, manifests)
            node_api.wait_nodes_ready(api, names)
        return names

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A raw JSON call, e.g. request("POST", "/api/v1/namespaces/x/pods", pod)."""
        with self.api_client() as api:
            return node_api.request_json(api, method, path, body)

    def delete_nodes(self, names: list[str]) -> None:
        with self.api_client() as api:
            node_api.delete_nodes(api, names)

    def restart_apiserver(self) -> None:
        """Stop the kube-apiserver and start it again (same flags, ports and etcd data);
        return once it is healthy. Only on the session's own cluster (else the test skips)."""
        if not self.managed:
            pytest.skip("restarting the kube-apiserver needs the local devcluster")
        devcluster.restart_component(self.dir, "kube-apiserver", log=lambda _line: None)

    def token_kubeconfig(self, user: str, token: str, path: Path) -> Path:
        """A kubeconfig at `path` for this cluster that authenticates with a bearer `token`."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        server = dict(admin["clusters"][0]["cluster"])
        if "certificate-authority" in server:  # relative paths are relative to the kubeconfig
            server["certificate-authority"] = str(
                (self.kubeconfig.parent / server["certificate-authority"]).resolve()
            )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": server}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config))
        return path


class NodeFactory:
    """Adds nodes for one test and deletes them after it."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cluster = cluster
        self.added: list[str] = []

    def add(self, instance_type: str, count: int = 1, **kwargs: Any) -> list[str]:
        names = self.cluster.add_nodes(instance_type, count, **kwargs)
        self.added += names
        return names

    def delete(self, names: list[str]) -> None:
        self.cluster.delete_nodes(names)
        self.added = [n for n in self.added if n not in names]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """The session's cluster: see the module docstring."""
    external = os.environ.get("FLOX_ISA_E2E_KUBECONFIG")
    if external:
        # Flox's imageless pods name it; `up` creates it on the local control plane.
        with api_client(str(external)) as api:
            node_api.ensure_runtime_class(api)
        yield DevCluster(Path(external), tmp_path_factory.mktemp("external"), managed=False)
        return
    directory = tmp_path_factory.mktemp("devcluster")
    try:
        state = devcluster.up(directory, os.environ.get("FLOX_ISA_E2E_FLEET"))
    except (devcluster.DevclusterError, BuildError, VersionsError) as exc:
        pytest.fail(f"devcluster up failed: {exc}", pytrace=False)
    try:
        yield DevCluster(
            state.kubeconfig, directory, managed=True, fleet_node_names=list(state.node_names)
        )
    finally:
        # Keep the logs: pytest's tmp dirs make them available after a failed run.
        devcluster.down(directory, keep_logs=True)


@pytest.fixture
def nodes(cluster: DevCluster) -> Iterator[NodeFactory]:
    factory = NodeFactory(cluster)
    yield factory
    if factory.added:
        cluster.delete_nodes(factory.added)


@pytest.fixture
def core(cluster: DevCluster) -> Iterator[client.CoreV1Api]:
    with cluster.api_client() as api:
        yield client.CoreV1Api(api)

"""Command lines of the control-plane processes: loopback only, the ports given, wiring."""

from __future__ import annotations

from pathlib import Path

from flox_isa.devcluster import components, pki
from flox_isa.devcluster.cluster import free_ports

PORTS = components.Ports(2379, 2380, 6443, 10257, 10259, 10247)


def _plane(tmp_path: Path) -> dict[str, components.Component]:
    files = pki.PkiFiles.at(tmp_path / "pki")
    plane = components.control_plane(Path("/bin"), tmp_path, files, PORTS)
    return {c.name: c for c in plane}


def test_start_order(tmp_path: Path) -> None:
    assert list(_plane(tmp_path)) == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]


def test_everything_on_loopback_with_given_ports(tmp_path: Path) -> None:
    plane = _plane(tmp_path)
    api = plane["kube-apiserver"].argv
    assert "--bind-address=127.0.0.1" in api
    assert "--secure-port=6443" in api
    assert "--etcd-servers=http://127.0.0.1:2379" in api
    assert plane["kube-controller-manager"].health_url == "https://127.0.0.1:10257/healthz"
    assert "--server-address=127.0.0.1:10247" in plane["kwok"].argv
    for component in plane.values():
        assert "0.0.0.0" not in " ".join(component.argv)


def test_apiserver_security_flags(tmp_path: Path) -> None:
    api = _plane(tmp_path)["kube-apiserver"]
    assert "--authorization-mode=Node,RBAC" in api.argv
    assert any(a.startswith("--client-ca-file=") for a in api.argv)
    assert any("MutatingAdmissionWebhook" in a for a in api.argv)
    assert "--endpoint-reconciler-type=none" in api.argv  # loopback can't be an endpoint
    assert api.needs_client_cert


def test_controller_manager_keeps_nodes_untainted(tmp_path: Path) -> None:
    argv = _plane(tmp_path)["kube-controller-manager"].argv
    assert "--controllers=*,-node-lifecycle-controller,-cloud-node-lifecycle-controller" in argv
    assert any(a.startswith("--service-account-private-key-file=") for a in argv)
    api = _plane(tmp_path)["kube-apiserver"].argv
    assert "--disable-admission-plugins=TaintNodesByCondition" in api


def test_free_ports_are_distinct() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    assert all(p > 0 for p in ports)

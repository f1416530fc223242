"""Certificates and kubeconfigs of the local control plane (all generated, all throwaway)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from flox_isa.certs import KeyPair, issue, key_pem, make_ca, new_key

CLUSTER_NAME = "flox-isa-dev"
# Names the API server answers to: loopback for us, the in-cluster service names for clients
# that follow the `kubernetes` Service (its first IP in the service range).
SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "10.96.0.1")


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """One client certificate's subject: CN is the user, O the groups."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


# Each component gets its own identity, so RBAC sees what a real cluster would.
ADMIN = ClientIdentity("admin", "flox-isa-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("kube-scheduler", "system:kube-scheduler")
KWOK = ClientIdentity("kwok", "flox-isa-kwok", ("system:masters",))
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK)


def service_account_keys() -> KeyPair:
    """The token signing key (key_pem) and its public half (cert_pem holds the public key)."""
    key = new_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(public, key_pem(key))


def render_kubeconfig(
    server: str, ca_pem: bytes, client: KeyPair, user: str, cluster: str = CLUSTER_NAME
) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded, so it can be copied anywhere)."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }


@dataclass(frozen=True, slots=True)
class PkiFiles:
    """Paths of everything `write_pki` produced (under DIR/pki)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_public: Path
    sa_private: Path

    @classmethod
    def at(cls, directory: Path) -> PkiFiles:
        return cls(
            directory,
            directory / "ca.crt",
            directory / "ca.key",
            directory / "apiserver.crt",
            directory / "apiserver.key",
            directory / "sa.pub",
            directory / "sa.key",
        )

    def client_cert(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.crt"

    def client_key(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.key"

    def kubeconfig(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.kubeconfig"


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def write_pki(directory: Path, apiserver_url: str) -> PkiFiles:
    """Generate the CA, serving cert, SA keys and one client cert + kubeconfig per identity."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    files = PkiFiles.at(directory)
    ca = make_ca(f"{CLUSTER_NAME}-ca")
    serving = issue(
        ca, "kube-apiserver", dns_names=SERVING_DNS, ip_addresses=SERVING_IPS, server=True
    )
    sa = service_account_keys()
    for path, data, private in (
        (files.ca_cert, ca.cert_pem, False),
        (files.ca_key, ca.key_pem, True),
        (files.serving_cert, serving.cert_pem, False),
        (files.serving_key, serving.key_pem, True),
        (files.sa_public, sa.cert_pem, False),
        (files.sa_private, sa.key_pem, True),
    ):
        _write(path, data, private)
    for identity in CLIENTS:
        client = issue(ca, identity.user, organizations=identity.groups)
        _write(files.client_cert(identity), client.cert_pem)
        _write(files.client_key(identity), client.key_pem, private=True)
        config = render_kubeconfig(apiserver_url, ca.cert_pem, client, identity.user)
        _write(files.kubeconfig(identity), yaml.safe_dump(config).encode(), private=True)
    return files

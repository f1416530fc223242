"""A throwaway CA and serving certificate: for tests, benchmarks and local runs.

In a cluster, cert-manager (or the chart's hook) issues the real ones.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from flox_isa.certs import issue, make_ca, split_hosts


@dataclass(frozen=True, slots=True)
class ServingCerts:
    ca_pem: bytes
    cert_path: Path
    key_path: Path
    ca_path: Path


def write_serving_certs(
    directory: Path,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    days: int = 2,
    common_name: str = "flox-isa-webhook",
) -> ServingCerts:
    """A new CA and a cert for `hosts` (IPs or DNS names), written as PEM files."""
    validity = datetime.timedelta(days=days)
    ca = make_ca(f"{common_name}-ca", validity)
    dns_names, ip_addresses = split_hosts(hosts)
    serving = issue(
        ca,
        common_name,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        server=True,
        validity=validity,
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = ServingCerts(
        ca.cert_pem, directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    )
    paths.ca_path.write_bytes(ca.cert_pem)
    paths.cert_path.write_bytes(serving.cert_pem)
    paths.key_path.write_bytes(serving.key_pem)
    paths.key_path.chmod(0o600)
    return paths

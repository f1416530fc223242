"""Generated certificates and kubeconfigs: right names, usages and chain."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flox_isa import certs
from flox_isa.devcluster import pki


def test_server_cert_has_loopback_and_service_names() -> None:
    ca = certs.make_ca("test-ca")
    pair = certs.issue(
        ca, "kube-apiserver", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True
    )
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)


def test_client_cert_carries_user_and_groups() -> None:
    pair = certs.issue(
        certs.make_ca("test-ca"), "flox-isa-admin", organizations=("system:masters",)
    )
    subject = x509.load_pem_x509_certificate(pair.cert_pem).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "flox-isa-admin"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"


def test_render_kubeconfig_embeds_credentials() -> None:
    ca = certs.make_ca("test-ca")
    client = certs.issue(ca, "u")
    config = pki.render_kubeconfig("https://127.0.0.1:1234", ca.cert_pem, client, "u")
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:1234"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.cert_pem
    assert config["current-context"] == config["contexts"][0]["name"]


def test_write_pki(tmp_path: Path) -> None:
    files = pki.write_pki(tmp_path / "pki", "https://127.0.0.1:1")
    for path in (files.ca_cert, files.serving_cert, files.sa_private, files.sa_public):
        assert path.is_file()
    assert files.ca_key.stat().st_mode & 0o077 == 0
    admin = yaml.safe_load(files.kubeconfig(pki.ADMIN).read_text())
    assert admin["users"][0]["name"] == pki.ADMIN.user

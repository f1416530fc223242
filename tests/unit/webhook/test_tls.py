"""Serving over TLS: TLS >= 1.2, and a rotated certificate is picked up without a restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
import uvicorn
from cryptography import x509

from flox_isa.webhook.app import StaticFleet, WebhookState, create_app
from flox_isa.webhook.certs import ServingCerts, write_serving_certs
from flox_isa.webhook.serve import CertReloader, OneWritePerTurn, server_config
from tests.unit.webhook.test_app import FLEET, review
from tests.unit.webhook.test_decision import CATALOG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        return x509.load_der_x509_certificate(der).serial_number


class Running:
    def __init__(self, certs: ServingCerts, port: int) -> None:
        state = WebhookState(CATALOG, StaticFleet(FLEET))
        self.config, self.context = server_config(
            create_app(state), "127.0.0.1", port, certs.cert_path, certs.key_path
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Running, ServingCerts, int]]:
    certs = write_serving_certs(tmp_path / "a")
    port = free_port()
    server = Running(certs, port)
    server.thread.start()
    deadline = time.monotonic() + 10
    while not server.server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield server, certs, port
    server.server.should_exit = True
    server.thread.join(timeout=10)


def test_https_serves_mutate_with_tls_1_2_or_newer(
    running: tuple[Running, ServingCerts, int],
) -> None:
    server, certs, port = running
    assert server.context.minimum_version == ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs.ca_path))) as client:
        response = client.post(f"https://127.0.0.1:{port}/mutate", json=review())
    assert response.status_code == 200 and response.json()["response"]["allowed"] is True
    old_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old_client.check_hostname, old_client.verify_mode = False, ssl.CERT_NONE
    old_client.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old_client.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        old_client.wrap_socket(raw),
    ):
        pass


def test_a_rotated_certificate_is_served_to_new_connections(
    running: tuple[Running, ServingCerts, int], tmp_path: Path
) -> None:
    server, certs, port = running
    reloads: list[int] = []
    reloader = CertReloader(
        server.context, certs.cert_path, certs.key_path, lambda: reloads.append(1)
    )
    first = served_serial(port, certs.ca_path)
    assert reloader.check() is False  # nothing changed yet
    rotated = write_serving_certs(tmp_path / "b")
    shutil.copy(rotated.cert_path, certs.cert_path)  # cert first: key mismatch mid-rotation
    assert reloader.check() is False
    assert served_serial(port, certs.ca_path) == first
    shutil.copy(rotated.key_path, certs.key_path)
    assert reloader.check() is True and reloads == [1]
    assert served_serial(port, rotated.ca_path) != first


def test_answers_on_one_kept_alive_connection_come_whole_and_in_order(
    running: tuple[Running, ServingCerts, int],
) -> None:
    _, certs, port = running
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs.ca_path))) as client:
        uids = [f"uid-{i}" for i in range(5)]
        answers = [
            client.post(f"https://127.0.0.1:{port}/mutate", json=review(uid=uid)) for uid in uids
        ]
        health = client.get(f"https://127.0.0.1:{port}/healthz")  # FastAPI's path, same writer
    assert [a.json()["response"]["uid"] for a in answers] == uids
    assert health.json() == {"status": "ok"}


class RecordingTransport:
    """The transport under `OneWritePerTurn`: what reached it, and whether it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 8443) if name == "sockname" else default


def test_the_writes_of_one_turn_go_out_as_one_write_and_a_close_sends_what_is_left() -> None:
    async def scenario() -> RecordingTransport:
        inner = RecordingTransport()
        joined = OneWritePerTurn(cast(asyncio.Transport, inner), asyncio.get_running_loop())
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.write(b'{"response":{}}')
        assert inner.writes == [] and joined.get_write_buffer_size() == 34
        await asyncio.sleep(0)  # the end of the turn
        assert inner.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"response":{}}']
        joined.write(b"last")
        joined.close()  # Connection: close after the body
        assert inner.writes[1:] == [b"last"] and inner.closed
        assert joined.get_extra_info("sockname") == ("127.0.0.1", 8443)  # the rest passes on
        joined.write(b"after the close")
        await asyncio.sleep(0)
        return inner

    assert asyncio.run(scenario()).writes[2:] == []  # nothing is written to a closed transport

"""Shutdown and serving options of the webhook server: on SIGTERM it fails readiness, keeps
answering (with `Connection: close`) for the shutdown delay, then stops; TLS 1.3 minimum;
the plain-HTTP metrics port."""

from __future__ import annotations

import signal
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flox_isa.webhook.app import StaticFleet, WebhookState, create_app
from flox_isa.webhook.certs import ServingCerts, write_serving_certs
from flox_isa.webhook.metrics import Metrics, serve_plain
from flox_isa.webhook.serve import DrainingServer, server_config
from tests.unit.webhook.test_app import FLEET, review
from tests.unit.webhook.test_decision import CATALOG
from tests.unit.webhook.test_tls import free_port

DELAY = 1.5


class Served:
    def __init__(self, certs: ServingCerts, *, tls_min_version: str = "1.2") -> None:
        self.port = free_port()
        self.state = WebhookState(CATALOG, StaticFleet(FLEET))
        config, self.context = server_config(
            create_app(self.state), "127.0.0.1", self.port, certs.cert_path, certs.key_path,
            tls_min_version=tls_min_version, drain_seconds=1,
        )  # fmt: skip
        self.server = DrainingServer(config, DELAY, self.drain)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"https://127.0.0.1:{self.port}"
        self.verify = ssl.create_default_context(cafile=str(certs.ca_path))

    def drain(self) -> None:
        self.state.draining = True

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = Served(write_serving_certs(tmp_path))
    running.start()
    yield running
    running.server.should_exit = True
    running.thread.join(timeout=10)


def test_sigterm_fails_readiness_keeps_serving_with_connection_close_then_stops(
    served: Served,
) -> None:
    with httpx.Client(base_url=served.url, verify=served.verify) as client:
        assert client.get("/readyz").status_code == 200
        before = client.post("/mutate", json=review())
        assert before.headers.get("connection") != "close"
        served.server.handle_exit(signal.SIGTERM, None)  # what the signal handler calls
        signalled = time.monotonic()
        assert client.get("/readyz").status_code == 503
        during = client.post("/mutate", json=review())
        assert during.status_code == 200 and during.json()["response"]["allowed"] is True
        assert during.headers["connection"] == "close"
        assert served.thread.is_alive()  # still serving during the delay
    served.thread.join(timeout=10)
    assert not served.thread.is_alive()
    assert time.monotonic() - signalled >= DELAY  # it waited for the delay first
    served.server._captured_signals.clear()


def test_a_second_signal_during_the_delay_stops_at_once(served: Served) -> None:
    served.server.handle_exit(signal.SIGTERM, None)
    served.server.handle_exit(signal.SIGTERM, None)
    assert served.server.should_exit
    served.thread.join(timeout=10)
    served.server._captured_signals.clear()


def test_tls_minimum_version_1_3_refuses_tls_1_2(tmp_path: Path) -> None:
    certs = write_serving_certs(tmp_path)
    running = Served(certs, tls_min_version="1.3")
    assert running.context.minimum_version == ssl.TLSVersion.TLSv1_3
    running.start()
    try:
        with httpx.Client(verify=running.verify) as client:  # TLS 1.3: served
            assert client.get(f"{running.url}/healthz").status_code == 200
        old = ssl.create_default_context(cafile=str(certs.ca_path))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with httpx.Client(verify=old) as client, pytest.raises(httpx.ConnectError):
            client.get(f"{running.url}/healthz")
    finally:
        running.server.should_exit = True
        running.thread.join(timeout=10)


def test_metrics_are_served_over_plain_http_with_the_inventory_read_at_scrape_time() -> None:
    metrics = Metrics()
    port = free_port()
    serve_plain(metrics, lambda: FLEET, "127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert f"flox_isa_inventory_nodes {float(FLEET.node_count)}" in text
    assert "flox_isa_webhook_requests_total" in text or "flox_isa_webhook_requests" in text

"""A node watch that silently stalls (no error, no byte) is noticed and restarted.

A local HTTP server answers the list, then keeps the watch open without sending a
byte, as a black-holed connection does; the Reflector must count a "stalled" restart
after its stall timeout (seconds, not the 5 minutes of a watch's own timeout).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from flox_isa.kube.inventory import STALL_SECONDS, WATCH_TIMEOUT_SECONDS, NodeInventory, Reflector
from tests.unit.webhook.test_tls import free_port

NODE_LIST = {
    "kind": "NodeList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "7"},
    "items": [],
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stall = threading.Event()  # set: watches hang silently; clear: they end at once

    def do_GET(self) -> None:
        if "watch=true" not in self.path:
            body = json.dumps(NODE_LIST).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        if self.stall.is_set():
            time.sleep(30)  # a black hole: the connection stays open, nothing arrives
        self.wfile.write(b"0\r\n\r\n")  # the watch ends (its timeout), cleanly

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[client.CoreV1Api]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)
    server.shutdown()


def restarts_while_watching(api: client.CoreV1Api, *, stall: bool) -> list[str]:
    Handler.stall.set() if stall else Handler.stall.clear()
    reasons: list[str] = []
    reflector = Reflector(
        "nodes", api.list_node, NodeInventory(), lambda _, reason: reasons.append(reason),
        watch_timeout=1, stall_seconds=0.5,
    )  # fmt: skip
    reflector.start()
    deadline = time.monotonic() + 10
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.05)
    reflector.stop(timeout=0.1)
    return reasons


def test_a_silent_watch_is_restarted_as_stalled(api: client.CoreV1Api) -> None:
    assert restarts_while_watching(api, stall=True)[:1] == ["stalled"]


def test_a_watch_ending_normally_is_not_a_stall(api: client.CoreV1Api) -> None:
    assert restarts_while_watching(api, stall=False)[:1] == ["expired"]


def test_a_healthy_watch_is_never_silent_for_the_stall_timeout() -> None:
    # The server ends each watch after WATCH_TIMEOUT_SECONDS (and sends a bookmark 2 s
    # before): a stall timeout above it never fires on a quiet, healthy cluster.
    assert WATCH_TIMEOUT_SECONDS < STALL_SECONDS <= 60

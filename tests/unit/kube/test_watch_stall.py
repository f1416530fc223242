"""The operator's list+watch (`kube.watch.ListWatch`, asyncio) notices a silent stall too.

The same local HTTP server as the webhook's stall test: it answers the list, then keeps
each watch open without a byte (a black hole) or ends it at once. A stalled watch must
be counted "stalled" after the stall timeout, and a watch that ends normally never.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest
from typing_extensions import override

from flox_isa.kube.inventory import STALL_SECONDS
from flox_isa.kube.rest import Connection, Rest
from flox_isa.kube.watch import WATCH_SECONDS, ListWatch
from tests.unit.kube.test_inventory_stall import Handler
from tests.unit.webhook.test_tls import free_port


class CountingHandler(Handler):
    watches = 0

    @override
    def do_GET(self) -> None:
        if "watch=true" in self.path:
            type(self).watches += 1
        super().do_GET()


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), CountingHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def watch_for(server: str, seconds: float) -> ListWatch:
    async with Rest(Connection(server=server)) as api:
        watch = ListWatch(api, "/api/v1/nodes", lambda _items: None, lambda _kind, _obj: None,
                          watch_seconds=1, stall_seconds=0.5)  # fmt: skip
        task = asyncio.create_task(watch.run())
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline and not watch.restarts:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return watch


def test_a_silent_watch_is_restarted_as_stalled(server: str) -> None:
    Handler.stall.set()
    watch = asyncio.run(watch_for(server, 10))
    assert watch.restart_reasons["stalled"] >= 1
    assert watch.synced.is_set()


def test_a_watch_ending_normally_is_not_a_stall(server: str) -> None:
    Handler.stall.clear()
    CountingHandler.watches = 0
    watch = asyncio.run(watch_for(server, 1.5))
    assert CountingHandler.watches > 1  # it watched, again and again
    assert watch.restart_reasons == {"gone": 0, "error": 0, "stalled": 0}


def test_the_operator_watches_with_the_webhooks_stall_timeout() -> None:
    # The server ends each watch after WATCH_SECONDS: a healthy watch is never silent
    # for STALL_SECONDS (one rule, kube.inventory's, for both components).
    assert WATCH_SECONDS < STALL_SECONDS <= 60

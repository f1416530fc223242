"""Serving over HTTPS with uvicorn: a minimum TLS version (1.2 by default), certificates
reloaded when they change on disk, and a graceful shutdown that first drains traffic away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("flox_isa.webhook.tls")
RELOAD_CHECK_SECONDS = 5.0
# Loggers kept at WARNING: uvicorn's access line says less than our own line per decision.
QUIET_LOGGERS = ("uvicorn.access",)
# Longer than the API server's idle-connection timeout (90 s): if we closed first, a POST
# racing the close would fail the admission call (Go does not retry POSTs), and every
# call after a pause would pay a new TLS handshake.
KEEP_ALIVE_SECONDS = 120
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class OneWritePerTurn:
    """A transport whose writes in one turn of the event loop go out as one write.

    uvicorn writes a response's status line and headers, then its body: two TLS records
    and two `write` calls, and the first one wakes the client (the API server) for half
    an answer. Joined, an answer is one record and one wake-up (the webhook's throughput
    on new pods rose ~13% in bench/webhook.py). Whatever this turn wrote goes at its
    end (`call_soon`), and before a close.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        if not self._transport.is_closing():  # the peer left: nobody to write to
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # the rest is the transport's own
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through `OneWritePerTurn`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        joined: Any = OneWritePerTurn(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(joined)


def server_config(
    app: ASGIApp,
    host: str,
    port: int,
    cert: Path,
    key: Path,
    *,
    tls_min_version: str = "1.2",
    drain_seconds: float = 2.0,
) -> tuple[uvicorn.Config, ssl.SSLContext]:
    """A loaded uvicorn config whose SSLContext (returned too) refuses TLS below
    `tls_min_version` ("1.2" or "1.3"); in-flight requests get `drain_seconds` on exit."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        http=OneWriteHttpToolsProtocol,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=max(1, round(drain_seconds)),
    )
    config.load()
    tls = config.ssl
    if tls is None:  # uvicorn builds it from the cert and key given above
        raise RuntimeError("uvicorn did not create a TLS context")
    tls.minimum_version = TLS_VERSIONS[tls_min_version]
    return config, tls


def _fingerprint(*paths: Path) -> tuple[tuple[int, int], ...]:
    # stat() follows symlinks: a Secret volume swaps its `..data` link on rotation.
    return tuple((s.st_mtime_ns, s.st_size) for s in (os.stat(p) for p in paths))


class CertReloader:
    """Reloads cert + key into the live SSLContext when either file changes.

    New TLS handshakes use the new certificate; open connections keep the old
    one until they close (cert-manager renews well before expiry).
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        cert: Path,
        key: Path,
        on_reload: Callable[[], None] = lambda: None,
        interval: float = RELOAD_CHECK_SECONDS,
    ) -> None:
        self._context, self._cert, self._key = context, cert, key
        self._on_reload = on_reload
        self._interval = interval
        self._seen = _fingerprint(cert, key)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> bool:
        """Reload if the files changed; True when a new certificate is in use."""
        try:
            current = _fingerprint(self._cert, self._key)
            if current == self._seen:
                return False
            # Try the pair on a scratch context first: a failed load_cert_chain on the
            # live context can leave it with the new cert and the old key (mid-rotation).
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(self._cert), str(self._key)
            )
            self._context.load_cert_chain(str(self._cert), str(self._key))
        except (OSError, ssl.SSLError) as exc:
            log.warning("certificate reload failed", extra={"fields": {"error": str(exc)}})
            return False
        self._seen = current
        self._on_reload()
        log.info("certificate reloaded", extra={"fields": {"cert": str(self._cert)}})
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()


class DrainingServer(uvicorn.Server):
    """A uvicorn server that, on the first SIGTERM/SIGINT, keeps serving for `delay` seconds
    before it stops accepting connections.

    `on_drain` runs at once (the app then fails readiness and answers with
    `Connection: close`, so clients' pooled connections move to other replicas while
    endpoints catch up); after the delay uvicorn's own graceful shutdown closes idle
    connections and waits at most `timeout_graceful_shutdown` for in-flight requests.
    A second signal during the delay stops at once.
    """

    def __init__(
        self, config: uvicorn.Config, delay: float, on_drain: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(config)
        self.delay = delay
        self.on_drain = on_drain
        self.draining_since: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining_since is not None or self.delay <= 0:
            super().handle_exit(sig, frame)
            if self.draining_since is None:
                self.begin_drain()
            return
        self._captured_signals.append(sig)  # re-raised after the shutdown, as uvicorn does
        self.begin_drain()

    def begin_drain(self) -> None:
        self.draining_since = time.monotonic()
        self.on_drain()
        log.info("draining", extra={"fields": {"shutdownDelaySeconds": self.delay}})

    async def on_tick(self, counter: int) -> bool:
        since = self.draining_since
        if since is not None and time.monotonic() - since >= self.delay:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(
    config: uvicorn.Config,
    reloader: CertReloader,
    *,
    shutdown_delay: float = 0.0,
    on_drain: Callable[[], None] = lambda: None,
) -> None:
    """Run until SIGTERM/SIGINT, draining first (see `DrainingServer`)."""
    reloader.start()
    try:
        DrainingServer(config, shutdown_delay, on_drain).run()
    finally:
        reloader.stop()

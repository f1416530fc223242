"""Serving over HTTPS with uvicorn: TLS >= 1.2, certificates reloaded when they change on disk."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger("flox_isa.webhook.tls")
RELOAD_CHECK_SECONDS = 5.0
# Loggers kept at WARNING: uvicorn's access line says less than our own line per decision.
QUIET_LOGGERS = ("uvicorn.access",)
# Longer than the API server's idle-connection timeout (90 s): if we closed first, a POST
# racing the close would fail the admission call (Go does not retry POSTs), and every
# call after a pause would pay a new TLS handshake.
KEEP_ALIVE_SECONDS = 120


def server_config(
    app: ASGIApp, host: str, port: int, cert: Path, key: Path
) -> tuple[uvicorn.Config, ssl.SSLContext]:
    """A loaded uvicorn config whose SSLContext (returned too) refuses TLS < 1.2."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    config.load()
    tls = config.ssl
    if tls is None:  # uvicorn builds it from the cert and key given above
        raise RuntimeError("uvicorn did not create a TLS context")
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
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


def serve(config: uvicorn.Config, reloader: CertReloader) -> None:
    """Run until SIGTERM/SIGINT (uvicorn handles both: in-flight requests finish)."""
    reloader.start()
    try:
        uvicorn.Server(config).run()
    finally:
        reloader.stop()

"""The in-memory inventory of Nodes, kept current by a list + watch thread.

Nodes only: the webhook's RBAC is get/list/watch on nodes and nothing else. The
namespace opt-in needs no Namespace reads: the API server checks that label with
the webhook configuration's namespaceSelector (see `flox_isa.webhook.registration`).

A `Reflector` lists a kind once, a page at a time (a 5,000-node list parsed
whole would hold ~150 MB of dicts at once; pages keep the peak to one page),
then watches from the list's resourceVersion; when a watch times out it watches
again from the last version seen, and when the apiserver says 410 Gone it
lists again. Each restart is counted.

A watch that silently stalls (a connection black-holed by a NAT, a proxy or a
half-dead API server: no error, no bytes) is noticed by a read timeout: the
server ends every watch after WATCH_TIMEOUT_SECONDS (and sends a bookmark 2 s
before), so a healthy watch is never silent longer than that; STALL_SECONDS
without a byte restarts it (reason "stalled"). Objects are read as plain JSON (no
client model classes: they cost more than the decision itself).

The request path only reads a published, immutable snapshot: no I/O, no lock.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from kubernetes import client
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from flox_isa.isa.fleet_index import FleetIndex, FleetIndexBuilder
from flox_isa.isa.nodes import NodeDocumentError, node_state
from flox_isa.isa.scheduling import NodeState

log = logging.getLogger("flox_isa.inventory")

WATCH_TIMEOUT_SECONDS = 15
STALL_SECONDS = WATCH_TIMEOUT_SECONDS + 10
LIST_PAGE_SIZE = 500
RETRY_SECONDS = 2.0
GONE = 410

ListCall = Callable[..., Any]
RestartCounter = Callable[[str, str], None]


class Sink(Protocol):
    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """Take the full list (read page by page while iterated); keep the old one on error."""

    def apply(self, event_type: str, obj: dict[str, Any]) -> None: ...


class Reflector:
    """List then watch one kind in a daemon thread, feeding a Sink."""

    def __init__(
        self,
        resource: str,
        list_call: ListCall,
        sink: Sink,
        on_restart: RestartCounter = lambda resource, reason: None,
        *,
        watch_timeout: int = WATCH_TIMEOUT_SECONDS,
        stall_seconds: float = STALL_SECONDS,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.resource = resource
        self._list_call = list_call
        self._sink = sink
        self._on_restart = on_restart
        self._watch_timeout = watch_timeout
        self._stall_seconds = stall_seconds
        self._page_size = page_size
        self._stop = threading.Event()
        self.listed = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{resource}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop, waiting at most `timeout` seconds for the (daemon) thread."""
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._list()
                self.listed.set()
                while not self._stop.is_set():
                    version, reason = self._watch(version)
                    self._restart(reason)
                    if reason == "gone":
                        break  # list again: our version is too old to watch from
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning(
                    "list/watch failed; retrying",
                    extra={"fields": {"resource": self.resource, "error": repr(exc)}},
                )
                self._restart("error")
                self._stop.wait(RETRY_SECONDS)

    def _restart(self, reason: str) -> None:
        if not self._stop.is_set():
            self._on_restart(self.resource, reason)

    def _list(self) -> str:
        """List every object into the sink, page by page; the list's resourceVersion."""
        pages: list[dict[str, Any]] = []  # the metadata of each page read so far
        self._sink.replace(self._items(pages))
        version = str(pages[-1].get("resourceVersion") or "")
        log.info("listed", extra={"fields": {"resource": self.resource, "pages": len(pages)}})
        return version

    def _items(self, pages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            response = self._list_call(limit=self._page_size, _continue=token or None,
                                       _preload_content=False)  # fmt: skip
            document = json.loads(response.data)
            del response
            metadata = document.get("metadata") or {}
            pages.append(metadata)
            items = document.get("items") or []
            del document
            while items:  # drop each item once handed over: one page in memory at most
                yield items.pop()
            token = str(metadata.get("continue") or "")
            if not token:
                return

    def _watch(self, version: str) -> tuple[str, str]:
        """Watch from `version` until the watch ends; (last version, why it ended)."""
        response = self._list_call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout,
            _preload_content=False,
            _request_timeout=(10, self._stall_seconds),
        )
        self._response = response
        try:
            for line in _until_stalled(iter_lines(response)):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    return version, "gone" if obj.get("code") == GONE else "error"
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._sink.apply(kind, obj)
        except _StalledError:
            log.warning(
                "watch stalled: no byte for the stall timeout; watching again",
                extra={"fields": {"resource": self.resource, "seconds": self._stall_seconds}},
            )
            return version, "stalled"
        finally:
            self._response = None
            response.close()
            response.release_conn()
        return version, "expired"


class NodeInventory:
    """Every Node, grouped for decisions (see `isa.fleet_index`); a FleetSource for the webhook."""

    def __init__(self, on_change: Callable[[FleetIndex], None] = lambda index: None) -> None:
        self._builder = FleetIndexBuilder()
        self._index: FleetIndex | None = None
        self._on_change = on_change

    def fleet(self) -> FleetIndex | None:
        return self._index

    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """A full list, built aside then swapped in: a list failing half-way changes nothing."""
        builder = FleetIndexBuilder(self._builder.version)
        builder.replace(self._states(objects))
        self._builder = builder
        self._publish()
        freeze_long_lived()

    @staticmethod
    def _states(objects: Iterable[dict[str, Any]]) -> Iterator[NodeState]:
        for obj in objects:
            try:
                yield node_state(obj)
            except NodeDocumentError as exc:
                log.warning("node skipped", extra={"fields": {"error": str(exc)}})

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if event_type == "DELETED":
            changed = self._builder.remove(name)
        else:
            try:
                changed = self._builder.upsert(node_state(obj))
            except NodeDocumentError as exc:
                log.warning("node skipped", extra={"fields": {"error": str(exc)}})
                changed = self._builder.remove(name)
        if changed:
            self._publish()

    def _publish(self) -> None:
        self._index = self._builder.index()
        self._on_change(self._index)


def freeze_long_lived() -> None:
    """Move what the process holds now (the inventory just listed) out of the collector's
    sight (`gc.freeze`): a full collection walked every node, the longest pause of the
    admission path (issue 12). Freed as usual when released; a full list is rare."""
    gc.freeze()


class _StalledError(Exception):
    """The watch stream sent nothing for the read timeout."""


def _until_stalled(lines: Iterator[bytes]) -> Iterator[bytes]:
    """`lines`, raising _StalledError where the stream timed out reading (urllib3 says so as
    ReadTimeoutError, or as a ProtocolError around a socket timeout)."""
    try:
        yield from lines
    except ReadTimeoutError as exc:
        raise _StalledError from exc
    except ProtocolError as exc:
        if any(
            isinstance(arg, (TimeoutError, socket.timeout, ReadTimeoutError)) for arg in exc.args
        ):
            raise _StalledError from exc
        raise


def iter_lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed watch response (one JSON event per line)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer


class ClusterInventory:
    """The node inventory with its watch thread."""

    def __init__(self, api_client: client.ApiClient, on_restart: RestartCounter) -> None:
        core = client.CoreV1Api(api_client)
        self.nodes = NodeInventory()
        self._reflector = Reflector("nodes", core.list_node, self.nodes, on_restart)

    def start(self) -> None:
        self._reflector.start()

    def stop(self) -> None:
        self._reflector.stop()

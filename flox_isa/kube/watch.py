"""List then watch one kind over `Rest` (asyncio): the operator's single API client.

Lists page by page (`limit`/`continue`), hands the whole list to `on_list`, then
watches from the list's resourceVersion with bookmarks; an expired watch resumes from
the last version seen, 410 GoneError lists again, errors retry after a pause. Objects are
plain JSON dicts.

A watch that silently stalls (black-holed: no error, no byte) is noticed as the
webhook's node watch notices it (`kube.inventory`): the server ends every watch after
WATCH_TIMEOUT_SECONDS, so a healthy one is never silent longer than that, and
STALL_SECONDS without a byte restarts it from the last version (reason "stalled").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp

from flox_isa.kube.inventory import STALL_SECONDS, WATCH_TIMEOUT_SECONDS
from flox_isa.kube.rest import REQUEST_ERRORS, ApiError, Rest

log = logging.getLogger("flox_isa.watch")

GONE: Final = 410
PAGE_SIZE: Final = 500
WATCH_SECONDS: Final = float(WATCH_TIMEOUT_SECONDS)
RETRY_SECONDS: Final = 2.0
WATCH_RESTART_REASONS: Final = ("gone", "error", "stalled")


async def list_all(
    api: Rest, path: str, params: Mapping[str, str] | None = None, page_size: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], str]:
    """Every object at `path`, a page at a time; and the list's resourceVersion."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {**(params or {}), "limit": str(page_size)}
        if token:
            query["continue"] = token
        page = await api.get(path, query)
        items += page.get("items") or []
        metadata = page.get("metadata") or {}
        token = str(metadata.get("continue") or "")
        if not token:
            return items, str(metadata.get("resourceVersion") or "")


class GoneError(Exception):
    """The watch's resourceVersion is too old: list again."""


class ListWatch:
    """`await run()` forever; `synced` is set once the first list has been handed over."""

    def __init__(
        self,
        api: Rest,
        path: str,
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        *,
        params: dict[str, str] | None = None,
        page_size: int = PAGE_SIZE,
        watch_seconds: float = WATCH_SECONDS,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.api = api
        self.path = path
        self._on_list = on_list
        self._on_event = on_event
        self._params = params or {}
        self._page_size = page_size
        self._watch_seconds = watch_seconds
        self._stall_seconds = stall_seconds
        self.synced = asyncio.Event()
        self.restarts = 0
        self.restart_reasons = dict.fromkeys(WATCH_RESTART_REASONS, 0)

    def _restarted(self, reason: str) -> None:
        self.restarts += 1
        self.restart_reasons[reason] += 1

    async def run(self) -> None:
        while True:
            try:
                version = await self._list()
                while True:
                    version = await self._watch(version)
            except GoneError:
                self._restarted("gone")
            except REQUEST_ERRORS as exc:
                self._restarted("error")
                log.warning("list/watch failed; retrying", extra={"path": self.path,
                                                                   "error": str(exc)})  # fmt: skip
                await asyncio.sleep(RETRY_SECONDS)
            except (ValueError, KeyError, TypeError) as exc:  # a malformed event or line
                self._restarted("error")
                where = {"path": self.path, "error": repr(exc)}
                log.exception("list/watch broke; listing again", extra=where)
                await asyncio.sleep(RETRY_SECONDS)

    async def _list(self) -> str:
        items, version = await list_all(self.api, self.path, self._params, self._page_size)
        self._on_list(items)
        self.synced.set()
        log.info("listed", extra={"path": self.path, "items": len(items)})
        return version

    async def _watch(self, version: str) -> str:
        params = {**self._params, "resourceVersion": version, "allowWatchBookmarks": "true"}
        events = self.api.watch(self.path, params, self._watch_seconds, self._stall_seconds)
        try:
            async for event in events:
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == GONE:
                        raise GoneError()
                    raise ApiError(int(obj.get("code") or 500), "watch", str(obj.get("message")))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_event(str(kind), obj)
        except ApiError as exc:
            if exc.status == GONE:
                raise GoneError() from None
            raise
        except aiohttp.SocketTimeoutError:  # no byte for the stall timeout (sock_read)
            self._restarted("stalled")
            log.warning(
                "watch stalled: no byte for the stall timeout; watching again",
                extra={"path": self.path, "seconds": self._stall_seconds},
            )
        return version

"""A small asyncio REST client for the writes the operator makes (aiohttp, plain JSON).

The operator runs in kopf's event loop; the kubernetes package's client is
blocking and model-class based. Requests here are plain dicts in, plain
dicts out (a write can be built first as a `Request`, then sent), and errors
carry the API server's status, message and causes.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import aiohttp

from flox_isa.kube.config import api_client

JSON: Final = "application/json"
MERGE_PATCH: Final = "application/merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
FORBIDDEN: Final = 403
# The StatusCause type of a create refused because its namespace is being deleted
# (the NamespaceLifecycle admission plugin; core/v1 NamespaceTerminatingCause).
NAMESPACE_TERMINATING: Final = "NamespaceTerminating"


@dataclass(frozen=True, slots=True)
class Request:
    """One request as plain data, built before it is sent (lightkube's `prepare_request`)."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str] | None = None
    content_type: str = JSON
    accept: str = JSON


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the API server is and how to authenticate to it."""

    server: str
    ca_path: str | None = None
    insecure: bool = False
    cert_path: str | None = None
    key_path: str | None = None
    token: str | None = None


def load_connection(kubeconfig: str | None, context: str | None = None) -> Connection:
    """The kubeconfig kubectl would use (`kube.config.resolve`), or the pod's service account."""
    with api_client(kubeconfig, context) as client:
        cfg = client.configuration
        header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
            "authorization"
        )
        token = header.split(" ", 1)[-1] if header else None
        return Connection(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            cert_path=cfg.cert_file,
            key_path=cfg.key_file,
            token=token,
        )


class ApiError(Exception):
    """A non-2xx answer; `message` is the API server's own explanation."""

    def __init__(
        self, status: int, reason: str, message: str, causes: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes  # the types of its status details' causes

    @property
    def namespace_terminating(self) -> bool:
        """A create refused because its namespace is being deleted (not RBAC)."""
        return self.status == FORBIDDEN and NAMESPACE_TERMINATING in self.causes


class Rest:
    """`async with Rest(connection) as api: await api.get("/api/v1/nodes")`."""

    def __init__(self, connection: Connection, timeout: float = 30.0, limit: int = 32) -> None:
        self.connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Rest:
        headers = {}  # Accept is per request (see `request`)
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        connector = aiohttp.TCPConnector(ssl=self._ssl_context(), limit=self._limit)
        self._session = aiohttp.ClientSession(
            base_url=self.connection.server,
            headers=headers,
            connector=connector,
            timeout=self._timeout,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.connection.server.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=self.connection.ca_path)
        if self.connection.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.connection.cert_path:
            context.load_cert_chain(self.connection.cert_path, self.connection.key_path)
        return context

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("Rest is used outside `async with`")
        data = None if body is None else json.dumps(body)
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self._session.request(
            method, path.lstrip("/"), data=data, params=params, headers=headers
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise api_error(response.status, response.reason or "", text)
            return json.loads(text) if text else {}

    async def send(self, request: Request) -> dict[str, Any]:
        """Send a request built beforehand (see `Request`)."""
        return await self.request(
            request.method,
            request.path,
            request.body,
            params=request.params,
            content_type=request.content_type,
            accept=request.accept,
        )

    async def watch(
        self, path: str, params: Mapping[str, str], timeout: float, stall: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch (`watch=true` is added), one dict per line, until it ends.

        The server ends it after `timeout` s; no byte for `stall` s (default `timeout` + 30)
        raises aiohttp.SocketTimeoutError (a black-holed connection sends no error either)."""
        if self._session is None:
            raise RuntimeError("Rest is used outside `async with`")
        query = {**params, "watch": "true", "timeoutSeconds": str(round(timeout))}
        silent = stall if stall is not None else timeout + 30
        limit = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=silent)
        async with self._session.get(
            path.lstrip("/"), params=query, headers={"Accept": JSON}, timeout=limit
        ) as response:
            if response.status >= 400:
                raise api_error(response.status, response.reason or "", await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def list_metadata(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """A list of objects' metadata only (PartialObjectMetadataList): no specs, no status."""
        return await self.request("GET", path, params=params, accept=METADATA_LIST)

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("DELETE", path, body)


# Everything a request can fail with that is worth a retry or a log line.
REQUEST_ERRORS: Final = (ApiError, aiohttp.ClientError, OSError, TimeoutError)


def api_error(status: int, reason: str, text: str) -> ApiError:
    """The error of a non-2xx answer, from its status line and its body (a Status, or text)."""
    try:
        answer = json.loads(text)
        message = str(answer.get("message") or text)
        causes = (answer.get("details") or {}).get("causes") or ()
        kinds = tuple(str(c.get("reason") or "") for c in causes if isinstance(c, dict))
    except (ValueError, AttributeError):
        message, kinds = text, ()
    return ApiError(status, reason, message.strip(), kinds)

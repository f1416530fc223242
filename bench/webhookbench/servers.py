"""The servers under load, each in its own process (`bench/webhook.py --serve KIND`).

bare: a bare ASGI app on the same uvicorn answering a fixed patch (the stack's ceiling);
ours: flox-isa's app, logging as shipped (a JSON line per decision); quiet: ours with
`--log-level WARNING`; kopf: kopf's webhook server with the same decision in an
`@kopf.on.mutate` handler; before: `ours` from another checkout (`--baseline DIR`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flox_isa.isa.offer import OfferIndex
from flox_isa.webhook.decision import Context, decide
from flox_isa.webhook.models import pod_from
from webhookbench.streams import CATALOG, fleet, realistic_pod, review_body

# The entry point: `--serve KIND` there runs one of these servers.
ENTRY = Path(__file__).resolve().parent.parent / "webhook.py"
UID = re.compile(rb'"uid":\s*"([^"]*)"')
UID_MARK = "uid-goes-here"  # where `_answering` splices the uid into an answer made once


def ours_app(nodes: int) -> Any:
    from flox_isa.kube.inventory import freeze_long_lived  # noqa: PLC0415 - server process only
    from flox_isa.webhook.app import StaticFleet, WebhookState, create_app  # noqa: PLC0415 - server process only

    state = WebhookState(CATALOG, StaticFleet(fleet(nodes)), "flox-isa")
    freeze_long_lived()  # as the node inventory does after a full list
    return create_app(state)


def bare_app(patch_file: Path | None = None) -> Any:
    """The ceiling: read the body, answer a fixed patch for its uid, no framework.

    `patch_file`: the patch to answer (base64 text, e.g. ours' answer for the pod)."""
    patch = base64.b64encode(json.dumps([{"op": "add", "path": "/metadata/labels/x",
                                          "value": "y"}]).encode()).decode()  # fmt: skip
    if patch_file is not None:
        patch = patch_file.read_text().strip()
    return _answering(patch)


def floor_app(nodes: int) -> Any:
    """The floor of any webhook on this stack that reads the review and answers ours'
    patch: the bare app after decoding each body with flox-isa's decoder
    (`models.decode_review`), answering the patch ours gives the bench pod as bytes made
    once around the uid (as ours answers: encoding a 2.5 KB patch anew per request is
    not part of the floor), and nothing else."""
    from flox_isa.webhook.app import StaticFleet, WebhookState, answer  # noqa: PLC0415 - server process only
    from flox_isa.webhook.models import decode_review  # noqa: PLC0415 - server process only

    state = WebhookState(CATALOG, StaticFleet(fleet(nodes)), "flox-isa")
    _, ours = answer(state, review_body(realistic_pod()), False)
    return _answering(json.loads(ours)["response"]["patch"], decode_review, made_once=True)


def _answering(
    patch: str, read: Callable[[bytes], object] | None = None, *, made_once: bool = False
) -> Any:
    """The bare app answering `patch`; `read`: what it does with each body first;
    `made_once`: the answer's bytes made once around the uid, not encoded per request."""
    head, tail = _answer_text(UID_MARK, patch).split(UID_MARK.encode())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if read is not None:
            read(body)
        found = UID.search(body)  # the request's uid comes first in an AdmissionReview
        uid = found.group(1).decode() if found else "none"
        answer = head + uid.encode() + tail if made_once else _answer_text(uid, patch)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})

    return app


def _answer_text(uid: str, patch: str) -> bytes:
    response = {"uid": uid, "allowed": True, "patchType": "JSONPatch", "patch": patch}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "response": response}).encode()  # fmt: skip


# The uvicorn servers and how each logs: ours as shipped (a line per decision), quiet as
# with `--log-level WARNING`, bare not at all.
SERVER_LOG_LEVELS: dict[str, str | None] = {
    "bare": None,
    "ours": "INFO",
    "quiet": "WARNING",
    "floor": None,
}


def serve_uvicorn(app: Any, port: int, cert: Path, key: Path, *, log_level: str | None) -> None:
    """`log_level`: log as `flox-isa webhook --log-level LEVEL` does (INFO, the default,
    writes a JSON line per decision; WARNING none); None: no logging set up (bare)."""
    import uvicorn  # noqa: PLC0415 - server process only

    from flox_isa import logs  # noqa: PLC0415 - server process only
    from flox_isa.webhook.serve import QUIET_LOGGERS, server_config  # noqa: PLC0415 - server process only

    if log_level is not None:
        logs.setup_logging(log_level, quiet=QUIET_LOGGERS)
    config, _ = server_config(app, "127.0.0.1", port, cert, key)
    uvicorn.Server(config).run()


def serve_kopf(port: int, cert: Path, key: Path, nodes: int) -> None:
    """kopf's own admission path: WebhookServer -> serve_admission_request -> handler."""
    import functools  # noqa: PLC0415 - server process only

    import kopf  # noqa: PLC0415 - server process only
    from kopf._cogs.structs import ephemera, references  # noqa: PLC0415 - kopf internals
    from kopf._core.engines import admission, indexing  # noqa: PLC0415 - kopf internals
    from kopf._core.intents import registries  # noqa: PLC0415 - kopf internals
    from kopf._core.reactor import inventory  # noqa: PLC0415 - kopf internals

    offers = OfferIndex(fleet(nodes), CATALOG)
    registry = registries.OperatorRegistry()

    @kopf.on.mutate("v1", "pods", id="flox", operation="CREATE", registry=registry)
    def mutate(body: Any, patch: Any, warnings: list[str], **_: Any) -> None:
        pod = pod_from(dict(body))
        decision = decide(pod, "tickets", False, Context(CATALOG, offers, "flox-isa"))
        if not decision.allowed:
            raise kopf.AdmissionError(decision.message, code=decision.code)
        warnings.extend(decision.warnings)
        for op in decision.patch:  # JSONPatch ops -> kopf's merge-style patch
            *parents, last = [p.replace("~1", "/") for p in op["path"].split("/")[1:]]
            if any(part.isdigit() or part == "-" for part in (*parents, last)):
                continue  # into a list (a container's env): a merge patch cannot; kopf does less
            target = patch
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = op["value"]

    settings = kopf.OperatorSettings()
    insights = references.Insights()
    insights.webhook_resources.add(
        references.Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)
    )
    memobase: Any = ephemera.Memo()
    fn = functools.partial(
        admission.serve_admission_request, settings=settings, registry=registry,
        insights=insights, memories=inventory.ResourceMemories(), memobase=memobase,
        indices=indexing.OperatorIndexers().indices,
    )  # fmt: skip
    server = kopf.WebhookServer(addr="127.0.0.1", port=port, certfile=str(cert), pkeyfile=str(key))

    async def run() -> None:
        async with server as serving:
            async for _ in serving(fn):
                pass

    import logging  # noqa: PLC0415 - server process only

    logging.disable(logging.INFO)  # kopf's own per-request lines are not counted against it
    asyncio.run(run())


def serve(  # noqa: PLR0917 - one server's whole command line
    kind: str, port: int, cert: Path, key: Path, nodes: int, patch_file: Path | None = None
) -> None:
    """Run server `kind` (one of SERVER_KINDS) in this process until it is stopped."""
    if kind == "kopf":
        serve_kopf(port, cert, key, nodes)
        return
    if kind == "bare":
        app = bare_app(patch_file)
    elif kind == "floor":
        app = floor_app(nodes)
    else:
        app = ours_app(nodes)
    serve_uvicorn(app, port, cert, key, log_level=SERVER_LOG_LEVELS[kind])


SERVER_KINDS = (*SERVER_LOG_LEVELS, "kopf")


def server_argv(
    kind: str, port: int, cert: Path, key: Path, nodes: int, *, entry: Path = ENTRY
) -> list[str]:
    """The command that runs server `kind`; `entry`: another checkout's bench/webhook.py."""
    return [sys.executable, str(entry), "--serve", kind, "--port", str(port),
            "--cert", str(cert), "--key", str(key), "--nodes", str(nodes)]  # fmt: skip


@contextmanager
def running(argvs: dict[str, list[str]], ports: dict[str, int]) -> Iterator[dict[str, int]]:
    """The servers started, listening, and stopped afterwards; yields each one's pid."""
    servers = {
        kind: subprocess.Popen(argv, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for kind, argv in argvs.items()
    }
    try:
        for port in ports.values():
            wait_listening(port)
        yield {kind: server.pid for kind, server in servers.items()}
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=20)


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) megabytes of process `pid` (Linux /proc)."""
    kilobytes: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            kilobytes[name] = int(value.split()[0])
    return kilobytes["VmRSS"] / 1024, kilobytes["VmHWM"] / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not start")

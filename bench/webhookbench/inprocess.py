"""Per-call cost of each ASGI app in process: no sockets, no TLS, no client.

What one admission costs the server itself, apart from uvicorn and the load generator:
noise-robust (no scheduler between two processes), so a per-request breakdown of the
HTTP figures. Each server is its own child process (this file run as a script, with
`--code DIR`: the checkout whose `flox_isa` it loads, for `before`), kept alive and
asked in turn for one stream at a time, round after round; the best round is kept.
The child logs as the HTTP servers do (`ours` a JSON line per decision, to /dev/null).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# Calls before each measurement (connections' and caches' warm-up in the HTTP part).
WARM_UP = 500
# (server, stream) -> seconds per call, the best round.
Costs = dict[tuple[str, str], float]


def in_process_benchmarks(
    nodes: int,
    rounds: int,
    calls: int,
    *,
    baseline: Path | None = None,
    streams: list[str],
) -> Costs:
    """`calls` calls of each app per stream and round, every app in its own process."""
    codes = {"bare": HERE.parents[2], "ours": HERE.parents[2], "quiet": HERE.parents[2]}
    if baseline is not None:
        codes["before"] = baseline
    print(f"ASGI app called in process (no sockets): {nodes} nodes, {rounds} rounds x"
          f" {calls} calls per server and stream, best round shown; each server one process,"
          " logging as over HTTP (ours: a JSON line per decision, to /dev/null)")  # fmt: skip
    children = {kind: _start(kind, code, nodes, streams) for kind, code in codes.items()}
    best: Costs = {}
    try:
        for _ in range(rounds):
            for stream in streams:
                for kind, child in children.items():
                    cost = _ask(child, stream, calls)
                    best[(kind, stream)] = min(best.get((kind, stream), cost), cost)
    finally:
        for child in children.values():
            if child.stdin is not None:
                child.stdin.close()
            child.wait(timeout=30)
    print_costs(best, list(codes), streams)
    return best


def print_costs(best: Costs, kinds: list[str], streams: list[str]) -> None:
    for stream in streams:
        bare = best[("bare", stream)]
        cells = []
        for kind in kinds:
            cost = best.get((kind, stream))
            if cost is not None:
                more = "" if kind == "bare" else f" (+{(cost - bare) * 1e6:.1f})"
                cells.append(f"{kind} {cost * 1e6:7.1f}{more}")
        print(f"  {stream:8} us per call: " + "   ".join(cells))


def _start(kind: str, code: Path, nodes: int, streams: list[str]) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HERE), "--kind", kind, "--code", str(code),
            "--nodes", str(nodes), "--streams", ",".join(streams)]  # fmt: skip
    child = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    _reply(child)  # "ready"
    return child


def _ask(child: subprocess.Popen[str], stream: str, calls: int) -> float:
    assert child.stdin is not None
    child.stdin.write(f"{stream} {calls}\n")
    child.stdin.flush()
    return float(_reply(child)["seconds_per_call"])


def _reply(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"in-process child {child.args!r} exited ({child.wait()})")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise RuntimeError(f"in-process child {child.args!r}: {reply['error']}")
    return reply


# --- the child ---------------------------------------------------------------------------


class Calls:
    """One app and its request bodies; `run` times calls through the ASGI interface."""

    def __init__(self, app: Any, sets: dict[str, list[bytes]]) -> None:
        self.app, self.sets = app, sets
        self.turn = dict.fromkeys(sets, 0)
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "https", "path": "/mutate", "raw_path": b"/mutate",
            "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8443),
            "client": ("127.0.0.1", 40000),
            "headers": [(b"host", b"127.0.0.1:8443"), (b"content-type", b"application/json")],
        }  # fmt: skip

    async def run(self, stream: str, calls: int) -> float:
        last: dict[str, Any] = {}

        async def send(message: dict[str, Any]) -> None:
            last[message["type"]] = message  # the last answer's start and body

        await self._calls(stream, min(WARM_UP, calls), send)
        body = last["http.response.body"]["body"]
        if b'"allowed":true' not in body.replace(b" ", b""):
            raise RuntimeError(f"unexpected answer: {body[:200]!r}")
        started = time.perf_counter()
        await self._calls(stream, calls, send)
        return (time.perf_counter() - started) / calls

    async def _calls(self, stream: str, calls: int, send: Any) -> None:
        """`calls` requests of `stream`, going on where the last call left off (a body
        comes back only after the whole stream, as over HTTP)."""
        app, scope, bodies, turn = self.app, self.scope, self.sets[stream], self.turn[stream]
        for _ in range(calls):
            turn = (turn + 1) % len(bodies)
            message = {"type": "http.request", "body": bodies[turn], "more_body": False}

            async def receive(message: dict[str, Any] = message) -> dict[str, Any]:
                return message

            await app(scope, receive, send)
        self.turn[stream] = turn


def _child(argv: list[str]) -> None:
    import argparse  # noqa: PLC0415 - the child only

    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True)
    parser.add_argument("--code", type=Path, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--streams", required=True)
    parser.add_argument("--bodies", type=int, default=8192, help="per stream")
    parser.add_argument("--callgrind", action="store_true", help="count, not time (see below)")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(args.code), str(HERE.parents[1])]  # its flox_isa, our webhookbench
    try:
        calls = _child_calls(args.kind, args.nodes, args.streams.split(","), args.bodies)
    except Exception as exc:  # reported to the parent, which raises it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.new_event_loop()
    for line in sys.stdin:
        stream, count = line.split()
        try:
            if args.callgrind:
                _count(loop, calls, stream, int(count))
                reply: dict[str, Any] = {"dumped": stream}
            else:
                reply = {"seconds_per_call": loop.run_until_complete(calls.run(stream, int(count)))}
        except Exception as exc:  # reported to the parent, which raises it
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            return
        print(json.dumps(reply), flush=True)


def _count(loop: asyncio.AbstractEventLoop, calls: Calls, stream: str, count: int) -> None:
    """Under callgrind started with `--instr-atstart=no` (see `instructions`): a warm-up
    run uncounted, then a run of `count` calls dumped as `one`, a run of twice as many as
    `two`; their difference is `count` steady calls, the control's own cost cancelled."""
    loop.run_until_complete(calls.run(stream, count))
    _callgrind("--instr=on")
    loop.run_until_complete(calls.run(stream, count))
    _callgrind("--dump=one")
    loop.run_until_complete(calls.run(stream, 2 * count))
    _callgrind("--dump=two")
    _callgrind("--instr=off")


def _callgrind(option: str) -> None:
    """Tell the callgrind this process runs under (callgrind_control, waits for it)."""
    subprocess.run(["callgrind_control", option, str(os.getpid())], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def _child_calls(kind: str, nodes: int, streams: list[str], bodies: int) -> Calls:
    from webhookbench.servers import SERVER_LOG_LEVELS, bare_app, floor_app, ours_app  # noqa: PLC0415
    from webhookbench.streams import request_sets  # noqa: PLC0415

    sets = {name: made for name, made in request_sets(bodies).items() if name in streams}
    if kind == "bare":
        app = bare_app()
    elif kind == "floor":
        app = floor_app(nodes)
    else:
        app = ours_app(nodes)
    level = SERVER_LOG_LEVELS["ours" if kind == "before" else kind]
    if level is not None:
        from flox_isa import logs  # noqa: PLC0415
        from flox_isa.webhook.serve import QUIET_LOGGERS  # noqa: PLC0415

        logs.setup_logging(level, quiet=QUIET_LOGGERS)  # stderr is /dev/null
    return Calls(app, sets)


if __name__ == "__main__":
    _child(sys.argv[1:])

"""Throughput and latency over TLS: every server up at once, loaded in turn.

Each round loads every server with every stream, one after the other (bare, ours,
quiet[, before] per stream, then kopf on fresh), so machine noise hits them alike.
Closed loop (saturation): each server's best round (most req/s) is kept. Open loop
(`rate`: requests/s, or "half": half of bare's closed-loop req/s on each stream, measured
first in the same run): each server's best round (lowest p99) is kept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flox_isa.webhook.certs import write_serving_certs
from webhookbench.client import load
from webhookbench.report import Results, print_http, print_open_loop
from webhookbench.servers import ENTRY, free_port, memory_mb, running, server_argv
from webhookbench.streams import KOPF_STREAMS, STREAMS, request_sets

# `--rate half`: the open-loop rate (half the bare app's maximum, per stream).
HALF = "half"
# `--rate own-half`: each server offered half of its own maximum (no target): its tail at
# the load bare has under `half`, so what is left of a gap there is throughput, not pauses.
OWN_HALF = "own-half"
RATE_CHOICES = (HALF, OWN_HALF)


def http_benchmarks(
    seconds: float,
    connections: int,
    nodes: int,
    rounds: int,
    *,
    baseline: Path | None = None,
    streams: list[str] | None = None,
    rate: float | str | None = None,
    floor: bool = False,
) -> Results:
    """`baseline`: a checkout of another revision, whose `ours` is loaded as `before`;
    `streams`: which of STREAMS (all by default; kopf is loaded with KOPF_STREAMS only);
    `rate`: open loop as well ("half", "own-half") or instead (a number of requests/s);
    `floor`: load `floor` too (decode only, answer ours' patch: `servers.floor_app`)."""
    streams = list(STREAMS) if streams is None else streams
    sets = request_sets()
    print(f"POST /mutate over TLS: bodies of {len(sets['replicas'][0])} bytes, {nodes} nodes,"
          f" {connections} connections; {rounds} rounds x {seconds:g}s per server and stream;"
          " each server one process, the client another")  # fmt: skip
    kinds = ["bare", *(["floor"] if floor else []), "ours", "quiet",
             *(["before"] if baseline is not None else [])]  # fmt: skip
    paths = dict.fromkeys(kinds, "/mutate")
    runs = [(kind, stream) for stream in streams for kind in kinds]
    kopf_streams = [stream for stream in streams if stream in KOPF_STREAMS]
    if kopf_streams:
        paths["kopf"] = "/flox"
        runs += [("kopf", stream) for stream in kopf_streams]
    best: Results = {}
    with tempfile.TemporaryDirectory() as tmp:
        certs = write_serving_certs(Path(tmp))
        ports = {kind: free_port() for kind in paths}
        argvs = {
            kind: server_argv(
                "ours" if kind == "before" else kind,
                ports[kind],
                certs.cert_path,
                certs.key_path,
                nodes,
                entry=baseline / "bench" / "webhook.py" if kind == "before" and baseline else ENTRY,
            )
            for kind in paths
        }

        def one(kind: str, stream: str, rate: float | None = None) -> dict[str, float]:
            return load(ports[kind], certs.ca_path, sets[stream], paths[kind], seconds=seconds,
                        connections=connections, rate=rate)  # fmt: skip

        with running(argvs, ports) as pids, cores_apart(pids.values()):
            if not isinstance(rate, float):  # closed loop: at saturation
                for _ in range(rounds):
                    for kind, stream in runs:
                        result = one(kind, stream)
                        if result["rps"] > best.get((kind, stream), {}).get("rps", 0.0):
                            best[(kind, stream)] = result
                print("  closed loop (at saturation), best round (most req/s):")
                print_http(best, list(paths), streams)
            print_memory(pids, nodes)
            if rate is None:
                return best
            rates = {
                (kind, stream): rate
                if isinstance(rate, float)
                else best[("bare" if rate == HALF else kind, stream)]["rps"] / 2
                for kind, stream in runs
            }
            opened: Results = {}
            for _ in range(rounds):
                for kind, stream in runs:
                    result = one(kind, stream, rates[(kind, stream)])
                    if result["p99_ms"] < opened.get((kind, stream), {}).get("p99_ms", 1e9):
                        opened[(kind, stream)] = result
    print_open_loop(opened, rates, list(paths), streams, own=rate == OWN_HALF)
    return opened


@contextmanager
def cores_apart(servers: Iterable[int]) -> Iterator[None]:
    """The servers on one core, this process (the client) on the others, as the issue's
    wrk figures were taken: the two never compete for a core. Loaded one at a time, the
    servers do not compete with each other. As is on one core, or without CPU affinity."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        yield
        return
    for pid in servers:
        for thread in Path(f"/proc/{pid}/task").iterdir():  # each thread has its own
            os.sched_setaffinity(int(thread.name), cores[-1:])
    os.sched_setaffinity(0, cores[:-1])
    print(f"  servers pinned to CPU {cores[-1]}, the client to CPU {cores[:-1]}")
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def print_memory(pids: dict[str, int], nodes: int) -> None:
    """Each server's resident memory now and at its peak, with `nodes` in its inventory."""
    cells = []
    for kind, pid in pids.items():
        resident, peak = memory_mb(pid)
        cells.append(f"{kind} {resident:.0f} MB (peak {peak:.0f})")
    print(f"  server RSS with {nodes} nodes: " + ", ".join(cells))

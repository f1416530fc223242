"""The tables of the HTTP benchmark: figures per server and stream, ratios against bare."""

from __future__ import annotations

from webhookbench.streams import KOPF_STREAMS, STREAMS

# (server, stream) -> {"rps", "p50_ms", "p99_ms"}: the best round of each.
Results = dict[tuple[str, str], dict[str, float]]
# Throughput against the bare ASGI app on the same uvicorn, per stream (issue 12; cold
# came later and has none).
TARGETS = {"replicas": 0.8, "distinct": 0.6, "fresh": 0.4}
# Open loop: p99 at most this many times the bare app's, at the same rate (issue 12).
P99_TARGET = 2.0
# Servers whose throughput is given as a ratio to bare's (when they ran); the targets are
# ours' (and its variants'), the floor is a reference (`servers.floor_app`).
COMPARED = ("floor", "ours", "quiet", "before")
TARGETED = frozenset({"ours", "quiet", "before", "kopf"})


def _rows(best: Results, kinds: list[str], stream: str) -> None:
    for kind in kinds:
        r = best.get((kind, stream))
        if r is not None:
            print(f"    {kind:6} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms"
                  f"   p99 {r['p99_ms']:6.2f} ms")  # fmt: skip


def print_http(best: Results, kinds: list[str], streams: list[str]) -> None:
    """Per stream: each server's req/s, p50, p99, then each ratio to bare; then ours/kopf."""
    for stream in streams:
        print(f"  {stream}: {STREAMS[stream]}")
        _rows(best, kinds, stream)
        bare = best[("bare", stream)]
        for kind in COMPARED:
            r = best.get((kind, stream))
            if r is None:
                continue
            ratio, p99 = r["rps"] / bare["rps"], r["p99_ms"] / bare["p99_ms"]
            targeted = stream in TARGETS and kind in TARGETED
            target = f" (target >= {TARGETS[stream]}x)" if targeted else ""
            print(f"    {kind} / bare-ASGI throughput: {ratio:.2f}x{target};"
                  f" p99 {p99:.1f}x bare's")  # fmt: skip
    for stream in KOPF_STREAMS:
        if ("kopf", stream) in best and ("ours", stream) in best:
            kopf = best[("ours", stream)]["rps"] / best[("kopf", stream)]["rps"]
            print(f"  ours / kopf throughput, {stream} pods (kopf decides every time):"
                  f" {kopf:.2f}x (target > 1x)")  # fmt: skip


def print_open_loop(
    best: Results,
    rates: dict[tuple[str, str], float],
    kinds: list[str],
    streams: list[str],
    *,
    own: bool = False,
) -> None:
    """Per stream: the offered rate, each server's answered req/s, p50, p99, p99 ratios.
    `own`: each server was offered half of its own maximum (`rates` per server)."""
    print("  open loop (a fixed offered rate; latency from when each request was due),"
          " best round (lowest p99):")  # fmt: skip
    for stream in streams:
        offered = (
            "each server half of its own maximum"
            if own
            else f"offered {rates[('bare', stream)]:.0f} req/s"
        )
        print(f"  {stream}: {STREAMS[stream]}; {offered}")
        _rows(best, kinds, stream)
        bare = best[("bare", stream)]
        for kind in (*COMPARED, "kopf"):
            r = best.get((kind, stream))
            if r is not None:
                p99, p50 = r["p99_ms"] / bare["p99_ms"], r["p50_ms"] / bare["p50_ms"]
                print(f"    {kind} / bare-ASGI p99: {p99:.1f}x ({_p99_note(kind, own)});"
                      f" p50 {p50:.1f}x")  # fmt: skip


def _p99_note(kind: str, own: bool) -> str:
    """What an open-loop p99 ratio is held to: the target at bare's rate, else nothing."""
    if own:
        return "at the same load as bare's"
    return f"target <= {P99_TARGET:g}x" if kind in TARGETED else "a reference"

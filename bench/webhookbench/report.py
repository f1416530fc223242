"""The table of the HTTP benchmark: figures per server and stream, ratios against bare."""

from __future__ import annotations

from webhookbench.streams import STREAMS

# (server, stream) -> {"rps", "p50_ms", "p99_ms"}: the best round of each.
Results = dict[tuple[str, str], dict[str, float]]
# Throughput against the bare ASGI app on the same uvicorn, per stream (issue 12).
TARGETS = {"replicas": 0.8, "distinct": 0.6, "fresh": 0.4}
# Servers whose throughput is given as a ratio to bare's (when they ran).
COMPARED = ("ours", "quiet", "before")


def print_http(best: Results, kinds: list[str], streams: list[str]) -> None:
    """Per stream: each server's req/s, p50, p99, then each ratio to bare; then ours/kopf."""
    for stream in streams:
        print(f"  {stream}: {STREAMS[stream]}")
        for kind in kinds:
            r = best.get((kind, stream))
            if r is not None:
                print(f"    {kind:6} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms"
                      f"   p99 {r['p99_ms']:6.2f} ms")  # fmt: skip
        bare = best[("bare", stream)]
        for kind in COMPARED:
            r = best.get((kind, stream))
            if r is None:
                continue
            ratio, p99 = r["rps"] / bare["rps"], r["p99_ms"] / bare["p99_ms"]
            print(f"    {kind} / bare-ASGI throughput: {ratio:.2f}x"
                  f" (target >= {TARGETS[stream]}x); p99 {p99:.1f}x bare's")  # fmt: skip
    if ("kopf", "fresh") not in best:
        return
    kopf = best[("ours", "fresh")]["rps"] / best[("kopf", "fresh")]["rps"]
    print(f"  ours / kopf throughput, fresh pods (both decide every time): {kopf:.2f}x"
          " (target > 1x)")  # fmt: skip

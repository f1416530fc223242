"""Decision time at 10 vs 5,000 nodes, in process (steady state, and cold: no memo)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flox_isa.isa.offer import OfferIndex
from flox_isa.webhook.decision import Context, Decision, decide
from flox_isa.webhook.models import pod_from
from webhookbench.streams import CATALOG, fleet, realistic_pod


def decision_benchmarks(repeat: int = 9, number: int = 2000) -> dict[str, float]:
    """Best time per decide() call; the two fleets measured alternately, so noise hits both."""
    pod = pod_from(realistic_pod())
    calls: dict[str, Callable[[], Any]] = {}
    groups: dict[int, int] = {}
    for count in (10, 5000):
        offers = OfferIndex(fleet(count), CATALOG)
        ctx = Context(CATALOG, offers, "flox-isa")
        groups[count] = len(offers.fleet.groups)

        def steady(ctx: Context = ctx) -> Decision:
            return decide(pod, "tickets", False, ctx)

        def cold(ctx: Context = ctx, offers: OfferIndex = offers) -> Decision:
            offers.fleet._eligible.clear()  # every decision recomputes the offer over the groups
            return decide(pod, "tickets", False, ctx)

        calls[f"steady_{count}"], calls[f"cold_{count}"] = steady, cold
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for name, fn in calls.items():
            started = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / number)
    print(f"decide() per pod, realistic pod, int8-inference (best of {repeat} x {number}):")
    for count in (10, 5000):
        steady_us, cold_us = best[f"steady_{count}"] * 1e6, best[f"cold_{count}"] * 1e6
        print(f"  {count:5} nodes, {groups[count]} groups:"
              f" steady {steady_us:6.1f} us   cold (no memo) {cold_us:6.1f} us")  # fmt: skip
    for mode in ("steady", "cold"):
        ratio = best[f"{mode}_5000"] / best[f"{mode}_10"]
        print(f"  {mode} ratio 5000/10 nodes: {ratio:.2f} (target <= 1.2)")
    return best

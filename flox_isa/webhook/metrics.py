"""Prometheus metrics of the webhook, on their own registry (one per app: tests stay apart)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from flox_isa.isa.fleet_index import FleetIndex

# Admission calls must finish well inside the apiserver's timeout (10 s max, ours ~2 s).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)


class RequestCount:
    """The number of admission requests with one (outcome, reason, variant)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class AdmissionStats(Collector):
    """Admission requests by outcome, reason and variant, and how long each took: the
    Counter `flox_isa_webhook_requests` and the Histogram
    `flox_isa_webhook_request_duration_seconds`, counted in plain integers.

    prometheus_client's own take a lock per update: ~2 us of each admission, which the
    event loop's thread alone updates. A scrape (on the event loop, or `serve_plain`'s
    thread) reads the values of a moment: a count may lag its sum by a request.
    """

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.in_bucket = [0] * (len(self.buckets) + 1)  # the last: above every bound
        self.seconds = 0.0
        self.requests: dict[tuple[str, str, str], RequestCount] = {}

    def request_count(self, outcome: str, reason: str, variant: str | None) -> RequestCount:
        """The count for these labels (its `inc()` counts one request)."""
        key = (outcome, reason, variant or "")
        count = self.requests.get(key)
        if count is None:
            count = self.requests[key] = RequestCount()
        return count

    def observe(self, seconds: float) -> None:
        self.in_bucket[bisect.bisect_left(self.buckets, seconds)] += 1
        self.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "flox_isa_webhook_requests",
            "Admission requests by outcome (patched, unchanged, skipped, denied, error,"
            " bad_request), reason code and chosen variant.",
            labels=["outcome", "reason", "variant"],
        )
        for key, count in list(self.requests.items()):
            requests.add_metric(key, count.value)
        yield requests
        # As the library writes `le` (its utils have no type hints).
        bounds = [floatToGoString(b) for b in self.buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        cumulative = itertools.accumulate(list(self.in_bucket))
        yield HistogramMetricFamily(
            "flox_isa_webhook_request_duration_seconds",
            "Time to answer POST /mutate, parsing included.",
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=self.seconds,
        )


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def request_counter(self, outcome: str, reason: str, variant: str | None) -> RequestCount:
        """The requests counter for these labels (its `inc()` counts one request)."""
        return self.admissions.request_count(outcome, reason, variant)

    def __post_init__(self) -> None:
        self.admissions = AdmissionStats()
        self.registry.register(self.admissions)
        self.inventory_nodes = Gauge(
            "flox_isa_inventory_nodes",
            "Nodes in the in-memory inventory.",
            registry=self.registry,
        )
        self.inventory_groups = Gauge(
            "flox_isa_inventory_node_groups",
            "Distinct node groups (features, labels, taints, readiness) in the inventory.",
            registry=self.registry,
        )
        self.late_binding = Gauge(
            "flox_isa_webhook_late_binding",
            "1 while pods are gated for the placement controller (its Lease is renewed),"
            " 0 while they are pinned at admission.",
            registry=self.registry,
        )
        self.watch_restarts = Counter(
            "flox_isa_inventory_watch_restarts",
            "Node watch restarts by reason (expired, gone, stalled, error).",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.tls_reloads = Counter(
            "flox_isa_webhook_tls_reloads",
            "Certificate reloads from disk.",
            registry=self.registry,
        )


def serve_plain(
    metrics: Metrics, fleet: Callable[[], FleetIndex | None], host: str, port: int
) -> None:
    """GET /metrics over plain HTTP in a daemon thread (a scraper needs no CA, and the
    admission port no opening to it). The inventory gauges are read at scrape time from
    `fleet()`, the published snapshot (no lock, no request-path state)."""

    def nodes() -> float:
        index = fleet()
        return 0.0 if index is None else float(index.node_count)

    def groups() -> float:
        index = fleet()
        return 0.0 if index is None else float(len(index.groups))

    metrics.inventory_nodes.set_function(nodes)
    metrics.inventory_groups.set_function(groups)
    start_http_server(port, addr=host, registry=metrics.registry)

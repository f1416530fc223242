"""Prometheus metrics of the webhook, on their own registry (one per app: tests stay apart)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # requests' children by labels: `labels()` checks and locks on every call.
    _request_counters: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def request_counter(self, outcome: str, reason: str, variant: str | None) -> Any:
        """The requests counter for these labels (its `inc()` counts one request)."""
        key = (outcome, reason, variant or "")
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(*key)
        return counter

    def __post_init__(self) -> None:
        self.requests = Counter(
            "flox_isa_webhook_requests",
            "Admission requests by outcome (patched, unchanged, skipped, denied, error,"
            " bad_request), reason code and chosen variant.",
            ["outcome", "reason", "variant"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flox_isa_webhook_request_duration_seconds",
            "Time to answer POST /mutate, parsing included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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

"""The webhook's admission metrics: what prometheus_client's own Counter and Histogram
would export for the same requests, without their lock per update."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from flox_isa.webhook.metrics import LATENCY_BUCKETS, Metrics

DURATIONS = [0.0001, 0.0005, 0.00051, 0.003, 0.005, 0.7, 2.0, 9.9, 10.0, 12.5]
REQUESTS = [("patched", "auto", "avx2"), ("patched", "auto", "avx2"), ("denied", "conflict", None)]


def _samples(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if not line.startswith("#") and "_created" not in line)


def test_admissions_export_what_the_librarys_counter_and_histogram_would() -> None:
    ours = Metrics()
    for outcome, reason, variant in REQUESTS:
        ours.request_counter(outcome, reason, variant).inc()
    for seconds in DURATIONS:
        ours.admissions.observe(seconds)

    reference = CollectorRegistry()
    requests = Counter("flox_isa_webhook_requests", "-", ["outcome", "reason", "variant"],
                       registry=reference)  # fmt: skip
    latency = Histogram("flox_isa_webhook_request_duration_seconds", "-",
                        buckets=LATENCY_BUCKETS, registry=reference)  # fmt: skip
    for outcome, reason, variant in REQUESTS:
        requests.labels(outcome, reason, variant or "").inc()
    for seconds in DURATIONS:
        latency.observe(seconds)

    exported = [line for line in _samples(ours.registry) if "webhook_request" in line]
    assert exported == _samples(reference)

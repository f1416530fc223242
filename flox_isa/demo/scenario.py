"""The demo's workloads, as plain manifests (pure data, no I/O)."""

from __future__ import annotations

from typing import Any

from flox_isa.isa import names

NAMESPACE = "flox-demo"
TICKETWORKER = "embedder"
SUMMARIZER = "summarizer"
# The report also says how the TicketWorker would be sized by `spec.throughput: 600`.
THROUGHPUT_TARGET = 600.0


def namespace() -> dict[str, Any]:
    """The demo namespace, opted in to the webhook as a whole."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {names.INJECT_LABEL: "true"}},
    }


def ticketworker(replicas: int = 12) -> dict[str, Any]:
    """int8 embedding workers: the operator spreads them over every variant the fleet offers."""
    return {
        "apiVersion": f"{names.GROUP}/v1alpha1",
        "kind": "TicketWorker",
        "metadata": {"name": TICKETWORKER, "namespace": NAMESPACE},
        "spec": {
            "environment": "acme/ticket-embedder",
            "workload": "int8-inference",
            "replicas": replicas,
            "placement": "spread",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
                        }
                    ]
                }
            },
        },
    }


def summarizer(replicas: int = 16) -> dict[str, Any]:
    """fp32 summarization workers: a plain Deployment that the webhook gates and the
    placement controller places. 16 x 2 CPUs is more than the AVX-512 nodes have room
    for beside the TicketWorker: the rest spill to the next-best variant with room."""
    labels = {"app": SUMMARIZER}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SUMMARIZER, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        names.ENVIRONMENT_ANNOTATION: "acme/ticket-summarizer",
                        names.WORKLOAD_ANNOTATION: "fp32-inference",
                    },
                },
                "spec": {
                    "runtimeClassName": "flox",
                    "containers": [
                        {
                            "name": "worker",
                            "image": "flox/empty:1.0.0",
                            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}},
                        }
                    ],
                },
            },
        },
    }

"""Kubernetes Events as plain requests: one builder for the TicketWorker and placement loops."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from flox_isa.isa import names
from flox_isa.kube.rest import Request
from flox_isa.operator.render import FIELD_MANAGER as COMPONENT

MAX_MESSAGE: Final = 1024


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(
    involved: Mapping[str, str],
    kind: str,
    reason: str,
    message: str,
    instance: str,
    *,
    stamp: str | None = None,
) -> Request:
    """The POST of an Event about `involved` (apiVersion, kind, name, namespace, uid)."""
    stamp = stamp or now()
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": dict(involved),
        "type": kind,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": f"{names.GROUP}/{COMPONENT}",
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    return Request("POST", f"/api/v1/namespaces/{involved['namespace']}/events", body)

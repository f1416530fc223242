"""The operator's /readyz and /metrics, computed from its run state (no cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

from flox_isa.isa.catalog import default_catalog
from flox_isa.operator.run import Options, not_ready_reason, operator_metrics


class FakeElector:
    def __init__(self, last_contact: float | None) -> None:
        self.last_contact = last_contact


class FakeNodes:
    def __init__(self, listed: bool) -> None:
        self.synced = asyncio.Event()
        self.restarts = 0
        self.restart_reasons = {"gone": 0, "error": 1, "stalled": 2}
        if listed:
            self.synced.set()


def state(role: str, contact: float | None, *, listed: bool = False) -> dict[str, Any]:
    options = Options(catalog=default_catalog(), lease_duration=15.0)
    found: dict[str, Any] = {"role": role, "options": options, "elector": FakeElector(contact)}
    if role == "leader":
        found["nodes"] = FakeNodes(listed)
    return found


def test_a_standby_that_reaches_the_api_server_is_ready() -> None:
    # Not "is leader": a standby that is not Ready would block node drains (PDB).
    assert not_ready_reason(state("standby", 100.0), now=105.0) == ""


def test_a_replica_that_cannot_reach_the_api_server_is_not_ready() -> None:
    assert "no Lease request has succeeded yet" in not_ready_reason(state("standby", None), 1.0)
    assert "for 30 s" in not_ready_reason(state("standby", 100.0), now=130.0)


def test_a_leader_is_ready_once_it_has_listed_the_nodes() -> None:
    assert "not listed" in not_ready_reason(state("leader", 100.0), now=101.0)
    assert not_ready_reason(state("leader", 100.0, listed=True), now=101.0) == ""


def test_metrics_say_who_leads() -> None:
    leader = operator_metrics(state("leader", 1.0)).decode()
    assert "flox_isa_operator_leader 1\n" in leader
    standby = operator_metrics(state("standby", 1.0)).decode()
    assert "flox_isa_operator_leader 0\n" in standby
    assert "flox_isa_operator_ticketworkers_degraded 0\n" in standby


def test_metrics_count_node_watch_restarts_by_reason() -> None:
    leader = operator_metrics(state("leader", 1.0)).decode()
    assert 'flox_isa_operator_watch_restarts_total{reason="stalled"} 2\n' in leader
    assert 'flox_isa_operator_watch_restarts_total{reason="error"} 1\n' in leader
    standby = operator_metrics(state("standby", 1.0)).decode()
    assert 'flox_isa_operator_watch_restarts_total{reason="stalled"} 0\n' in standby

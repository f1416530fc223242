"""The operator's runtime pieces without a cluster: work queue, Lease rules, webhook guard."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.planning import Plan, Share, best_node_preference, outranking
from flox_isa.kube.lease import LeaseConfig, can_take, format_time, taken_spec
from flox_isa.operator.models import TicketWorkerSpec
from flox_isa.operator.render import Owner, render
from flox_isa.operator.workqueue import WorkQueue
from flox_isa.webhook.decision import Context, decide
from flox_isa.webhook.models import Pod

CATALOG = default_catalog()
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_keys_added_in_a_burst_are_processed_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for _ in range(50):
            queue.add("a", 0.01)
        queue.add("b", 0.02)
        got = [await queue.get(), await queue.get()]
        queue.done("a")
        queue.done("b")
        assert len(queue) == 0
        return got

    assert run(scenario()) == ["a", "b"]


def test_a_key_added_while_running_runs_again_after() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        assert await queue.get() == "a"
        queue.add("a")  # a change arrives mid-reconcile
        assert len(queue) == 0  # not handed to a second worker meanwhile
        queue.done("a")
        assert await asyncio.wait_for(queue.get(), 1) == "a"

    run(scenario())


def test_a_success_resets_the_backoff() -> None:
    async def scenario() -> list[float | None]:
        queue: WorkQueue[str] = WorkQueue(backoff_base=0.001, backoff_max=1)
        queue.add("a")
        outcomes = []
        for failed in (True, True, False):
            await asyncio.wait_for(queue.get(), 1)
            outcomes.append(queue.done("a", failed=failed))
        queue.add("a")
        await asyncio.wait_for(queue.get(), 1)
        outcomes.append(queue.done("a", failed=True))
        return outcomes

    assert run(scenario()) == [0.001, 0.002, None, 0.001]


def test_backoff_grows_until_its_cap() -> None:
    async def scenario() -> list[float | None]:
        queue: WorkQueue[str] = WorkQueue(backoff_base=0.001, backoff_max=0.003)
        queue.add("a")
        backoffs = []
        for _ in range(4):
            await asyncio.wait_for(queue.get(), 1)
            backoffs.append(queue.done("a", failed=True))
        return backoffs

    assert run(scenario()) == [0.001, 0.002, 0.003, 0.003]


CONFIG = LeaseConfig(namespace="ns", name="op", identity="me", duration=15)


@pytest.mark.parametrize(
    ("spec", "now", "expected"),
    [
        ({}, T0, True),
        ({"holderIdentity": "me", "renewTime": format_time(T0)}, T0, True),
        ({"holderIdentity": "other", "renewTime": format_time(T0), "leaseDurationSeconds": 15},
         T0 + dt.timedelta(seconds=14), False),
        ({"holderIdentity": "other", "renewTime": format_time(T0), "leaseDurationSeconds": 15},
         T0 + dt.timedelta(seconds=15), True),
        ({"holderIdentity": None, "leaseDurationSeconds": 1}, T0, True),
    ],
)  # fmt: skip
def test_a_lease_can_be_taken_when_free_mine_or_expired(
    spec: dict[str, Any], now: dt.datetime, expected: bool
) -> None:
    assert can_take(spec, "me", now) is expected


def test_taking_counts_transitions_and_renewing_keeps_the_acquire_time() -> None:
    taken = taken_spec({"holderIdentity": "other", "leaseTransitions": 3}, CONFIG, T0)
    assert taken["holderIdentity"] == "me"
    assert taken["leaseTransitions"] == 4
    renewed = taken_spec(taken, CONFIG, T0 + dt.timedelta(seconds=2))
    assert renewed["acquireTime"] == taken["acquireTime"]
    assert renewed["renewTime"] == format_time(T0 + dt.timedelta(seconds=2))
    assert renewed["leaseTransitions"] == 4


@pytest.mark.parametrize("variant", [v.name for v in CATALOG.variants])
def test_the_webhook_guard_accepts_rendered_pods_unchanged(variant: str) -> None:
    """The contract between the two components, checked on the real decision code."""
    spec = TicketWorkerSpec.model_validate({"environment": "acme/tp", "workload": "int8-inference"})
    chosen = CATALOG.get(variant)
    assert chosen is not None
    plan = Plan((Share(chosen, 1, 4.0, 1, outranking(CATALOG, chosen, spec.workload, None)),))
    (deployment,) = render(Owner("ns", "tw", "u"), spec, plan).values()
    pod = Pod.model_validate(
        {"metadata": {**deployment["spec"]["template"]["metadata"], "namespace": "ns"},
         "spec": deployment["spec"]["template"]["spec"]}
    )  # fmt: skip
    # Variants something outranks carry a preferred node affinity: the guard ignores it.
    preferred = deployment["spec"]["template"]["spec"].get("affinity")
    assert bool(preferred) == bool(best_node_preference(chosen, plan.shares[0].outranked_by))
    decision = decide(pod, "ns", True, Context(CATALOG, None))  # namespace opted in
    assert (decision.allowed, decision.outcome, decision.reason) == (True, "unchanged", "guard")
    assert decision.variant == variant

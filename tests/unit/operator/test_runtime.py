"""The operator's runtime pieces without a cluster: work queue, Lease rules, webhook guard."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.planning import Plan, Share, best_node_preference, outranking
from flox_isa.kube.lease import LeaseConfig, can_take, format_time, taken_spec
from flox_isa.kube.rest import APPLY_PATCH, MERGE_PATCH, ApiError, Request
from flox_isa.operator.controller import Controller, Settings
from flox_isa.operator.models import TicketWorkerSpec
from flox_isa.operator.render import Owner, render
from flox_isa.operator.workqueue import WorkQueue
from flox_isa.operator.writes import NAMESPACE_TERMINATING_SKIP, ForeignDeploymentError
from flox_isa.webhook.decision import Context, decide
from flox_isa.webhook.models import pod_from
from tests.unit.webhook.test_decision import fleet_states

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
    pod = pod_from(
        {"metadata": {**deployment["spec"]["template"]["metadata"], "namespace": "ns"},
         "spec": deployment["spec"]["template"]["spec"]}
    )  # fmt: skip
    # Variants something outranks carry a preferred node affinity: the guard ignores it.
    preferred = deployment["spec"]["template"]["spec"].get("affinity")
    assert bool(preferred) == bool(best_node_preference(chosen, plan.shares[0].outranked_by))
    decision = decide(pod, "ns", True, Context(CATALOG, None))  # namespace opted in
    assert (decision.allowed, decision.outcome, decision.reason) == (True, "unchanged", "guard")
    assert decision.variant == variant


# --- Controller: the order of writes in a burst ---------------------------------------------


class RecordingApi:
    """A stand-in for `kube.rest.Rest` that records requests; every Deployment is new."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []
        self.objects: dict[str, dict[str, Any]] = {}  # name -> as written
        self.version = 0
        self.listed: list[dict[str, Any]] = []  # the Deployments a LIST returns

    async def send(self, request: Request) -> dict[str, Any]:
        body = dict(request.body or {})
        if request.method == "GET":
            self.writes.append(("list", request.path))
            return {"items": self.listed}
        if request.content_type == APPLY_PATCH:
            self.version += 1
            self.writes.append(("apply", request.path))
            version = str(self.version)
            written = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
            self.objects[body["metadata"]["name"]] = written
            return written
        kind = "status" if request.content_type == MERGE_PATCH else "event"
        self.writes.append((kind, request.path))
        return body


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[tuple[str, str], float]] = []

    def add(self, key: tuple[str, str], delay: float = 0.0) -> None:
        self.added.append((key, delay))


class Index(dict[Any, Any]):
    """A kopf index: key -> store (an iterable of values)."""


EMBED = ("tickets", "embed")


def embed_controller(
    api: RecordingApi | None = None, **spec: Any
) -> tuple[Controller, RecordingApi, RecordingQueue, Index]:
    """A controller of TicketWorker tickets/embed (`spec` over 6 int8 replicas) on the
    default fleet: its API (`api`, or a new RecordingApi), queue and Deployment index."""
    ticketworker = {
        "metadata": {"namespace": "tickets", "name": "embed", "uid": "u1", "generation": 1},
        "spec": {"environment": "acme/embed", "workload": "int8-inference", "replicas": 6,
                 **spec},
    }  # fmt: skip
    api = api or RecordingApi()
    controller = Controller(Settings(CATALOG), api)  # type: ignore[arg-type]
    controller.queue = queue = RecordingQueue()
    deployments = Index()
    controller.attach(Index({EMBED: [ticketworker]}), deployments)
    controller.fleet = index_nodes(fleet_states())
    return controller, api, queue, deployments


def test_deployment_writes_go_first_and_the_status_follows_once_settled() -> None:
    key = EMBED
    controller, api, queue, deployments = embed_controller()
    settings = controller.settings

    async def scenario() -> None:
        await controller.reconcile(key)
        await asyncio.sleep(0)  # let the background Events go out

    run(scenario())
    assert len(api.objects) >= 2  # avx512vnni, avx2, armv9, ...: one Deployment each
    kinds = [kind for kind, _ in api.writes]
    assert kinds.count("list") == 1  # one LIST answers every new name of the burst
    assert "status" not in kinds and "event" not in kinds  # not in the burst
    assert queue.added == [(key, settings.status_debounce)]
    # The watch echo of our own write waits as well; someone else's edit does not.
    name, written = next(iter(api.objects.items()))
    echo = written["metadata"]["resourceVersion"]
    controller.deployment_changed(key, name=name, version=echo)
    controller.deployment_changed(key, name=name, version="someone-else")
    assert queue.added[1:] == [(key, settings.status_debounce), (key, settings.debounce)]
    # The next reconcile sees the Deployments and only publishes the status.
    deployments[key] = list(api.objects.values())
    api.writes.clear()
    run(controller.reconcile(key))
    assert [kind for kind, _ in api.writes] == ["status"]


def test_a_reconcile_in_the_watchs_lag_does_not_create_the_deployments_again() -> None:
    key = EMBED
    controller, api, _, _ = embed_controller()
    run(controller.reconcile(key))
    created = [path for kind, path in api.writes if kind == "apply"]
    assert created
    api.writes.clear()
    run(controller.reconcile(key))  # the index has not shown the new Deployments yet
    assert [kind for kind, _ in api.writes] == ["status"]
    # Once the index shows them (here: deleted by someone meanwhile), it is trusted again.
    name = next(iter(api.objects))
    controller.deployment_changed(key, name=name, version="gone")
    api.writes.clear()
    run(controller.reconcile(key))
    assert [path for kind, path in api.writes if kind == "apply"] == [
        next(p for p in created if p.endswith("/" + name))
    ]


def test_a_foreign_deployment_under_our_name_is_never_taken_over() -> None:
    key = EMBED
    controller, api, _, _ = embed_controller(variants=["avx512vnni"])
    api.listed = [{"metadata": {"name": "embed-avx512vnni", "labels": {"app": "x"}}}]
    with pytest.raises(ForeignDeploymentError, match="not managed by TicketWorker embed"):
        run(controller.reconcile(key))
    assert api.objects == {}  # nothing applied
    status = next(path for kind, path in api.writes if kind == "status")
    assert status.endswith("/ticketworkers/embed/status")  # the failure is reported


def test_creates_refused_in_a_namespace_being_deleted_are_a_skip_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = EMBED
    terminating = ApiError(403, "Forbidden", "is being terminated", ("NamespaceTerminating",))

    class TerminatingNamespace(RecordingApi):
        async def send(self, request: Request) -> dict[str, Any]:
            if request.content_type == APPLY_PATCH:
                self.writes.append(("refused", request.path))
                raise terminating
            return await super().send(request)

    controller, api, queue, _ = embed_controller(TerminatingNamespace())
    caplog.set_level(logging.INFO, logger="flox_isa.operator")
    run(controller.reconcile(key))  # no exception: nothing to retry
    kinds = [kind for kind, _ in api.writes]
    assert kinds.count("refused") >= 2 and "status" not in kinds and "event" not in kinds
    assert queue.added == []  # no status to follow, no retry
    skips = [r for r in caplog.records if r.getMessage() == NAMESPACE_TERMINATING_SKIP]
    assert [r.levelno for r in skips] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

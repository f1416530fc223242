"""Thread tuning at admission (issue 18, item 3): the env the webhook's patch sets."""

from __future__ import annotations

from typing import Any

import pytest

from flox_isa.isa import names
from flox_isa.isa.placement import as_admission, ungated
from flox_isa.webhook.decision import decision_key
from flox_isa.webhook.models import pod_from
from tests.unit.webhook.test_decision import ENV, patched, pod, run
from tests.unit.webhook.test_gate import gating

NODE = "m4-xlarge-0"
VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def with_containers(
    *containers: dict[str, Any], spec: dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    return pod(spec={"containers": list(containers), **(spec or {})}, **more)


def worker(cpu_limit: str | None = None, cpu_request: str | None = None, **more: Any) -> Any:
    resources: dict[str, Any] = {}
    if cpu_limit:
        resources["limits"] = {"cpu": cpu_limit}
    if cpu_request:
        resources["requests"] = {"cpu": cpu_request}
    return {"name": "worker", "image": "ghcr.io/flox/flox:latest", "resources": resources, **more}


def env_of(body: dict[str, Any], index: int = 0) -> dict[str, str | None]:
    entries = body["spec"]["containers"][index].get("env") or []
    return {e["name"]: e.get("value") for e in entries}


def reason_of(body: dict[str, Any]) -> str:
    return str(body["metadata"]["annotations"][names.REASON_ANNOTATION])


@pytest.mark.parametrize(
    "body",
    [
        with_containers(worker("2500m", "1")),  # auto
        with_containers(worker("2500m", "1"), env=f"{ENV}-avx2"),  # guard
        with_containers(worker("2500m", "1"), spec={"nodeName": NODE}),
    ],
    ids=["auto", "guard", "node-name"],
)
def test_every_mode_sets_the_three_variables_to_the_floor_of_the_limit(
    body: dict[str, Any],
) -> None:
    decision = run(body)
    out = patched(decision, body)
    assert env_of(out) == dict.fromkeys(VARS, "2")
    assert "worker=2 (floor of CPU limit 2500m)" in reason_of(out)


def test_gated_pods_get_them_at_admission_and_keep_the_note_when_placed() -> None:
    body = with_containers(worker(cpu_request="3"))
    out = patched(run(body, gating()), body)
    assert env_of(out) == dict.fromkeys(VARS, "3")  # env cannot change once the pod exists
    placed = ungated(out, as_admission([*_catalog_variants("avx2")]), ENV, "fp32-inference")
    reason = placed["metadata"]["annotations"][names.REASON_ANNOTATION]
    assert "worker=3 (floor of CPU request 3, no limit)" in reason
    assert not reason.startswith("gated")


def _catalog_variants(*wanted: str) -> list[Any]:
    from tests.unit.webhook.test_decision import CATALOG  # noqa: PLC0415

    return [v for v in CATALOG.variants if v.name in wanted]


def test_existing_env_is_appended_to_and_kept() -> None:
    body = with_containers(worker("2", env=[{"name": "A", "value": "1"}]))
    decision = run(body)
    appends = [op for op in decision.patch if op["path"] == "/spec/containers/0/env/-"]
    assert len(appends) == 3
    assert env_of(patched(decision, body)) == {"A": "1", **dict.fromkeys(VARS, "2")}


def test_the_users_value_is_never_overridden_and_others_still_get_theirs() -> None:
    own = worker("4", env=[{"name": "MKL_NUM_THREADS", "value": "7"}])
    sidecar = {**worker("1"), "name": "sidecar"}
    body = with_containers(own, sidecar)
    out = patched(run(body), body)
    assert env_of(out, 0) == {"MKL_NUM_THREADS": "7"}
    assert env_of(out, 1) == dict.fromkeys(VARS, "1")
    assert "worker keeps its own" in reason_of(out)


def test_the_annotation_turns_it_off_or_sets_the_count() -> None:
    off = with_containers(worker("2"), annotations={names.THREADS_ANNOTATION: "off"})
    out = patched(run(off), off)
    assert env_of(out) == {}
    assert "threads: off" in reason_of(out)
    eight = with_containers(worker("2"), annotations={names.THREADS_ANNOTATION: "8"})
    assert env_of(patched(run(eight), eight)) == dict.fromkeys(VARS, "8")


def test_a_bad_annotation_is_denied_naming_it() -> None:
    decision = run(with_containers(worker("2"), annotations={names.THREADS_ANNOTATION: "many"}))
    assert not decision.allowed and decision.reason == "invalid-input"
    assert names.THREADS_ANNOTATION in decision.message and "1 to 1024" in decision.message


def test_no_cpu_resources_set_nothing_and_say_nothing() -> None:
    body = with_containers(worker())
    out = patched(run(body), body)
    assert env_of(out) == {} and "threads" not in reason_of(out)


@pytest.mark.parametrize("late_binding", [False, True])
def test_applied_to_its_own_output_the_patch_is_empty(late_binding: bool) -> None:
    body = with_containers(worker("2"), {**worker(cpu_request="1"), "name": "b"})
    ctx = gating() if late_binding else None
    first = run(body, ctx)
    again = run(patched(first, body), ctx)
    assert again.allowed and again.patch == ()


def test_resources_and_thread_env_are_in_the_decision_key() -> None:
    def key(body: dict[str, Any]) -> object:
        return decision_key(pod_from(body), "tickets", False)

    base = key(with_containers(worker("2")))
    assert base == key(with_containers(worker("2")))
    assert base != key(with_containers(worker("3")))
    assert base != key(with_containers(worker("2", env=[{"name": "OMP_NUM_THREADS"}])))
    assert base != key(with_containers(worker("2", envFrom=[{"configMapRef": {"name": "x"}}])))
    assert base != key(with_containers(worker("2"), annotations={names.THREADS_ANNOTATION: "1"}))
    # An env list or none: the patch appends to it or adds it whole.
    listed = key(with_containers(worker("2", env=[{"name": "A"}])))
    assert base != listed
    assert listed == key(with_containers(worker("2", env=[{"name": "B", "value": "x"}])))

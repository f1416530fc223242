"""The HTTP surface: POST /mutate[/namespace-opt-in] answers, 400s, never a 500, /healthz,
/readyz, /metrics."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from flox_isa.isa import names
from flox_isa.isa.fleet_index import FleetIndex, index_nodes
from flox_isa.webhook import app as webhook_app
from flox_isa.webhook.app import StaticFleet, WebhookState, answer, create_app
from flox_isa.webhook.decision import Decision, decide
from flox_isa.webhook.registration import NAMESPACE_OPT_IN_PATH, POD_OPT_IN_PATH
from tests.unit.webhook.test_decision import (
    _ENVIRONMENTS,
    _POD_INPUTS,
    CATALOG,
    ENV,
    OWN_NAMESPACE,
    apply_patch,
    fleet_states,
    pod,
)

FLEET = index_nodes(fleet_states())


def make_client(fleet: FleetIndex | None = FLEET) -> TestClient:
    return TestClient(create_app(WebhookState(CATALOG, StaticFleet(fleet), OWN_NAMESPACE)))


def review(
    pod_dict: Mapping[str, Any] | None = None,
    *,
    uid: str = "0f6a1c2e-7d1b-4c55-a1b0-9b2f3c4d5e6f",
    namespace: str = "tickets",
    dry_run: bool = False,
    kind: str = "Pod",
    operation: str = "CREATE",
) -> dict[str, Any]:
    resource = "pods" if kind == "Pod" else kind.lower() + "s"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": dict(pod_dict if pod_dict is not None else pod()),
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def _with_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A review of a pod with this spec."""
    return review(pod(spec=spec))


def post(client: TestClient, body: Any, path: str = POD_OPT_IN_PATH) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=raw, headers={"content-type": "application/json"})
    return response.status_code, response.json()


def readable(answer: Mapping[str, Any]) -> dict[str, Any]:
    """An answer with its patch decoded: spliced answers may differ in the patch's JSON
    whitespace (`app.SplitAnswer`), never in its value."""
    response = {**answer["response"], "patch": decoded_patch(answer)}
    return {**answer, "response": response}


def decoded_patch(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    patch = answer["response"].get("patch")
    return json.loads(base64.b64decode(patch)) if patch else []


def test_a_pod_create_gets_a_json_patch_for_the_same_uid() -> None:
    status, answer = post(make_client(), review(uid="abc-123"))
    assert status == 200
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = answer["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        "abc-123",
        True,
        "JSONPatch",
    )
    ops = decoded_patch(answer)
    env_op = next(op for op in ops if op["path"] == "/metadata/annotations/flox.dev~1environment")
    assert env_op == {"op": "replace", "path": env_op["path"], "value": f"{ENV}-avx512"}


def test_a_denial_carries_the_message_and_a_400_status() -> None:
    bad = pod({names.WORKLOAD_ANNOTATION: "fp16"})
    status, answer = post(make_client(), review(bad))
    assert status == 200
    response = answer["response"]
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("flox-isa: annotation isa.flox.dev/workload")


def test_warnings_reach_the_response() -> None:
    body = pod(spec={"nodeSelector": {"pool": "none-such"}})
    _, answer = post(make_client(), review(body))
    assert answer["response"]["allowed"] is True
    assert any("widest fit" in w for w in answer["response"]["warnings"])


def test_dry_run_gets_the_same_answer() -> None:
    client = make_client()
    _, real = post(client, review(dry_run=False))
    _, dry = post(client, review(dry_run=True))
    assert dry == real


def test_the_namespace_opt_in_path_means_the_namespace_opted_in() -> None:
    # The API server calls /mutate/namespace-opt-in only after its namespaceSelector
    # found the namespace labelled: the path is the opt-in, no Namespace is read.
    client = make_client()
    unlabelled = review(pod(inject=False), namespace="tickets")
    _, by_namespace = post(client, unlabelled, NAMESPACE_OPT_IN_PATH)
    _, by_pod_path = post(client, unlabelled, POD_OPT_IN_PATH)
    assert by_namespace["response"]["patchType"] == "JSONPatch"
    assert by_pod_path["response"] == {"uid": by_pod_path["response"]["uid"], "allowed": True}
    # On /mutate the pod's own label is what counts.
    _, labelled = post(client, review(pod(inject=True)), POD_OPT_IN_PATH)
    assert labelled["response"]["patchType"] == "JSONPatch"


@pytest.mark.parametrize("namespace", ["kube-system", "kube-e2e", OWN_NAMESPACE])
@pytest.mark.parametrize("path", [POD_OPT_IN_PATH, NAMESPACE_OPT_IN_PATH])
def test_system_and_own_namespaces_are_refused_by_name_on_either_path(
    namespace: str, path: str
) -> None:
    _, answer = post(make_client(), review(pod(inject=True), namespace=namespace), path)
    assert answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}


def test_a_pod_that_opts_out_is_left_alone_on_the_namespace_path() -> None:
    body = review(pod(inject=False, labels={names.INJECT_LABEL: "false"}))
    _, answer = post(make_client(), body, NAMESPACE_OPT_IN_PATH)
    assert answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}


def test_only_the_two_mutate_paths_take_reviews() -> None:
    client = make_client()
    assert client.get(NAMESPACE_OPT_IN_PATH).status_code == 405
    assert client.post("/mutate/other", json=review()).status_code == 404


@pytest.mark.parametrize(
    ("kind", "operation"), [("Pod", "UPDATE"), ("Pod", "DELETE"), ("Deployment", "CREATE")]
)
def test_anything_but_a_pod_create_is_allowed_unchanged(kind: str, operation: str) -> None:
    obj = {"kind": kind, "metadata": {"name": "x"}, "spec": {"template": {}, "replicas": 3}}
    status, answer = post(make_client(), review(obj, kind=kind, operation=operation))
    assert status == 200
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"", "Invalid JSON"),
        (b"{not json", "Invalid JSON"),
        (b"[]", "body"),
        ({"kind": "AdmissionReview", "request": {}}, "apiVersion: Field required"),
        (
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}},
            "apiVersion: Input should be 'admission.k8s.io/v1'",
        ),
        ({**review(), "request": {**review()["request"], "uid": ""}}, "request.uid"),
        (
            {
                **review(),
                "request": {**review()["request"], "object": {"metadata": {"labels": []}}},
            },
            "request.object.metadata.labels",
        ),
        (
            {
                **review(),
                "request": {**review()["request"], "object": {"spec": {"nodeSelector": {"a": 1}}}},
            },
            "request.object.spec.nodeSelector.a",
        ),
        # Containers are type-checked too, though decoded once per distinct container.
        (
            _with_spec({"containers": [{"name": "a"}, {"name": "b", "env": {"x": 1}}]}),
            "request.object.spec.containers.1.env: Expected `array | null`, got `object`",
        ),
        (
            _with_spec({"initContainers": [{"env": [{"name": 3}]}]}),
            "request.object.spec.initContainers.0.env.0.name: Expected `str`, got `int`",
        ),
        (
            _with_spec({"containers": ["worker"]}),
            "request.object.spec.containers.0: Expected `object`, got `str`",
        ),
    ],
)
def test_a_malformed_review_is_a_400_that_says_what_is_wrong(body: Any, mentions: str) -> None:
    status, answer = post(make_client(), body)
    assert status == 400
    assert answer["error"].startswith("not an admission.k8s.io/v1 AdmissionReview")
    assert mentions in answer["error"]


def test_an_internal_error_is_a_denial_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(webhook_app, "decide", broken)
    status, answer = post(make_client(), review())
    assert status == 200
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert "internal error" in answer["response"]["status"]["message"]


def test_health_and_readiness() -> None:
    assert make_client().get("/healthz").status_code == 200
    assert make_client().get("/readyz").status_code == 200
    waiting = make_client(fleet=None)
    assert waiting.get("/healthz").status_code == 200
    assert waiting.get("/readyz").status_code == 503
    _, answer = post(waiting, review())
    assert answer["response"]["status"]["code"] == 503


def test_metrics_count_outcomes_variants_and_inventory() -> None:
    client = make_client()
    post(client, review())
    post(client, review(pod({names.WORKLOAD_ANNOTATION: "int8-inference"})))
    post(client, review(pod(inject=False)))
    post(client, b"nonsense")
    text = client.get("/metrics").text
    assert (
        'flox_isa_webhook_requests_total{outcome="patched",reason="auto",variant="avx512"} 1.0'
        in text
    )
    assert 'outcome="patched",reason="auto",variant="avx512vnni"} 1.0' in text
    assert 'outcome="skipped",reason="not-opted-in",variant=""} 1.0' in text
    assert 'outcome="bad_request",reason="malformed-review",variant=""} 1.0' in text
    assert "flox_isa_webhook_request_duration_seconds_count 4.0" in text
    assert "flox_isa_inventory_nodes 18.0" in text
    assert "flox_isa_inventory_node_groups 18.0" not in text  # grouped, not per node
    assert "flox_isa_inventory_node_groups 9.0" in text


def test_the_offer_index_is_rebuilt_when_the_fleet_changes() -> None:
    class Mutable:
        index: FleetIndex | None = FLEET

        def fleet(self) -> FleetIndex | None:
            return self.index

    source = Mutable()
    state = WebhookState(CATALOG, source, OWN_NAMESPACE)
    client = TestClient(create_app(state))
    _, before = post(client, review(pod({names.WORKLOAD_ANNOTATION: "int8-inference"})))
    source.index = index_nodes(
        s for s in fleet_states() if "AVX512VNNI" not in s.info.features.flags
    )
    _, after = post(client, review(pod({names.WORKLOAD_ANNOTATION: "int8-inference"})))
    envs = [
        next(op["value"] for op in decoded_patch(a) if op["path"].endswith("flox.dev~1environment"))
        for a in (before, after)
    ]
    assert envs == [f"{ENV}-avx512vnni", f"{ENV}-avx512"]


class SwitchableFleet:
    def __init__(self, index: FleetIndex | None) -> None:
        self.index = index

    def fleet(self) -> FleetIndex | None:
        return self.index


class PlacementAlive:
    def alive(self) -> bool:
        return True


def test_the_admission_edge_reads_the_pods_scheduling_gates() -> None:
    state = WebhookState(CATALOG, StaticFleet(FLEET), OWN_NAMESPACE, placement=PlacementAlive())
    client = TestClient(create_app(state))
    _, new = post(client, review(pod()))
    _, other_gate = post(client, review(pod(spec={"schedulingGates": [{"name": "other/gate"}]})))
    _, ours = post(client, review(pod(spec={"schedulingGates": [{"name": names.PLACEMENT_GATE}]})))
    gate = {"name": names.PLACEMENT_GATE}
    assert {"op": "add", "path": "/spec/schedulingGates", "value": [gate]} in decoded_patch(new)
    assert {"op": "add", "path": "/spec/schedulingGates/-", "value": gate} in decoded_patch(
        other_gate
    )
    assert ours["response"]["allowed"] is True and decoded_patch(ours) == []


def test_replicas_differing_only_in_name_get_one_decision_each_with_its_own_uid() -> None:
    client = make_client()
    answers = []
    for i in range(3):
        replica = pod({names.WORKLOAD_ANNOTATION: "int8-inference"})
        replica["metadata"]["name"] = f"worker-{i}"
        answers.append(post(client, review(replica, uid=f"uid-{i}"))[1])
    assert [a["response"]["uid"] for a in answers] == ["uid-0", "uid-1", "uid-2"]
    assert decoded_patch(answers[0]) == decoded_patch(answers[1]) == decoded_patch(answers[2])
    assert 'reason="auto",variant="avx512vnni"} 3.0' in client.get("/metrics").text


def test_a_pod_differing_in_any_input_is_decided_afresh() -> None:
    client = make_client()
    _, fp32 = post(client, review(pod()))
    _, int8 = post(client, review(pod({names.WORKLOAD_ANNOTATION: "int8-inference"})))
    _, arm = post(client, review(pod(spec={"nodeSelector": {"kubernetes.io/arch": "arm64"}})))
    label_path = "/metadata/labels/" + names.VARIANT_LABEL.replace("/", "~1")
    variants = [
        next(op["value"] for op in decoded_patch(a) if op["path"] == label_path)
        for a in (fp32, int8, arm)
    ]
    assert variants == ["avx512", "avx512vnni", "armv9"]


def _counting_decide(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The environments `decide` is called for, from now on."""
    seen: list[str] = []

    def counting(pod: Any, *args: Any) -> Decision:
        seen.append((pod.metadata.annotations or {})[names.ENVIRONMENT_ANNOTATION])
        return decide(pod, *args)

    monkeypatch.setattr(webhook_app, "decide", counting)
    return seen


@pytest.mark.parametrize(
    ("first", "second", "variant"),
    [
        (ENV, "acme/other-team", "avx512vnni"),  # auto: pinned, both names rewritten
        (f"{ENV}-avx512", "acme/x-avx512", "avx512"),  # guard: the patch names neither
    ],
)
def test_a_pod_new_only_in_its_environments_name_is_answered_as_if_decided(
    monkeypatch: pytest.MonkeyPatch, first: str, second: str, variant: str
) -> None:
    decided = _counting_decide(monkeypatch)
    client = make_client()
    answers = []
    for environment in (first, second):
        body = pod({names.WORKLOAD_ANNOTATION: "int8-inference"}, env=environment)
        answers.append((body, post(client, review(body))[1]))
    assert decided == [first]  # the second pod's decision is the first one, renamed
    monkeypatch.undo()
    second_pod, renamed = answers[1]
    assert decoded_patch(renamed) == decoded_patch(post(make_client(), review(second_pod))[1])
    assert readable(renamed) == readable(post(make_client(), review(second_pod))[1])
    patched = apply_patch(second_pod, decoded_patch(renamed))
    assert patched["metadata"]["labels"][names.VARIANT_LABEL] == variant
    assert patched["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == (
        second if second.endswith(variant) else f"{second}-{variant}"
    )


@settings(max_examples=300, deadline=None)
@given(_POD_INPUTS, _ENVIRONMENTS, _ENVIRONMENTS, st.booleans())
def test_an_answer_renamed_from_its_template_is_the_answer_decided_anew(
    inputs: tuple[Any, ...], first: str, second: str, namespace_opted_in: bool
) -> None:
    # The answer bytes are spliced, not encoded, for a pod of a remembered template.
    flox_labels, flox_annotations, other_labels, other_annotations, selector = inputs

    def body(environment: str) -> bytes:
        annotations = {
            **other_annotations, **flox_annotations, names.ENVIRONMENT_ANNOTATION: environment
        }  # fmt: skip
        spec = {"nodeSelector": selector} if selector else {}
        drawn = pod(annotations, {**other_labels, **flox_labels}, spec, inject=False, env=None)
        return json.dumps(review(drawn)).encode()

    def fresh_state() -> WebhookState:
        return WebhookState(CATALOG, StaticFleet(FLEET), OWN_NAMESPACE)

    state = fresh_state()
    answer(state, body(first), namespace_opted_in)
    spliced = answer(state, body(second), namespace_opted_in)
    decided = answer(fresh_state(), body(second), namespace_opted_in)
    assert spliced[0] == decided[0]
    assert readable(json.loads(spliced[1])) == readable(json.loads(decided[1]))


def test_denials_are_never_renamed_for_another_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pinned base without a generations map is denied, quoting the reference.
    decided = _counting_decide(monkeypatch)
    client = make_client()
    messages = [
        post(client, review(pod(env=environment)))[1]["response"]["status"]["message"]
        for environment in (f"{ENV}:3", "acme/other-team:3")
    ]
    assert decided == [f"{ENV}:3", "acme/other-team:3"]
    assert f"{ENV}:3 pins" in messages[0] and "acme/other-team:3 pins" in messages[1]


def test_answers_that_depend_on_a_passing_state_are_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = SwitchableFleet(None)
    client = TestClient(create_app(WebhookState(CATALOG, source, OWN_NAMESPACE)))
    _, waiting = post(client, review())
    assert waiting["response"]["status"]["code"] == 503  # nodes not listed yet
    source.index = FLEET

    def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(webhook_app, "decide", broken)
    _, failed = post(client, review())
    assert failed["response"]["status"]["code"] == 500
    monkeypatch.undo()  # the bug is fixed: the same pod is decided again
    _, answer = post(client, review())
    assert answer["response"]["allowed"] is True and decoded_patch(answer)


def call_asgi(app: Any, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST /mutate straight through ASGI, the body delivered in `chunks`."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": POD_OPT_IN_PATH, "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_body_in_several_chunks_is_read_whole_and_an_oversized_one_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(WebhookState(CATALOG, StaticFleet(FLEET), OWN_NAMESPACE))
    raw = json.dumps(review(uid="chunked")).encode()
    status, body = call_asgi(app, [raw[:100], raw[100:2000], raw[2000:]])
    assert status == 200 and json.loads(body)["response"]["uid"] == "chunked"
    monkeypatch.setattr(webhook_app, "MAX_BODY_BYTES", len(raw) - 1)
    assert call_asgi(app, [raw])[0] == 413
    assert call_asgi(app, [raw[:100], raw[100:]])[0] == 413


def test_any_uid_is_echoed_as_valid_json() -> None:
    odd = 'a"b\\c/é'
    _, answer = post(make_client(), review(uid=odd))
    assert answer["response"]["uid"] == odd


def test_pods_of_one_replicaset_differ_only_in_uid_and_each_gets_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    replica = pod({names.WORKLOAD_ANNOTATION: "int8-inference"})
    replica["metadata"] = {**replica["metadata"], "generateName": "embed-7d9c-"}
    del replica["metadata"]["name"]  # not named yet at admission
    uids = [f"0f6a1c2e-7d1b-4c55-a1b0-00000000000{i}" for i in range(3)]
    with caplog.at_level(logging.DEBUG, logger="flox_isa.webhook"):
        answers = [post(client, review(replica, uid=uid))[1] for uid in uids]
    assert [a["response"]["uid"] for a in answers] == uids
    assert decoded_patch(answers[0]) == decoded_patch(answers[2])
    records = [r for r in caplog.records if r.getMessage() == "patched"]
    logged = [r.fields for r in records]  # type: ignore[attr-defined]
    assert [f["uid"] for f in logged] == uids
    assert all(f["pod"] == "embed-7d9c-" and f["variant"] == "avx512vnni" for f in logged)
    # A line per decision at INFO; the replicas answered from memory at DEBUG.
    assert [r.levelno for r in records] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    assert 'reason="auto",variant="avx512vnni"} 3.0' in client.get("/metrics").text


def test_a_uid_ahead_of_the_requests_own_is_never_taken_for_it() -> None:
    client = make_client()
    body = review(uid="the-request")
    for other in ("another-uid-1", "another-uid-2"):
        # Another "uid" ahead of request.uid (keys may come in any order in JSON): the
        # bodies differ only there, so a memo keyed on it would answer with it.
        raw = json.dumps({"metadata": {"uid": other}, **body}).encode()
        status, answer = post(client, raw)
        assert status == 200 and answer["response"]["uid"] == "the-request"


def test_remembered_answers_do_not_keep_the_request_bodies() -> None:
    # Pods can be megabytes; thousands of remembered answers must not hold them.
    state = WebhookState(CATALOG, StaticFleet(FLEET), OWN_NAMESPACE)
    client = TestClient(create_app(state))
    big = pod({"big": "x" * 1_000_000})
    _, first = post(client, review(big, uid="first"))
    _, again = post(client, review(big, uid="again"))
    assert again["response"]["uid"] == "again" and decoded_patch(again) == decoded_patch(first)
    assert len(state._answers) == 2  # by decision and by body
    assert all(len(repr(key)) < 2_000 for key in state._answers)


@pytest.mark.parametrize(
    ("decision", "remembered", "level"),
    [
        (Decision(True, "patched", "auto", "m"), False, logging.INFO),
        (Decision(True, "patched", "auto", "m"), True, logging.DEBUG),
        (Decision(True, "unchanged", "guard", "m"), True, logging.DEBUG),
        (Decision(False, "denied", "conflict", "m"), True, logging.INFO),
        (Decision(True, "skipped", "daemonset", "m"), False, logging.DEBUG),
        (Decision(False, "denied", "internal-error", "m", code=500), False, logging.WARNING),
    ],
)
def test_a_line_per_decision_every_denial_and_replicas_at_debug(
    decision: Decision, remembered: bool, level: int
) -> None:
    assert webhook_app.log_level(decision, remembered) == level


def test_remembered_answers_are_not_walked_by_the_garbage_collector() -> None:
    # A fresh pod's answer must not leave tracked objects (a decision, its patch's maps)
    # in the memo: collections then came every few requests and walked them all.
    state = WebhookState(CATALOG, StaticFleet(FLEET), OWN_NAMESPACE)
    client = TestClient(create_app(state))
    _, answer = post(client, review(pod({names.WORKLOAD_ANNOTATION: "int8-inference"})))
    assert decoded_patch(answer)
    assert len(state._answers) == 2
    assert not any(gc.is_tracked(found) for found in state._answers.values())
    assert not any(gc.is_tracked(found.line) for found in state._answers.values())


def test_a_full_memo_drops_its_oldest_answers_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_app, "ANSWER_MEMO_SIZE", 4)
    state = WebhookState(CATALOG, StaticFleet(FLEET), OWN_NAMESPACE)
    client = TestClient(create_app(state))
    for workload in ("fp32-inference", "int8-inference", "bf16-training"):
        post(client, review(pod({names.WORKLOAD_ANNOTATION: workload})))  # two answers each
    kept = list(state._answers)
    assert len(kept) == 4  # the first pod's two went; the others' stayed (no clear-all)
    _, again = post(client, review(pod({names.WORKLOAD_ANNOTATION: "int8-inference"})))
    assert list(state._answers) == kept  # answered from memory: nothing new, nothing gone
    assert decoded_patch(again)

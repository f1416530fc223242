"""Fuzzing: random and mangled AdmissionReviews never get a 500; decisions are idempotent."""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flox_isa.isa import names
from tests.unit.webhook.test_app import make_client, review
from tests.unit.webhook.test_decision import CATALOG, ENV, apply_patch, pod, run

CLIENT = make_client()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def check_answer(body: bytes, sent_uid: Any = None) -> None:
    response = CLIENT.post("/mutate", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if response.status_code == 400:
        assert isinstance(answer["error"], str) and answer["error"]
        return
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    result = answer["response"]
    assert isinstance(result["allowed"], bool)
    if sent_uid is not None:
        assert result["uid"] == sent_uid
    if "patch" in result:
        assert result["patchType"] == "JSONPatch"
        assert isinstance(json.loads(base64.b64decode(result["patch"])), list)
    if not result["allowed"]:
        assert result["status"]["message"].startswith("flox-isa: ")


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(body: bytes) -> None:
    check_answer(body)


@FUZZ
@given(json_values)
def test_random_json(value: Any) -> None:
    check_answer(json.dumps(value).encode())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mangle(document: Any, path: tuple[Any, ...], action: str, new: Any) -> Any:
    if not path:
        return new
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return document


BASE = review(
    pod(
        {names.WORKLOAD_ANNOTATION: "int8-inference", names.VARIANTS_ANNOTATION: "avx2,avx512vnni"},
        {"app": "w"},
        {
            "nodeSelector": {names.ARCH_LABEL: "amd64"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/os",
                                        "operator": "In",
                                        "values": ["linux"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
        },
    )
)
BASE_PATHS = _paths(BASE)


@FUZZ
@given(
    st.sampled_from(BASE_PATHS),
    st.sampled_from(["replace", "delete"]),
    json_values,
)
def test_mangled_reviews(path: tuple[Any, ...], action: str, new: Any) -> None:
    document = _mangle(json.loads(json.dumps(BASE)), path, action, new)
    request = document.get("request") if isinstance(document, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    check_answer(json.dumps(document).encode(), uid if isinstance(uid, str) and uid else None)


variant_names = st.sampled_from(CATALOG.names)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if draw(st.booleans()):
        annotations[names.WORKLOAD_ANNOTATION] = draw(
            st.sampled_from(["fp32-inference", "int8-inference", "bf16-training", "bogus"])
        )
    if draw(st.booleans()):
        chosen = draw(st.lists(variant_names, min_size=1, max_size=4, unique=True))
        annotations[names.VARIANTS_ANNOTATION] = ",".join(chosen)
    suffix = draw(st.none() | variant_names)
    env = draw(st.sampled_from([ENV, None, "", "no-owner"]))
    if env and suffix:
        env = f"{env}-{suffix}"
    labels = {names.VARIANT_LABEL: draw(variant_names)} if draw(st.booleans()) else {}
    selector = draw(
        st.dictionaries(
            st.sampled_from([names.ARCH_LABEL, names.cpuid_label("AVX2"), "kubernetes.io/os"]),
            st.sampled_from(["amd64", "arm64", "true", "linux"]),
            max_size=2,
        )
    )
    return pod(annotations, labels, {"nodeSelector": selector} if selector else None, env=env)


@settings(max_examples=400, deadline=None)
@given(pods())
def test_the_decision_is_idempotent_and_keeps_what_the_user_wrote(body: dict[str, Any]) -> None:
    first = run(body)
    if not first.allowed or not first.patch:
        return
    out = apply_patch(body, first.patch)
    for key, value in (body["spec"].get("nodeSelector") or {}).items():
        assert out["spec"]["nodeSelector"][key] == value
    again = run(out)
    assert again.allowed and again.patch == ()
    assert again.variant == first.variant


def test_fuzz_client_is_shared_and_working() -> None:
    assert isinstance(CLIENT, TestClient)
    check_answer(json.dumps(BASE).encode(), BASE["request"]["uid"])

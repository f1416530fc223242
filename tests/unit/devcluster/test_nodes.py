"""The devcluster's RuntimeClass: the manifest, and create-unless-it-exists."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flox_isa.devcluster import nodes
from flox_isa.operator.models import DEFAULT_RUNTIME_CLASS


def test_the_devcluster_runtime_class_is_the_one_the_operator_names() -> None:
    assert nodes.FLOX_RUNTIME_CLASS == DEFAULT_RUNTIME_CLASS
    assert nodes.runtime_class() == {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "flox"},
        "handler": "flox",
    }


def answering(status: int | None, calls: list[tuple[str, str, Any]]) -> Any:
    """A stand-in for `request_json`: records the call, fails with `status` if given."""

    def request_json(_api: Any, method: str, path: str, body: Any = None) -> Any:
        calls.append((method, path, body))
        if status is not None:
            raise ApiException(status=status, reason="test")
        return body

    return request_json


def test_ensure_runtime_class_creates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, Any]] = []
    monkeypatch.setattr(nodes, "request_json", answering(None, calls))
    assert nodes.ensure_runtime_class(object()) is True
    assert calls == [("POST", "/apis/node.k8s.io/v1/runtimeclasses", nodes.runtime_class())]


def test_ensure_runtime_class_leaves_an_existing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, Any]] = []
    monkeypatch.setattr(nodes, "request_json", answering(409, calls))
    assert nodes.ensure_runtime_class(object()) is False
    assert len(calls) == 1


def test_ensure_runtime_class_raises_other_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes, "request_json", answering(403, []))
    with pytest.raises(ApiException) as failed:
        nodes.ensure_runtime_class(object())
    assert failed.value.status == 403

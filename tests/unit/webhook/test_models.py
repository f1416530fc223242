"""The admission edge's model: a pod's spec decoded once per distinct spec text, and a
container once per distinct container text."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from flox_isa.webhook import models
from flox_isa.webhook.memo import TextMemo
from flox_isa.webhook.models import pod_from, spec_facts
from tests.unit.webhook.test_decision import pod


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[bytes]]:
    """The spec and container texts decoded from now on (empty memos)."""
    texts: dict[str, list[bytes]] = {"specs": [], "containers": []}
    for name, read in (("specs", models._read_spec), ("containers", models._read_container)):

        def counting(text: bytes, seen: list[bytes] = texts[name], read: Any = read) -> Any:
            seen.append(text)
            return read(text)

        memo = getattr(models, name.upper())
        monkeypatch.setattr(models, name.upper(), TextMemo(counting, memo.size, memo.text_limit))
    return texts


def _container(cpu: str) -> dict[str, Any]:
    return {"name": "worker", "env": [{"name": "A", "value": "1"}],
            "resources": {"requests": {"cpu": cpu}}}  # fmt: skip


def _spec(cpu: str, sidecar: str = "1") -> dict[str, Any]:
    sidecar_container = {**_container(sidecar), "name": "sidecar"}
    return {"containers": [_container(cpu), sidecar_container],
            "nodeSelector": {"kubernetes.io/os": "linux"}}  # fmt: skip


def _text(spec: dict[str, Any]) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(spec))


def test_a_workloads_pods_decode_their_shared_spec_once(decoded: dict[str, list[bytes]]) -> None:
    pods = [pod_from(pod(spec=_spec(cpu))) for cpu in ("1", "1", "2")]
    requests = [p.threads_input[0][0].cpu_request for p in pods]
    assert requests == ["1", "1", "2"]
    assert len(decoded["specs"]) == 2  # the second pod's spec came from memory
    assert pods[0].facts is pods[1].facts  # one key part, compared by identity first


def test_specs_that_differ_in_one_container_share_the_others(
    decoded: dict[str, list[bytes]],
) -> None:
    for cpu in ("1", "2", "3"):
        spec_facts(_text(_spec(cpu)))
    # Three workers, and the sidecar they share decoded once.
    assert len(decoded["specs"]) == 3 and len(decoded["containers"]) == 4


def test_equal_facts_of_different_texts_are_equal_keys(decoded: dict[str, list[bytes]]) -> None:
    # The same spec with its keys in another order: another text, the same facts.
    one = spec_facts(_text(_spec("1")))
    other = spec_facts(_text(dict(reversed(_spec("1").items()))))
    assert one is not other and one == other and hash(one) == hash(other)
    assert one != spec_facts(_text(_spec("2")))


def test_a_pod_given_as_data_that_is_not_json_is_a_validation_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="not JSON data"):
        pod_from({"metadata": {"labels": {"app": object()}}})


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"containers": [{"name": "w", "env": {"A": "1"}}]}, r"\$\.spec\.containers\[0\]\.env"),
        ({"initContainers": [{}, "x"]}, r"\$\.spec\.initContainers\[1\]"),
        ({"tolerations": {}}, r"\$\.spec\.tolerations"),
    ],
)
def test_a_malformed_spec_is_refused_at_its_path(spec: dict[str, Any], where: str) -> None:
    for _ in range(2):  # and again: a refused text is not remembered as anything
        with pytest.raises(msgspec.ValidationError, match=f"at `{where}`"):
            pod_from({"spec": spec})

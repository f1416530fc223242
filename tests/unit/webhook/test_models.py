"""The admission edge's model: containers decoded once per distinct container text."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
import pytest
import xxhash

from flox_isa.webhook import models
from flox_isa.webhook.models import container_cpu, pod_from
from tests.unit.webhook.test_decision import pod


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The container texts decoded from now on (an empty memo)."""
    texts: list[bytes] = []
    real = models._CONTAINER_DECODER

    class Counting:
        def decode(self, text: bytes) -> Any:
            texts.append(text)
            return real.decode(text)

    monkeypatch.setattr(models, "_CONTAINER_DECODER", Counting())
    monkeypatch.setattr(models, "_container_cpus", OrderedDict())
    return texts


def _container(cpu: str) -> dict[str, Any]:
    return {"name": "worker", "env": [{"name": "A", "value": "1"}],
            "resources": {"requests": {"cpu": cpu}}}  # fmt: skip


def test_a_workloads_pods_decode_their_shared_container_once(decoded: list[bytes]) -> None:
    pods = [pod_from(pod(spec={"containers": [_container(cpu)]})) for cpu in ("1", "1", "2")]
    requests = [p.threads_input[0][0].cpu_request for p in pods]
    assert requests == ["1", "1", "2"]
    assert len(decoded) == 2  # the second pod's container came from memory


def test_a_container_whose_digest_is_anothers_is_decoded_for_itself(decoded: list[bytes]) -> None:
    one, two = (msgspec.json.encode(_container(cpu)) for cpu in ("1", "2"))
    first = container_cpu(msgspec.Raw(one))
    # As if `two` had the digest of `one`: the memo's entry under it holds `one`'s text.
    models._container_cpus[xxhash.xxh3_64_intdigest(two)] = (one, first)
    assert container_cpu(msgspec.Raw(two)).cpu_request == "2"


def test_the_container_memo_is_bounded(
    decoded: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "CONTAINER_MEMO_SIZE", 2)
    for cpu in ("1", "2", "2", "3", "1"):
        container_cpu(msgspec.Raw(msgspec.json.encode(_container(cpu))))
    assert len(models._container_cpus) == 2
    assert len(decoded) == 4  # the second "2" from memory; "1" had gone (the oldest first)


def test_a_container_too_long_to_remember_is_decoded_each_time(
    decoded: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = msgspec.json.encode(_container("1"))
    monkeypatch.setattr(models, "CONTAINER_TEXT_LIMIT", len(text) - 1)
    for _ in range(2):
        assert container_cpu(msgspec.Raw(text)).cpu_request == "1"
    assert len(decoded) == 2 and not models._container_cpus


def test_a_pod_given_as_data_that_is_not_json_is_a_validation_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="not JSON data"):
        pod_from({"metadata": {"labels": {"app": object()}}})

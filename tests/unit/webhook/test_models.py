"""The admission edge's model: a pod's spec decoded once per distinct spec text."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
import pytest
import xxhash

from flox_isa.webhook import models
from flox_isa.webhook.models import pod_from, spec_facts
from tests.unit.webhook.test_decision import pod


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The spec texts decoded from now on (an empty memo)."""
    texts: list[bytes] = []
    real = models._SPEC_DECODER

    class Counting:
        def decode(self, text: bytes) -> Any:
            texts.append(text)
            return real.decode(text)

    monkeypatch.setattr(models, "_SPEC_DECODER", Counting())
    monkeypatch.setattr(models, "_spec_facts", OrderedDict())
    return texts


def _spec(cpu: str) -> dict[str, Any]:
    container = {"name": "worker", "env": [{"name": "A", "value": "1"}],
                 "resources": {"requests": {"cpu": cpu}}}  # fmt: skip
    return {"containers": [container], "nodeSelector": {"kubernetes.io/os": "linux"}}


def _text(cpu: str) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(_spec(cpu)))


def test_a_workloads_pods_decode_their_shared_spec_once(decoded: list[bytes]) -> None:
    pods = [pod_from(pod(spec=_spec(cpu))) for cpu in ("1", "1", "2")]
    requests = [p.threads_input[0][0].cpu_request for p in pods]
    assert requests == ["1", "1", "2"]
    assert len(decoded) == 2  # the second pod's spec came from memory
    assert pods[0].facts is pods[1].facts  # one key part, compared by identity first


def test_equal_facts_of_different_texts_are_equal_keys(decoded: list[bytes]) -> None:
    # The same spec with its keys in another order: another text, the same facts.
    one = spec_facts(_text("1"))
    other = spec_facts(msgspec.Raw(msgspec.json.encode(dict(reversed(_spec("1").items())))))
    assert one is not other and one == other and hash(one) == hash(other)
    assert one != spec_facts(_text("2"))


def test_a_spec_whose_digest_is_anothers_is_decoded_for_itself(decoded: list[bytes]) -> None:
    one, two = _text("1"), _text("2")
    first = spec_facts(one)
    # As if `two` had the digest of `one`: the memo's entry under it holds `one`'s text.
    models._spec_facts[xxhash.xxh3_64_intdigest(two)] = (bytes(one), first)
    assert spec_facts(two).threads_input[0][0].cpu_request == "2"


def test_the_spec_memo_is_bounded(decoded: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "SPEC_MEMO_SIZE", 2)
    for cpu in ("1", "2", "2", "3", "1"):
        spec_facts(_text(cpu))
    assert len(models._spec_facts) == 2
    assert len(decoded) == 4  # the second "2" from memory; "1" had gone (the oldest first)


def test_a_spec_too_long_to_remember_is_decoded_each_time(
    decoded: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _text("1")
    monkeypatch.setattr(models, "SPEC_TEXT_LIMIT", len(bytes(text)) - 1)
    for _ in range(2):
        assert spec_facts(text).threads_input[0][0].cpu_request == "1"
    assert len(decoded) == 2 and not models._spec_facts


def test_the_memo_keeps_a_copy_not_the_request_body(decoded: list[bytes]) -> None:
    body = b'{"spec":' + bytes(_text("1")) + b"}"
    spec_facts(msgspec.json.decode(body, type=models.Pod).spec_text)
    ((text, _),) = models._spec_facts.values()
    assert type(text) is bytes and text == bytes(_text("1"))


def test_a_pod_given_as_data_that_is_not_json_is_a_validation_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="not JSON data"):
        pod_from({"metadata": {"labels": {"app": object()}}})


def test_a_malformed_spec_is_refused_at_its_path() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.spec\.containers\[0\]\.env`"):
        pod_from({"spec": {"containers": [{"name": "w", "env": {"A": "1"}}]}})

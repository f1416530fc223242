"""The webhook's view of the placement controller: alive only while its Lease changes."""

from __future__ import annotations

from typing import Any

from flox_isa.isa import names
from flox_isa.kube.heartbeat import Heartbeat, LeaseWatcher, lease_record


def lease(renewed: str, holder: str = "op-1", protocol: str = names.PLACEMENT_PROTOCOL) -> Any:
    return {
        "metadata": {
            "resourceVersion": renewed,
            "annotations": {names.PLACEMENT_PROTOCOL_ANNOTATION: protocol},
        },
        "spec": {"holderIdentity": holder, "renewTime": renewed},
    }


def test_alive_after_a_renewal_is_seen_and_until_none_for_a_whole_duration() -> None:
    beat = Heartbeat(duration=10)
    beat.observe(lease_record(lease("1")), now=0)
    assert not beat.alive(now=0)  # one record could be stale: wait for a change
    beat.observe(lease_record(lease("2")), now=3)
    assert beat.alive(now=3)
    beat.observe(lease_record(lease("2")), now=12)  # polled, unchanged
    assert beat.alive(now=12.9)
    assert not beat.alive(now=13.1)


def test_trust_is_earned_again_after_the_lease_went_stale() -> None:
    beat = Heartbeat(duration=10)
    for index, now in enumerate((0, 2)):
        beat.observe(lease_record(lease(str(index))), now)
    assert not beat.alive(now=20)
    beat.observe(lease_record(lease("9")), now=21)
    assert not beat.alive(now=21)  # one change after a stale spell is not enough
    beat.observe(lease_record(lease("10")), now=22)
    assert beat.alive(now=22)


def test_a_released_lease_or_another_protocol_is_not_a_heartbeat() -> None:
    assert lease_record(lease("1", holder="")) is None
    assert lease_record(lease("1", protocol="0")) is None
    beat = Heartbeat(duration=10)
    beat.observe(lease_record(lease("1")), 0)
    beat.observe(lease_record(lease("2")), 1)
    beat.observe(None, 2)  # released on a clean exit: stop gating at once
    assert not beat.alive(2)


def test_the_watcher_turns_late_binding_off_when_polls_fail() -> None:
    records = iter([lease("1"), lease("2")])
    changes: list[bool] = []

    def read() -> Any:
        try:
            return next(records)
        except StopIteration:
            raise OSError("connection refused") from None

    watcher = LeaseWatcher(read, duration=0.05, on_change=changes.append)
    watcher.check()
    assert watcher.check() is True
    import time  # noqa: PLC0415 - only here

    time.sleep(0.1)
    assert watcher.check() is False
    assert changes == [True, False]

"""Which placed pods recovery may recreate, and the spec their template gave them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.placement import Placement, ungated
from flox_isa.isa.recovery import base_spec, recoverable, unschedulable_seconds

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
VNNI = default_catalog().get("avx512vnni")


def stuck(seconds: float = 600, kind: str = "ReplicaSet", **annotations: str) -> dict[str, Any]:
    """A pod the placement controller pinned to avx512vnni, Unschedulable for `seconds`."""
    assert VNNI is not None
    gated = {
        "metadata": {
            "name": "w-1", "namespace": "t", "uid": "u1",
            "ownerReferences": [{"kind": kind, "name": "w", "uid": "o1", "controller": True}],
            "annotations": {names.ENVIRONMENT_ANNOTATION: "acme/e", **annotations},
        },
        "spec": {"nodeSelector": {"pool": "fast"},
                 "schedulingGates": [{"name": names.PLACEMENT_GATE}]},
    }  # fmt: skip
    pod = ungated(gated, Placement(VNNI, "n1", "room"), "acme/e", "int8-inference")
    since = (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "lastTransitionTime": since}]}  # fmt: skip
    return pod


def test_a_placed_replicaset_pod_unschedulable_past_the_bound_is_recoverable() -> None:
    assert recoverable(stuck(600), NOW, 300, "next-best")
    assert recoverable(stuck(600, kind="StatefulSet"), NOW, 300, "next-best")


@pytest.mark.parametrize("kind", ["Job", "DaemonSet", "TicketWorker"])
def test_only_owners_that_recreate_the_pod(kind: str) -> None:
    assert not recoverable(stuck(600, kind=kind), NOW, 300, "next-best")


def test_not_before_the_bound() -> None:
    assert unschedulable_seconds(stuck(200), NOW) == 200
    assert not recoverable(stuck(200), NOW, 300, "next-best")


def test_bare_pods_are_never_recreated() -> None:
    pod = stuck(600)
    del pod["metadata"]["ownerReferences"]
    assert not recoverable(pod, NOW, 300, "next-best")


def test_wait_pods_wait_on_purpose() -> None:
    assert not recoverable(
        stuck(600, **{names.WHEN_FULL_ANNOTATION: "wait"}), NOW, 300, "next-best"
    )
    assert not recoverable(stuck(600), NOW, 300, "wait")
    assert recoverable(stuck(600, **{names.WHEN_FULL_ANNOTATION: "next-best"}), NOW, 300, "wait")


def test_pods_placed_at_admission_or_by_a_deployment_are_not_ours_to_recreate() -> None:
    pod = stuck(600)
    del pod["metadata"]["annotations"][names.ADDED_SELECTOR_ANNOTATION]
    assert not recoverable(pod, NOW, 300, "next-best")


def test_bound_or_terminating_pods_are_left_alone() -> None:
    bound = stuck(600)
    bound["spec"]["nodeName"] = "n1"
    terminating = stuck(600)
    terminating["metadata"]["deletionTimestamp"] = "2026-12-01T11:59:00Z"
    assert not recoverable(bound, NOW, 300, "next-best")
    assert not recoverable(terminating, NOW, 300, "next-best")


def test_base_spec_removes_only_the_selector_entries_placement_added() -> None:
    pod = stuck()
    assert VNNI is not None
    added = pod["metadata"]["annotations"][names.ADDED_SELECTOR_ANNOTATION].split(",")
    assert names.cpuid_label("AVX512VNNI") in added and names.ARCH_LABEL in added
    assert base_spec(pod)["nodeSelector"] == {"pool": "fast"}


def test_a_selector_entry_the_template_had_is_kept() -> None:
    assert VNNI is not None
    flag = names.cpuid_label("AVX512VNNI")
    gated = {"metadata": {"annotations": {}},
             "spec": {"nodeSelector": {flag: "true"}}}  # fmt: skip
    pod = ungated(gated, Placement(VNNI, "n1", "room"), "acme/e", "int8-inference")
    assert flag not in pod["metadata"]["annotations"][names.ADDED_SELECTOR_ANNOTATION].split(",")
    assert base_spec(pod)["nodeSelector"] == {flag: "true"}

"""Recovery in the placement controller, without a cluster: which stuck pods it deletes,
how many the room elsewhere allows, and that their owner's new pods skip the variant."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from flox_isa.isa import names
from flox_isa.kube.rest import Request
from flox_isa.operator.placement import PlacementController
from flox_isa.operator.writes import delete_pod
from tests.unit.operator.test_placement import controller, gated_pod, nodes, rounds

VNNI_AND_AVX2 = [("m6i.2xlarge", 1), ("m4.2xlarge", 1)]  # room for 7 one-CPU pods each
OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w", "uid": "rs-1",
         "controller": True}  # fmt: skip


def owned(**options: Any) -> dict[str, Any]:
    pod = gated_pod(**options)
    pod["metadata"]["ownerReferences"] = [OWNER]
    return pod


def unschedulable(pod: dict[str, Any], seconds: float) -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    stuck = {**pod, "spec": {**pod["spec"]}, "status": {"phase": "Pending",
                                                         "conditions": [condition]}}  # fmt: skip
    stuck["spec"].pop("nodeName", None)
    return stuck


def placed_then_stuck(
    placement: PlacementController, count: int, seconds: float = 600, **options: Any
) -> list[dict[str, Any]]:
    """`count` pods placed on avx512vnni; the scheduler could not bind them (say, their
    anti-affinity allows one per node): Unschedulable for `seconds`."""
    for _ in range(count):
        placement.pod_changed("ADDED", owned(**options))
    chosen = placement.plan_batch()
    assert {c.placement.variant.name for c in chosen} == {"avx512vnni"}
    stuck = [unschedulable(c.body, seconds) for c in chosen]
    for pod in stuck:
        placement.pod_changed("MODIFIED", pod)
    return stuck


def test_stuck_pods_go_where_another_variant_has_room() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2), recover_after=300)
    stuck = placed_then_stuck(placement, 3)
    plan = placement.plan_recovery(300)
    # avx512 has room too, but only on the VNNI node the pods failed on.
    assert [(m.pod["metadata"]["uid"], m.variant, m.target) for m in plan] == [
        (p["metadata"]["uid"], "avx512vnni", "avx2") for p in stuck
    ]


def test_no_pod_is_deleted_before_the_bound() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2), recover_after=300)
    placed_then_stuck(placement, 3, seconds=100)
    assert placement.plan_recovery(300) == []


def test_recovery_is_off_unless_asked() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2))
    placed_then_stuck(placement, 3)
    assert placement.plan_recovery(300) == []


def test_room_elsewhere_bounds_how_many_move() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2), recover_after=300)
    # Five one-CPU pods of another team take most of the AVX2 node: room for 2.
    avx2 = next(m.name for g in placement.fleet.groups for m in g.members if "m4" in m.name)
    for index in range(5):
        other = gated_pod()
        del other["spec"]["schedulingGates"]
        other["metadata"]["uid"] = f"other-{index}"
        other["spec"]["nodeName"] = avx2
        placement.pod_changed("ADDED", other)
    placed_then_stuck(placement, 4)
    assert [m.target for m in placement.plan_recovery(300)] == ["avx2", "avx2"]


def test_wait_pods_are_not_recovered() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2), recover_after=300)
    placed_then_stuck(placement, 2, annotations={names.WHEN_FULL_ANNOTATION: "wait"})
    assert placement.plan_recovery(300) == []


def test_the_owners_new_pods_skip_the_variant_that_failed() -> None:
    placement = controller(nodes(*VNNI_AND_AVX2), recover_after=300)
    stuck = placed_then_stuck(placement, 2)
    deleted: list[Request] = []

    async def send(request: Request) -> dict[str, Any]:
        deleted.append(request)
        return {}

    placement.api.send = send  # type: ignore[method-assign]
    assert asyncio.run(placement.recover_due()) == 2
    assert deleted == [delete_pod(p) for p in stuck]
    assert [r.body["preconditions"]["uid"] for r in deleted if r.body] == [
        p["metadata"]["uid"] for p in stuck
    ]
    for pod in stuck:
        placement.pod_changed("DELETED", pod)
    placement.pod_changed("ADDED", owned())  # the ReplicaSet's replacement
    placement.pod_changed("ADDED", gated_pod())  # another owner's pod: unaffected
    chosen = {c.pod["metadata"]["uid"]: c.placement for c in rounds(placement)}
    replacement, other = chosen.values()
    assert (replacement.variant.name, replacement.reason) == ("avx2", "spill")
    assert other.variant.name == "avx512vnni"
    assert placement.stats.recovered == 2

"""TicketWorkers planned by free room (issue 14): the reconcile on the placement accounting."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flox_isa.isa import names
from flox_isa.isa.capacity import demand_of
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.constraints import constraints_of
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.replan import Memory
from flox_isa.isa.scheduling import NodeState
from flox_isa.operator.capacity import Rooms
from flox_isa.operator.placement import PlacementSettings, Planner
from flox_isa.operator.reconcile import Capacity, Decision, build_status, decide, move_message
from tests.unit.isa.test_planning import fleet
from tests.unit.operator.test_reconcile import NOW, FakeCluster, conditions, groups, ticketworker

CATALOG = default_catalog()
NODES = fleet("m6i.xlarge x2", "c8g.xlarge x2", "m4.xlarge x1")
WALL = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
ONE_CPU = {"spec": {"containers": [{"name": "w", "resources": {"requests": {"cpu": "1"}}}]}}
# Where one replica of ONE_CPU may go, and what it asks of a node.
ONE_CPU_POD = (constraints_of(ONE_CPU["spec"]), demand_of(ONE_CPU["spec"]))


def pod(  # noqa: PLR0917 - test shorthand
    uid: str,
    node: str | None,
    cpu: str = "1",
    namespace: str = "other",
    labels: dict[str, str] | None = None,
    unschedulable_for: float | None = None,
    wall: dt.datetime = WALL,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running" if node else "Pending"}
    if unschedulable_for is not None:
        since = (wall - dt.timedelta(seconds=unschedulable_for)).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        status["conditions"] = [{**condition, "lastTransitionTime": since}]
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"uid": uid, "name": uid, "namespace": namespace, "labels": labels or {}},
            "spec": spec, "status": status}  # fmt: skip


BUSY = [pod("busy-0", "m6i-xlarge-0", "3920m"), pod("busy-1", "m6i-xlarge-1", "2900m")]


def planner(nodes: list[NodeState], pods: list[dict[str, Any]]) -> Planner:
    found = Planner(PlacementSettings(CATALOG, lease_namespace="", identity="test"))
    found.fleet_changed(index_nodes(nodes))
    found.replace_pods(pods)
    return found


class World:
    """One TicketWorker reconciled on a fleet whose pods a `Planner` accounts."""

    def __init__(
        self, pods: list[dict[str, Any]], nodes: list[NodeState] = NODES, **spec: Any
    ) -> None:
        self.tw = ticketworker(workload="int8-inference", template=ONE_CPU, **spec)
        self.nodes = nodes
        self.planner = planner(nodes, pods)
        self.rooms = Rooms(self.planner, CATALOG)
        self.cluster = FakeCluster()
        self.memory = Memory()
        self.wall = WALL

    def decide(self) -> Decision:
        key = ("ns", "tw")
        capacity = Capacity(functools.partial(self.rooms.room_for, key),
                            tuple(self.planner.owned.get(key, {}).values()), self.memory,
                            self.wall)  # fmt: skip
        decision = decide(self.tw, CATALOG, groups(self.nodes), self.cluster.deployments,
                          capacity)  # fmt: skip
        assert decision.memory is not None
        self.memory = decision.memory
        return decision

    def reconcile(self) -> Decision:
        decision = self.decide()
        self.cluster.apply(decision.actions)
        self.tw["status"] = build_status(decision, self.cluster.deployments, self.tw["status"],
                                         NOW)  # fmt: skip
        return decision

    def new_leader(self, nodes: list[NodeState], pods: list[dict[str, Any]]) -> None:
        """Another operator takes over on `nodes`: its own accounting, nothing remembered."""
        self.nodes = nodes
        self.planner = planner(nodes, pods)
        self.rooms = Rooms(self.planner, CATALOG)
        self.memory = Memory()

    def run_pods(self, placed: dict[str, list[str]], stuck: dict[str, float] | None = None) -> None:
        """The TicketWorker's pods: per variant, bound to these nodes (one per entry), and
        `stuck` more per variant Unschedulable for that long."""
        pods: list[dict[str, Any]] = []
        for variant, nodes in placed.items():
            for i, node in enumerate(nodes):
                labels = {names.TICKETWORKER_LABEL: "tw", names.VARIANT_LABEL: variant}
                pods.append(pod(f"tw-{variant}-{i}", node, namespace="ns", labels=labels))
        for variant, seconds in (stuck or {}).items():
            for i in range(self.cluster.deployments[f"tw-{variant}"]["spec"]["replicas"]
                           - len(placed.get(variant, []))):  # fmt: skip
                labels = {names.TICKETWORKER_LABEL: "tw", names.VARIANT_LABEL: variant}
                pods.append(pod(f"tw-{variant}-stuck-{i}", None, namespace="ns", labels=labels,
                                unschedulable_for=seconds, wall=self.wall))  # fmt: skip
        self.planner.replace_pods([*BUSY, *pods])


def replicas(world: World) -> dict[str, int]:
    return {d["metadata"]["labels"][names.VARIANT_LABEL]: d["spec"]["replicas"]
            for d in world.cluster.deployments.values()}  # fmt: skip


def message(status: dict[str, Any], kind: str) -> str:
    return str(next(c["message"] for c in status["conditions"] if c["type"] == kind))


def test_best_on_busy_vnni_nodes_spills_in_rank_order_and_says_so() -> None:
    world = World(BUSY, replicas=8, placement="best")
    world.reconcile()
    assert replicas(world) == {"avx512vnni": 1, "armv9": 6, "avx2": 1}
    status = world.tw["status"]
    assert conditions(status)["CapacityLimited"] == ("True", "Spilled")
    assert message(status, "CapacityLimited") == (
        "avx512vnni has room for 1 of 8 (7 short): plan avx2=1 avx512vnni=1 armv9=6"
    )
    rooms = {v["variant"]: v["room"] for v in status["variants"]}
    assert rooms == {"avx2": 4, "avx512vnni": 1, "armv9": 6}  # avx2 runs on every x86 node


def test_its_own_pods_are_not_load_the_plan_stays() -> None:
    world = World(BUSY, replicas=8, placement="best")
    world.reconcile()
    world.run_pods({"avx512vnni": ["m6i-xlarge-1"], "armv9": ["c8g-xlarge-0"] * 3
                    + ["c8g-xlarge-1"] * 3, "avx2": ["m4-xlarge-0"]})  # fmt: skip
    world.memory = Memory()  # a new leader: nothing remembered
    decision = world.reconcile()
    assert decision.actions == () and decision.moves == ()
    assert replicas(world) == {"avx512vnni": 1, "armv9": 6, "avx2": 1}
    assert {v["variant"]: v["room"] for v in world.tw["status"]["variants"]}["armv9"] == 6


def test_an_idle_fleet_gets_todays_plan() -> None:
    world = World([], replicas=6, placement="best")
    world.reconcile()
    assert replicas(world) == {"avx512vnni": 6}
    assert conditions(world.tw["status"])["CapacityLimited"] == ("False", "RoomEnough")


def test_wait_keeps_the_excess_unschedulable_on_the_best_variant() -> None:
    world = World(BUSY, replicas=8, placement="best", whenFull="wait")
    world.reconcile()
    assert replicas(world) == {"avx512vnni": 8}
    world.run_pods({"avx512vnni": ["m6i-xlarge-1"]}, stuck={"avx512vnni": 30})
    world.reconcile()
    status = world.tw["status"]
    assert conditions(status)["CapacityLimited"] == ("True", "WaitingForRoom")
    assert message(status, "CapacityLimited").endswith("; 7 pods Unschedulable")
    (vnni,) = status["variants"]
    assert (vnni["desiredReplicas"], vnni["unschedulableReplicas"], vnni["room"]) == (8, 7, 1)


def test_stuck_pods_move_calmly_when_next_best_is_allowed() -> None:
    world = World(BUSY, replicas=8, placement="best", whenFull="wait",
                  replan={"unschedulableSeconds": 300, "intervalSeconds": 60,
                          "maxMovePercent": 50})  # fmt: skip
    world.reconcile()
    world.tw["spec"]["whenFull"] = "next-best"
    world.run_pods({"avx512vnni": ["m6i-xlarge-1"]}, stuck={"avx512vnni": 100})
    world.wall = WALL + dt.timedelta(seconds=120)
    decision = world.reconcile()
    assert decision.moves == () and replicas(world) == {"avx512vnni": 8}  # not stuck long enough
    assert decision.recheck is not None and 0 < decision.recheck <= 300
    world.run_pods({"avx512vnni": ["m6i-xlarge-1"]}, stuck={"avx512vnni": 400})
    decision = world.reconcile()
    (move,) = decision.moves
    assert replicas(world) == {"avx512vnni": 4, "armv9": 4}  # 50% of 8, armv9 first in rank
    text = move_message(move, decision.room, 300)
    assert text == ("4 replicas avx512vnni → armv9: avx512vnni full for 400 s (Unschedulable"
                    " over 300 s), armv9 has room for 6")  # fmt: skip


def test_a_burst_of_new_ticketworkers_does_not_plan_the_same_room_twice() -> None:
    rooms = Rooms(planner(NODES, BUSY), CATALOG)
    plans = {}
    for name in ("a", "b"):
        tw = ticketworker(workload="int8-inference", template=ONE_CPU, placement="best")
        tw["metadata"]["name"] = name
        key = ("ns", name)
        capacity = Capacity(functools.partial(rooms.room_for, key), (), Memory(), WALL)
        decision = decide(tw, CATALOG, groups(NODES), {}, capacity)
        assert decision.room is not None and decision.plan is not None
        planned = {s.variant.name: s.replicas for s in decision.plan.shares}
        rooms.claim(key, decision.room, planned, demand_of(ONE_CPU["spec"]))
        plans[name] = planned
    # a holds the one VNNI slot and 3 Graviton4 slots until its pods take them.
    assert plans == {"a": {"avx512vnni": 1, "armv9": 3},
                     "b": {"avx2": 1, "avx512vnni": 0, "armv9": 3}}  # fmt: skip
    room = rooms.room_for(("ns", "b"), *ONE_CPU_POD, "int8-inference", None)
    assert room.of("avx512vnni") == 0
    rooms.forget(("ns", "a"))
    room = rooms.room_for(("ns", "b"), *ONE_CPU_POD, "int8-inference", None)
    assert (room.of("avx512vnni"), room.of("armv9")) == (1, 6)  # b's own claims are not load


def test_room_that_comes_and_goes_never_deletes_the_best_variants_deployment() -> None:
    full = [pod("busy-0", "m6i-xlarge-0", "3920m"), pod("busy-1", "m6i-xlarge-1", "3920m")]
    world = World(full, replicas=4, placement="best")
    world.reconcile()
    assert replicas(world) == {"avx512vnni": 0, "armv9": 4}
    for busy in (BUSY, full, BUSY):  # one VNNI slot frees up, is taken, frees up again
        world.planner.replace_pods(busy)
        decision = world.reconcile()
        assert decision.actions == () and decision.moves == ()  # calm: nothing moves yet
    assert replicas(world) == {"avx512vnni": 0, "armv9": 4}


def test_a_new_leader_applies_a_fleet_change_made_during_the_handover_at_once() -> None:
    world = World([], nodes=fleet("m4.xlarge x4"), replicas=4, placement="spread")
    world.reconcile()
    assert replicas(world) == {"avx2": 4}
    assert world.tw["status"]["planBasis"] == "spread: avx2=4"
    world.new_leader(fleet("m4.xlarge x4", "c8g.xlarge x4"), [])  # nodes joined meanwhile
    world.reconcile()
    assert replicas(world) == {"avx2": 2, "armv9": 2}
    assert world.tw["status"]["planBasis"] == "spread: avx2=4 armv9=4"


def test_without_a_published_basis_a_new_leader_keeps_what_runs() -> None:
    world = World([], nodes=fleet("m4.xlarge x4"), replicas=4, placement="spread")
    world.reconcile()
    del world.tw["status"]["planBasis"]  # written by an operator before planBasis
    world.new_leader(fleet("m4.xlarge x4", "c8g.xlarge x4"), [])
    world.reconcile()
    assert replicas(world) == {"avx2": 4, "armv9": 0}  # calm: nothing stuck, room too new


@pytest.mark.parametrize("again", [("y", "x"), ("x", "y"), ("x",), ()])
def test_a_claim_the_scheduler_displaced_moves_to_the_node_the_pod_left(
    again: tuple[str, ...],
) -> None:
    three_cpus = {"containers": [{"name": "w", "resources": {"requests": {"cpu": "3"}}}]}
    vnni = fleet("m6i.xlarge x2")  # one 3-CPU replica fits on each
    accounting = planner(vnni, [])
    rooms = Rooms(accounting, CATALOG)

    def plan(name: str) -> int:
        key = ("ns", name)
        room = rooms.room_for(
            key, constraints_of(three_cpus), demand_of(three_cpus), "int8-inference", None
        )
        rooms.claim(key, room, {"avx512vnni": 1}, demand_of(three_cpus))
        return room.of("avx512vnni")

    assert plan("x") == 2 and plan("y") == 1  # x holds one node, y the other
    # The scheduler binds x's pod on the node y's claim holds (claims live in our memory).
    y_node = next(entry.node for uid, entry in rooms.claims.reservations() if "/y@" in uid)
    labels = {names.TICKETWORKER_LABEL: "x", names.VARIANT_LABEL: "avx512vnni"}
    accounting.pod_changed("ADDED", pod("x-0", y_node, "3", "ns", labels))
    for name in again:  # x and y plan again, in either order, or not at all
        plan(name)
    assert plan("z") == 0  # y's replica still needs the last free node
    (held,) = {entry.node for uid, entry in rooms.claims.reservations() if "/y@" in uid}
    assert held != y_node


@settings(max_examples=150, deadline=None)
@given(
    wanted=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    steps=st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 5)), max_size=12),
)
def test_claims_and_pods_never_count_a_node_twice_nor_lose_room(
    wanted: list[int], steps: list[tuple[int, bool, int]]
) -> None:
    """TicketWorkers plan, and the scheduler binds their pods on any node with room
    (claims are ours alone); at every step each node holds at most what fits, and the
    claims hold every outstanding replica that the free room can take."""
    three_cpus = {"containers": [{"name": "w", "resources": {"requests": {"cpu": "3"}}}]}
    accounting = planner(fleet("m6i.xlarge x5"), [])  # room for one replica on each
    rooms = Rooms(accounting, CATALOG)
    keys = [("ns", f"t{i}") for i in range(len(wanted))]
    bound: list[str] = []

    def plan(i: int) -> None:
        room = rooms.room_for(
            keys[i], constraints_of(three_cpus), demand_of(three_cpus), "int8-inference", None
        )
        rooms.claim(keys[i], room, {"avx512vnni": wanted[i]}, demand_of(three_cpus))

    for i in range(len(keys)):
        plan(i)
    for who, binds, where in steps:
        i = who % len(keys)
        if not binds:
            plan(i)
            continue
        free = [n for n in sorted(accounting.allocatable) if accounting.ledger.used(n) == {}]
        outstanding = wanted[i] - sum(1 for n in bound if n.startswith(f"t{i}-"))
        if not free or outstanding <= 0:
            continue
        labels = {names.TICKETWORKER_LABEL: f"t{i}", names.VARIANT_LABEL: "avx512vnni"}
        name = f"t{i}-{len(bound)}"
        accounting.pod_changed("ADDED", pod(name, free[where % len(free)], "3", "ns", labels))
        bound.append(name)
        holding = [e.node for _, e in rooms.claims.reservations()]
        assert len(holding) == len(set(holding))  # one 3-CPU replica per node
        assert not set(holding) & {e.node for e in map(accounting.ledger.entry, bound) if e}
        outstanding_all = sum(wanted) - len(bound)
        assert len(holding) == min(outstanding_all, 5 - len(bound))

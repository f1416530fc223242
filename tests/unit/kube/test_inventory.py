"""The node index (grouping, per-node fallback) and the node list/watch inventory."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flox_isa.isa import names
from flox_isa.isa.constraints import constraints_of
from flox_isa.isa.fleet_index import FleetIndexBuilder, index_nodes
from flox_isa.isa.nodes import node_state
from flox_isa.isa.offer import OfferIndex
from flox_isa.kube.inventory import NodeInventory, Reflector
from tests.unit.webhook.test_decision import CATALOG, fleet_nodes, fleet_states


def many_nodes(count: int) -> list[dict[str, Any]]:
    """`count` nodes cycling through the default fleet's instance types, uniquely named."""
    templates = fleet_nodes()
    nodes = []
    for i in range(count):
        node = json.loads(json.dumps(templates[i % len(templates)]))
        name = f"node-{i}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        nodes.append(node)
    return nodes


def test_thousands_of_nodes_make_one_group_per_kind_of_node() -> None:
    index = index_nodes(node_state(n) for n in many_nodes(5000))
    assert index.node_count == 5000
    assert len(index.groups) == 9  # the default fleet's nine instance types


def test_a_label_holding_the_node_name_is_per_node() -> None:
    nodes = many_nodes(20)
    for node in nodes:
        node["metadata"]["labels"]["example.com/instance-id"] = node["metadata"]["name"]
    index = index_nodes(node_state(n) for n in nodes)
    assert len(index.groups) == 9
    assert "example.com/instance-id" in index.per_node_keys
    one = {"nodeSelector": {"example.com/instance-id": "node-3"}}
    offer = OfferIndex(index, CATALOG).offer(constraints_of(one))
    assert offer.eligible_nodes == 1


def test_builder_updates_only_on_changes_a_decision_reads() -> None:
    builder = FleetIndexBuilder()
    nodes = many_nodes(18)
    builder.replace(node_state(n) for n in nodes)
    first = builder.index()
    heartbeat = json.loads(json.dumps(nodes[0]))
    heartbeat["metadata"]["resourceVersion"] = "999"
    assert builder.upsert(node_state(heartbeat)) is False
    assert builder.index() is first
    cordoned = {**nodes[0], "spec": {"unschedulable": True}}
    assert builder.upsert(node_state(cordoned)) is True
    second = builder.index()
    assert second.version > first.version and len(second.groups) == 10
    assert builder.remove("node-0") is True and builder.remove("node-0") is False
    third = builder.index()
    assert (third.node_count, len(third.groups)) == (17, 9)


def test_offers_follow_the_fleet() -> None:
    states = fleet_states()
    index = OfferIndex(index_nodes(states), CATALOG)
    offer = index.offer(constraints_of({}))
    assert offer.eligible_nodes == 18
    assert offer.nodes_by_variant == {
        "avx2": 12,
        "avx512": 10,
        "avx512bf16": 2,
        "avx512vnni": 6,
        "armv8.2": 6,
        "armv9": 2,  # c8g; c7g (Graviton3) has no SVE2
    }
    arm = index.offer(constraints_of({"nodeSelector": {names.ARCH_LABEL: "arm64"}}))
    assert (arm.eligible_nodes, arm.nodes_by_variant) == (6, {"armv8.2": 6, "armv9": 2})


def test_the_offer_memo_answers_identical_constraints_alike() -> None:
    index = OfferIndex(index_nodes(fleet_states()), CATALOG)
    spec = {"nodeSelector": {names.ARCH_LABEL: "amd64"}, "tolerations": [{"operator": "Exists"}]}
    offer = index.offer(constraints_of(spec))
    assert offer is index.offer(constraints_of(json.loads(json.dumps(spec))))
    assert offer is not index.offer(constraints_of({}))


# --- Reflector: list, watch, resync -------------------------------------------------------------


class FakeResponse:
    def __init__(self, data: Any = None, events: list[dict[str, Any]] | None = None) -> None:
        self.data = json.dumps(data).encode() if data is not None else b""
        self._events = events or []
        self.closed = False

    def stream(self, amt: Any = None, decode_content: bool = True) -> Iterator[bytes]:
        text = "".join(json.dumps(e) + "\n" for e in self._events).encode()
        yield from (text[i : i + 7] for i in range(0, len(text), 7))  # split mid-line

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def page(items: list[dict[str, Any]], call: dict[str, Any], version: str = "10") -> FakeResponse:
    """One page of a list as the API server pages it: `limit` items and a continue token."""
    start = int(call.get("_continue") or 0)
    end = start + int(call["limit"])
    metadata = {"resourceVersion": version, "continue": str(end) if end < len(items) else ""}
    return FakeResponse({"metadata": metadata, "items": items[start:end]})


class FakeApi:
    """list_node: two lists, three watches (gone, expired, then the test stops it)."""

    def __init__(self, nodes: list[dict[str, Any]], done: threading.Event) -> None:
        self.nodes = nodes
        self.done = done
        self.calls: list[dict[str, Any]] = []
        self.watches = 0

    def __call__(self, **kwargs: Any) -> FakeResponse:
        self.calls.append(kwargs)
        if not kwargs.get("watch"):
            lists = sum(1 for c in self.calls if not c.get("watch") and not c.get("_continue"))
            items = self.nodes[:2] if lists == 1 else self.nodes[:3]
            return page(items, kwargs)
        self.watches += 1
        if self.watches == 1:
            added = {
                "type": "ADDED",
                "object": {
                    **self.nodes[5],
                    "metadata": {**self.nodes[5]["metadata"], "resourceVersion": "11"},
                },
            }
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
            return FakeResponse(events=[added, gone])
        if self.watches == 2:
            deleted = {
                "type": "DELETED",
                "object": {"metadata": {"name": "node-0", "resourceVersion": "12"}},
            }
            bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}
            return FakeResponse(events=[deleted, bookmark])
        self.done.set()
        return FakeResponse(events=[])


def test_reflector_lists_watches_and_relists_after_410_gone() -> None:
    nodes = many_nodes(6)
    done = threading.Event()
    api = FakeApi(nodes, done)
    inventory = NodeInventory()
    restarts: list[tuple[str, str]] = []
    reflector = Reflector(
        "nodes", api, inventory, lambda r, why: restarts.append((r, why)), page_size=2
    )
    reflector.start()
    assert done.wait(5)
    reflector.stop()
    assert reflector.listed.is_set()
    assert restarts[:2] == [("nodes", "gone"), ("nodes", "expired")]
    lists = [c for c in api.calls if not c.get("watch")]
    watches = [c for c in api.calls if c.get("watch")]
    # Two lists, the second (three nodes) in two pages of two: the continue token is passed on.
    assert [(c["limit"], c["_continue"]) for c in lists] == [(2, None), (2, None), (2, "2")]
    # After the relist: watch from the list's version, then from the bookmark's.
    assert [w["resource_version"] for w in watches[:3]] == ["10", "10", "15"]
    assert all(w["allow_watch_bookmarks"] and w["timeout_seconds"] > 0 for w in watches)
    fleet = inventory.fleet()
    assert fleet is not None
    names_now = {m.name for g in fleet.groups for m in g.members}
    assert names_now == {"node-1", "node-2"}  # relisted three, then node-0 deleted


def test_reflector_retries_after_errors_and_counts_them() -> None:
    attempts: list[int] = []
    recovered = threading.Event()

    def flaky(**kwargs: Any) -> FakeResponse:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("apiserver down")
        recovered.set()
        return FakeResponse({"metadata": {"resourceVersion": "1"}, "items": []})

    restarts: list[str] = []
    inventory = NodeInventory()
    reflector = Reflector("nodes", flaky, inventory, lambda r, why: restarts.append(why))
    reflector.start()
    assert recovered.wait(10)
    reflector.stop()
    assert restarts[0] == "error"
    assert inventory.fleet() is not None


def test_node_inventory_skips_a_malformed_node_and_publishes_on_change() -> None:
    published: list[int] = []
    inventory = NodeInventory(on_change=lambda index: published.append(index.node_count))
    assert inventory.fleet() is None
    nodes = many_nodes(3)
    broken = json.loads(json.dumps(nodes[2]))
    broken["status"]["allocatable"]["cpu"] = "lots"
    inventory.replace([nodes[0], nodes[1], broken])
    inventory.apply("MODIFIED", nodes[1])  # unchanged: nothing published
    inventory.apply("DELETED", nodes[0])
    assert published == [2, 1]


def test_a_list_failing_half_way_keeps_the_previous_fleet() -> None:
    nodes = many_nodes(4)
    inventory = NodeInventory()
    inventory.replace(nodes[:2])
    before = inventory.fleet()
    assert before is not None

    def cut_off() -> Iterator[dict[str, Any]]:
        yield nodes[2]
        raise ConnectionError("connection reset in the middle of the list")

    with pytest.raises(ConnectionError):
        inventory.replace(cut_off())
    assert inventory.fleet() is before
    inventory.replace(nodes[1:])
    after = inventory.fleet()
    assert after is not None and after.node_count == 3
    # A relist is a new fleet to the operator's caches, whose key is the version.
    assert after.version > before.version


def test_a_full_list_moves_the_inventory_out_of_the_collectors_sight() -> None:
    gc.unfreeze()
    try:
        inventory = NodeInventory()
        inventory.apply("ADDED", many_nodes(1)[0])
        assert gc.get_freeze_count() == 0  # a watch event does not freeze
        inventory.replace(many_nodes(3))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

"""The room a TicketWorker's replicas see, from the capacity accounting (`isa.capacity`).

The operator plans replicas by free room (`isa.planning.Room`) read from one `Planner`:
the placement controller's own (one pod watch feeds both), or, with `--no-placement`, a
planner of its own fed by a pod watch and never placing anything. A TicketWorker's own
pods are not counted as load on its room: its plan must not chase its own replicas.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flox_isa.isa.capacity import CPU, Demand, Ledger, Resources, pods_that_fit
from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.planning import Room, room_on
from flox_isa.operator.placement import Planner, variant_of

ROOMS_KEPT: Final = 64
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Planned:
    """What a TicketWorker planned: replicas per variant, and per variant the nodes (in
    the order its room listed them) its replicas may hold."""

    replicas: Mapping[str, int]
    nodes: Mapping[str, tuple[str, ...]]
    wants: Demand


class Rooms:
    """`room_for` per TicketWorker; the room of every pod counted is kept per template and
    ledger version, and only the nodes of a TicketWorker's own pods are counted again.

    Claims: the replicas a TicketWorker planned that its pods do not take yet (not
    created, or not bound) hold room, so a burst of new TicketWorkers does not plan the
    same free room twice. Claims are not pinned to nodes: they are laid out again, first
    fit in the order plans were first made, on the room the pods leave whenever the
    accounting changes. The scheduler binds a pod on whichever node it picks, maybe one
    another plan's claim held; that claim then moves to the room the pod left, so the
    claims never count one node twice nor lose one. A TicketWorker's own claims are, like
    its pods, not load on its own room.
    """

    def __init__(self, planner: Planner, catalog: Catalog) -> None:
        self.planner = planner
        self.catalog = catalog
        self._plans: dict[Key, Planned] = {}  # insertion order: the order claims are laid out
        self._plans_version = 0
        self._laid_out: tuple[int, int, int] | None = None  # (ledger id, its version, plans)
        self._claims = Ledger()
        self._claims_version = 0  # a new layout is a new Ledger: readers cache by this
        self._claimed: dict[Key, dict[str, dict[str, int]]] = {}  # key -> node -> held
        self._base: dict[tuple[Any, ...], Room] = {}

    @property
    def claims(self) -> Ledger:
        """The claims, laid out on the accounting as it is now."""
        self._lay_out()
        return self._claims

    def _used(self, node: str, priority: int) -> dict[str, int]:
        used = self.planner.ledger.used(node, priority)
        _add(used, self._claims.used(node))
        return used

    def room_for(
        self,
        key: Key,
        constraints: Constraints,
        wants: Demand,
        workload: Workload,
        allowed: Collection[str] | None,
    ) -> Room:
        self._lay_out()
        planner = self.planner
        ledger, allocatable = planner.ledger, planner.allocatable
        demand, priority = wants.resources, wants.priority
        cache = (planner.fleet.version, id(ledger), ledger.version, self._claims_version,
                 constraints, wants, workload,
                 tuple(allowed) if allowed is not None else None)  # fmt: skip
        base = self._base.get(cache)
        if base is None:
            if len(self._base) >= ROOMS_KEPT:
                self._base.clear()

            def probe(node: str) -> tuple[int, float]:
                used = self._used(node, priority)
                fit = pods_that_fit(allocatable.get(node, {}), used, demand)
                return fit, used.get(CPU, 0) / 1000

            base = self._base[cache] = room_on(
                self.catalog, planner.fleet, constraints, workload, allowed, probe
            )
        own = self.own_usage(key)
        for node, held in self._claimed.get(key, {}).items():
            _add(own.setdefault(node, {}), held)
        if not own:
            return base
        fits, busy_cpu = dict(base.fit), dict(base.busy_cpu)
        for node, requests in own.items():
            if node in fits:
                used = self._used(node, priority)
                _add(used, requests, -1)
                fits[node] = pods_that_fit(allocatable.get(node, {}), used, demand)
                busy_cpu[node] = max(0, used.get(CPU, 0)) / 1000
        return Room(fits, busy_cpu, base.nodes, base.best_nodes)

    def own_usage(self, key: Key) -> dict[str, dict[str, int]]:
        """Per node, what the TicketWorker's own pods count there (bound or reserved)."""
        usage: dict[str, dict[str, int]] = {}
        for uid in self.planner.owned.get(key, {}):
            entry = self.planner.ledger.entry(uid)
            if entry is not None and entry.kind != "nominated":
                _add(usage.setdefault(entry.node, {}), entry.requests)
        return usage

    def claim(self, key: Key, room: Room, replicas: Mapping[str, int], wants: Demand) -> None:
        """Hold room for the planned `replicas` (per variant) that the TicketWorker's pods
        do not count yet, on the nodes `room` (its own, just seen) lists for each."""
        nodes = {variant: room.nodes.get(variant, ()) for variant in replicas}
        plan = Planned(dict(replicas), nodes, wants)
        if self._plans.get(key) != plan:
            self._plans[key] = plan  # a plan made again keeps its place in the layout
            self._plans_version += 1

    def forget(self, key: Key) -> None:
        """Release the TicketWorker's claims (it is gone)."""
        if self._plans.pop(key, None) is not None:
            self._plans_version += 1

    def _counted(self, key: Key) -> dict[str, int]:
        """Per variant, the TicketWorker's pods that count on a node (bound or reserved)."""
        counted: dict[str, int] = {}
        for uid, pod in self.planner.owned.get(key, {}).items():
            entry = self.planner.ledger.entry(uid)
            if entry is not None and entry.kind != "nominated":
                variant = variant_of(pod)
                counted[variant] = counted.get(variant, 0) + 1
        return counted

    def _lay_out(self) -> None:
        """Lay every plan's outstanding replicas out again, first fit on the free room the
        accounting shows now, oldest plan first (once per accounting and plans version)."""
        ledger = self.planner.ledger
        stamp = (id(ledger), ledger.version, self._plans_version)
        if stamp == self._laid_out:
            return
        layout = _Layout(ledger, self.planner.allocatable)
        self._claimed = {}
        for key, plan in self._plans.items():
            counted = self._counted(key)
            held: dict[str, dict[str, int]] = {}
            for variant, count in plan.replicas.items():
                outstanding = count - counted.get(variant, 0)
                if outstanding > 0:
                    layout.hold(plan.nodes.get(variant, ()), outstanding, plan.wants, held)
            if held:
                self._claimed[key] = held
        self._claims = Ledger()
        for key, held in self._claimed.items():
            for node, requests in held.items():
                self._claims.count(f"{key[0]}/{key[1]}@{node}", node, requests, "reserved")
        self._claims_version += 1
        self._laid_out = stamp


class _Layout:
    """One pass of first fit: what claims hold per node so far, and for each demand the
    nodes it no longer fits on (a prefix of each node list, then a set), so 50 plans on
    5,000 nodes do not each walk the full nodes again."""

    def __init__(self, ledger: Ledger, allocatable: Mapping[str, Resources]) -> None:
        self.ledger = ledger
        self.allocatable = allocatable
        self.claimed: dict[str, dict[str, int]] = {}
        self.full: dict[Demand, set[str]] = {}
        self.start: dict[tuple[Demand, tuple[str, ...]], int] = {}

    def hold(
        self,
        nodes: tuple[str, ...],
        outstanding: int,
        wants: Demand,
        held: dict[str, dict[str, int]],
    ) -> None:
        demand = wants.resources
        full = self.full.setdefault(wants, set())
        prefix = (wants, nodes)
        start = index = self.start.get(prefix, 0)
        for index in range(start, len(nodes)):
            node = nodes[index]
            if node in full:
                continue
            used = self.ledger.used(node, wants.priority)
            _add(used, self.claimed.get(node, {}))
            fit = pods_that_fit(self.allocatable.get(node, {}), used, demand)
            take = min(outstanding, fit)
            if take == fit:
                full.add(node)
            if take > 0:
                outstanding -= take
                _add(held.setdefault(node, {}), demand, take)
                _add(self.claimed.setdefault(node, {}), demand, take)
            if outstanding <= 0:
                break
        while start < len(nodes) and nodes[start] in full:
            start += 1
        self.start[prefix] = start


def _add(total: dict[str, int], more: Resources, times: int = 1) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value * times

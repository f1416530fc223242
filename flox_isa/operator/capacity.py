"""The room a TicketWorker's replicas see, from the capacity accounting (`isa.capacity`).

The operator plans replicas by free room (`isa.planning.Room`) read from one `Planner`:
the placement controller's own (one pod watch feeds both), or, with `--no-placement`, a
planner of its own fed by a pod watch and never placing anything. A TicketWorker's own
pods are not counted as load on its room: its plan must not chase its own replicas.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from flox_isa.isa.capacity import CPU, Demand, Ledger, Resources, pods_that_fit
from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.planning import Room, room_on
from flox_isa.operator.placement import Planner, variant_of

ROOMS_KEPT: Final = 64


class Rooms:
    """`room_for` per TicketWorker; the room of every pod counted is kept per template and
    ledger version, and only the nodes of a TicketWorker's own pods are counted again.

    Claims: the replicas a TicketWorker plans that its pods do not take yet (their pods
    not created, or not bound) hold room on the nodes its plan counted (`claim`), so a
    burst of new TicketWorkers does not plan the same free room twice. Its own claims are,
    like its pods, not load on its own room.
    """

    def __init__(self, planner: Planner, catalog: Catalog) -> None:
        self.planner = planner
        self.catalog = catalog
        self.claims = Ledger()
        self._claimed: dict[tuple[str, str], dict[str, Resources]] = {}  # key -> node -> held
        self._base: dict[tuple[Any, ...], Room] = {}

    def _used(self, node: str, priority: int) -> dict[str, int]:
        used = dict(self.planner.ledger.used(node, priority))
        for name, value in self.claims.used(node).items():
            used[name] = used.get(name, 0) + value
        return used

    def room_for(
        self,
        key: tuple[str, str],
        constraints: Constraints,
        wants: Demand,
        workload: Workload,
        allowed: Collection[str] | None,
    ) -> Room:
        planner = self.planner
        ledger, allocatable = planner.ledger, planner.allocatable
        demand, priority = wants.resources, wants.priority
        cache = (planner.fleet.version, id(ledger), ledger.version, self.claims.version,
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

    def own_usage(self, key: tuple[str, str]) -> dict[str, dict[str, int]]:
        """Per node, what the TicketWorker's own pods count there (bound or reserved)."""
        usage: dict[str, dict[str, int]] = {}
        for uid in self.planner.owned.get(key, {}):
            entry = self.planner.ledger.entry(uid)
            if entry is not None and entry.kind != "nominated":
                _add(usage.setdefault(entry.node, {}), entry.requests)
        return usage

    def claim(
        self,
        key: tuple[str, str],
        room: Room,
        replicas: Mapping[str, int],
        wants: Demand,
    ) -> None:
        """Hold room for the planned `replicas` (per variant) that the TicketWorker's pods
        do not count yet: first fit on the nodes `room` (its own, just seen) has left."""
        self.forget(key)
        demand = wants.resources
        counted: dict[str, int] = {}
        on_node: dict[str, int] = {}
        for uid, pod in self.planner.owned.get(key, {}).items():
            entry = self.planner.ledger.entry(uid)
            if entry is not None and entry.kind != "nominated":
                variant = variant_of(pod)
                counted[variant] = counted.get(variant, 0) + 1
                on_node[entry.node] = on_node.get(entry.node, 0) + 1
        left = {node: max(0, fit - on_node.get(node, 0)) for node, fit in room.fit.items()}
        held: dict[str, dict[str, int]] = {}
        for variant, count in replicas.items():
            outstanding = count - counted.get(variant, 0)
            for node in room.nodes.get(variant, ()):
                if outstanding <= 0:
                    break
                take = min(left.get(node, 0), outstanding)
                if take > 0:
                    left[node] -= take
                    outstanding -= take
                    _add(held.setdefault(node, {}), demand, take)
            if outstanding > 0:
                self._claim_displaced(room.nodes.get(variant, ()), outstanding, demand, held,
                                      wants.priority)  # fmt: skip
        for node, requests in held.items():
            self.claims.count(f"{key[0]}/{key[1]}@{node}", node, requests, "reserved")
        if held:
            self._claimed[key] = dict(held)

    def _claim_displaced(
        self,
        nodes: Collection[str],
        outstanding: int,
        demand: Resources,
        held: dict[str, dict[str, int]],
        priority: int,
    ) -> None:
        """Replicas the plan counted on room that others' claims now cover: the scheduler
        bound another TicketWorker's pod where this one's claim was, and that one's claim
        still holds the node left free. Hold them on nodes free but for claims, so others
        never see that room as theirs (a claim too many is corrected at the next pass; a
        claim too few lets two plans count one node)."""
        allocatable = self.planner.allocatable
        for node in nodes:
            if outstanding <= 0:
                return
            used = dict(self.planner.ledger.used(node, priority))
            _add(used, held.get(node, {}))
            take = min(outstanding, pods_that_fit(allocatable.get(node, {}), used, demand))
            if take > 0:
                outstanding -= take
                _add(held.setdefault(node, {}), demand, take)

    def forget(self, key: tuple[str, str]) -> None:
        """Release the TicketWorker's claims (it is gone, or about to claim again)."""
        for node in self._claimed.pop(key, {}):
            self.claims.release(f"{key[0]}/{key[1]}@{node}")


def _add(total: dict[str, int], more: Resources, times: int = 1) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value * times

"""The room a TicketWorker's replicas see, from the capacity accounting (`isa.capacity`).

The operator plans replicas by free room (`isa.planning.Room`) read from one `Planner`:
the placement controller's own (one pod watch feeds both), or, with `--no-placement`, a
planner of its own fed by a pod watch and never placing anything. A TicketWorker's own
pods are not counted as load on its room: its plan must not chase its own replicas.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from flox_isa.isa.capacity import CPU, Resources, effective_request, pods_that_fit
from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.offer import constraints_key
from flox_isa.isa.planning import Room, room_on
from flox_isa.operator.placement import Planner

ROOMS_KEPT: Final = 64


class Rooms:
    """`room_for` per TicketWorker; the room of every pod counted is kept per template and
    ledger version, and only the nodes of a TicketWorker's own pods are counted again."""

    def __init__(self, planner: Planner, catalog: Catalog) -> None:
        self.planner = planner
        self.catalog = catalog
        self._base: dict[tuple[Any, ...], Room] = {}

    def room_for(
        self,
        key: tuple[str, str],
        pod_spec: Mapping[str, Any],
        workload: Workload,
        allowed: Collection[str] | None,
    ) -> Room:
        planner = self.planner
        ledger, allocatable = planner.ledger, planner.allocatable
        demand = effective_request(pod_spec)
        priority = int(pod_spec.get("priority") or 0)
        cache = (planner.fleet.version, id(ledger), ledger.version, constraints_key(pod_spec),
                 tuple(sorted(demand.items())), priority, workload,
                 tuple(allowed) if allowed is not None else None)  # fmt: skip
        base = self._base.get(cache)
        if base is None:
            if len(self._base) >= ROOMS_KEPT:
                self._base.clear()

            def probe(node: str) -> tuple[int, float]:
                used = ledger.used(node, priority)
                fit = pods_that_fit(allocatable.get(node, {}), used, demand)
                return fit, used.get(CPU, 0) / 1000

            base = self._base[cache] = room_on(
                self.catalog, planner.fleet, pod_spec, workload, allowed, probe
            )
        own = self.own_usage(key)
        if not own:
            return base
        fits, busy_cpu = dict(base.fit), dict(base.busy_cpu)
        for node, requests in own.items():
            if node in fits:
                used = dict(ledger.used(node, priority))
                for name, value in requests.items():
                    used[name] = used.get(name, 0) - value
                fits[node] = pods_that_fit(allocatable.get(node, {}), used, demand)
                busy_cpu[node] = max(0, used.get(CPU, 0)) / 1000
        return Room(fits, busy_cpu, base.nodes, base.best_nodes)

    def own_usage(self, key: tuple[str, str]) -> dict[str, Resources]:
        """Per node, what the TicketWorker's own pods count there (bound or reserved)."""
        usage: dict[str, dict[str, int]] = {}
        for uid in self.planner.owned.get(key, {}):
            entry = self.planner.ledger.entry(uid)
            if entry is None or entry.kind == "nominated":
                continue
            node = usage.setdefault(entry.node, {})
            for name, value in entry.requests.items():
                node[name] = node.get(name, 0) + value
        return dict(usage)

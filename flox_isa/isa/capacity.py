"""Room on nodes: what kube-scheduler's NodeResourcesFit counts, as pure data.

A pod's effective request is the scheduler's (k8s.io/component-helpers/resource
`PodRequests`): the larger of (a) the containers plus every sidecar (an init container
with `restartPolicy: Always`) and (b) for each init container in order, its request
plus the sidecars started before it; pod-level `spec.resources.requests` replace cpu
and memory where set; then `spec.overhead` (the RuntimeClass's) is added. A pod that
requests no cpu (or no memory) counts with the scheduler's non-zero defaults (100m,
200Mi), so BestEffort pods are never free; every pod takes one of `allocatable.pods`.

Units are integers: cpu in millicores, every other resource in its base unit, rounded up.

The `Ledger` holds, per node, what counts there: bound pods that have not finished,
pods nominated to it (preemption) at a priority at least the asker's, and reservations
for pods placed but not yet bound. Fit is per node, never a pool total.
Not modelled (the scheduler may still refuse a node): host ports, required pod
anti-affinity, DoNotSchedule topology spread, volume zones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING
from typing import Any, Final, Literal

from flox_isa.isa.quantity import parse_quantity

CPU: Final = "cpu"
MEMORY: Final = "memory"
PODS: Final = "pods"
DEFAULT_MILLI_CPU: Final = 100
DEFAULT_MEMORY: Final = 200 * 1024 * 1024
POD_LEVEL_RESOURCES: Final = frozenset({CPU, MEMORY})
# A node without the key offers none of that resource; `pods` defaults like the kubelet's.
DEFAULT_MAX_PODS: Final = 110

Resources = Mapping[str, int]
Kind = Literal["bound", "reserved", "nominated"]


def to_units(resource: str, quantity: object) -> int:
    """A quantity in the ledger's integer unit; ValueError if malformed."""
    value = parse_quantity(quantity)
    if resource == CPU:
        value *= 1000
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def resource_list(quantities: Mapping[str, Any] | None) -> dict[str, int]:
    return {name: to_units(name, q) for name, q in (quantities or {}).items()}


def _add(total: dict[str, int], more: Resources) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value


def _at_least(total: dict[str, int], other: Resources) -> None:
    for name, value in other.items():
        if value > total.get(name, 0):
            total[name] = value


def _requests(container: Mapping[str, Any]) -> dict[str, int]:
    return resource_list((container.get("resources") or {}).get("requests"))


def effective_request(pod_spec: Mapping[str, Any]) -> dict[str, int]:
    """What the scheduler reserves on a node for a pod with `pod_spec` (see module doc)."""
    total: dict[str, int] = {}
    for container in pod_spec.get("containers") or ():
        _add(total, _requests(container))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for container in pod_spec.get("initContainers") or ():
        requests = _requests(container)
        if container.get("restartPolicy") == "Always":
            _add(total, requests)
            _add(sidecars, requests)
            _at_least(init_peak, sidecars)
        else:
            step = dict(requests)
            _add(step, sidecars)
            _at_least(init_peak, step)
    _at_least(total, init_peak)
    pod_level = resource_list((pod_spec.get("resources") or {}).get("requests"))
    total.update({k: v for k, v in pod_level.items() if k in POD_LEVEL_RESOURCES})
    _add(total, resource_list(pod_spec.get("overhead")))
    if not total.get(CPU):
        total[CPU] = DEFAULT_MILLI_CPU
    if not total.get(MEMORY):
        total[MEMORY] = DEFAULT_MEMORY
    total[PODS] = 1
    return {k: v for k, v in total.items() if v}


@dataclass(frozen=True, slots=True)
class Demand:
    """What one pod asks of a node: its effective request (sorted) and its priority.

    Hashable (a memo key beside `isa.constraints.Constraints`, which leaves requests
    out); built only where room is computed."""

    requests: tuple[tuple[str, int], ...]
    priority: int = 0

    @property
    def resources(self) -> dict[str, int]:
        return dict(self.requests)


def demand_of(pod_spec: Mapping[str, Any]) -> Demand:
    """The `Demand` of a pod spec given as data; ValueError for a malformed quantity."""
    requests = tuple(sorted(effective_request(pod_spec).items()))
    return Demand(requests, int(pod_spec.get("priority") or 0))


def allocatable_of(status: Mapping[str, Any]) -> dict[str, int]:
    """A Node's `status.allocatable` in ledger units (pods defaulted when absent)."""
    allocatable = resource_list(status.get("allocatable"))
    allocatable.setdefault(PODS, DEFAULT_MAX_PODS)
    return allocatable


@dataclass(frozen=True, slots=True)
class Entry:
    node: str
    requests: Resources
    kind: Kind
    priority: int = 0


class Ledger:
    """What counts on each node, by pod uid; one owner (the placement loop) mutates it."""

    def __init__(self) -> None:
        self.version = 0  # changes with every count and release (readers cache by it)
        self._entries: dict[str, Entry] = {}
        self._used: dict[str, dict[str, int]] = {}  # bound + reserved, per node
        self._nominated: dict[str, dict[str, Entry]] = {}  # node -> uid -> entry

    def __len__(self) -> int:
        return len(self._entries)

    def copy(self) -> Ledger:
        """An independent ledger with the same counts (for what-if planning)."""
        other = Ledger()
        other.version = self.version
        other._entries = dict(self._entries)
        other._used = {node: dict(used) for node, used in self._used.items()}
        other._nominated = {node: dict(pods) for node, pods in self._nominated.items()}
        return other

    def entry(self, uid: str) -> Entry | None:
        return self._entries.get(uid)

    def count(
        self, uid: str, node: str, requests: Resources, kind: Kind = "bound", priority: int = 0
    ) -> None:
        """Count pod `uid` on `node` (replacing whatever it counted before)."""
        self.release(uid)
        self.version += 1
        entry = Entry(node, dict(requests), kind, priority)
        self._entries[uid] = entry
        if kind == "nominated":
            self._nominated.setdefault(node, {})[uid] = entry
        else:
            _add(self._used.setdefault(node, {}), requests)

    def reserve(self, uid: str, node: str, requests: Resources) -> None:
        self.count(uid, node, requests, "reserved")

    def bind(self, uid: str, node: str, requests: Resources) -> None:
        """Count `uid` as bound to `node`.

        The scheduler may bind a pod elsewhere than where its room was reserved: it took
        room on `node` that another pod's reservation holds, and left its own reserved
        room free. That other reservation moves into the room left (equal requests
        first), so each node's count stays what the scheduler can still bind there.
        """
        before = self._entries.get(uid)
        self.count(uid, node, requests)
        if before is None or before.kind != "reserved" or before.node == node:
            return
        displaced = self._reserved_on_node(node)
        if not displaced:
            return
        same = [u for u, e in displaced if dict(e.requests) == dict(before.requests)]
        moved = same[0] if same else displaced[0][0]
        self.reserve(moved, before.node, self._entries[moved].requests)

    def release(self, uid: str) -> bool:
        """Stop counting `uid`; False if it was not counted (a release happens once)."""
        entry = self._entries.pop(uid, None)
        if entry is None:
            return False
        self.version += 1
        if entry.kind == "nominated":
            nominated = self._nominated[entry.node]
            del nominated[uid]
            if not nominated:
                del self._nominated[entry.node]
            return True
        used = self._used[entry.node]
        for name, value in entry.requests.items():
            used[name] -= value
            if not used[name]:
                del used[name]
        if not used:
            del self._used[entry.node]
        return True

    def used(self, node: str, priority: int = 0) -> dict[str, int]:
        """What counts on `node` for a pod of `priority`."""
        total = dict(self._used.get(node, {}))
        for entry in (self._nominated.get(node) or {}).values():
            if entry.priority >= priority:
                _add(total, entry.requests)
        return total

    def fits(self, node: str, allocatable: Resources, demand: Resources, priority: int = 0) -> int:
        """How many more pods of `demand` fit on `node`."""
        return pods_that_fit(allocatable, self.used(node, priority), demand)

    def reservations(self) -> Iterable[tuple[str, Entry]]:
        return ((uid, e) for uid, e in self._entries.items() if e.kind == "reserved")

    def _reserved_on_node(self, node: str) -> list[tuple[str, Entry]]:
        return [(u, e) for u, e in self.reservations() if e.node == node]


def pods_that_fit(allocatable: Resources, used: Resources, demand: Resources) -> int:
    """How many pods of `demand` fit in `allocatable - used` (each resource on its own)."""
    room: int | None = None
    for name, need in demand.items():
        if need <= 0:
            continue
        free = allocatable.get(name, 0) - used.get(name, 0)
        count = max(0, free // need)
        room = count if room is None else min(room, count)
    return room if room is not None else 0

"""Which variants the nodes a pod could run on offer: an index whose cost does not grow per node.

A fleet has thousands of nodes but few kinds of node. Nodes are grouped by
everything that decides eligibility and CPU features (labels, readiness,
schedulability, taints) except the labels that are unique per node (such as
`kubernetes.io/hostname`), so a decision looks at each distinct group once.
Only a pod that names a per-node label (or a `matchFields` term, which matches
node names) is checked node by node inside the groups: that stays correct.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from flox_isa.isa.catalog import Catalog, Variant
from flox_isa.isa.features import Features
from flox_isa.isa.fleet import NodeInfo
from flox_isa.isa.scheduling import NodeState, Taint, eligible
from flox_isa.isa.selection import fits

# Labels that differ on every node by design. A label whose value is the node's own
# name is treated as per-node too (cloud providers add instance-id style labels).
PER_NODE_LABEL_KEYS: Final = frozenset({"kubernetes.io/hostname"})
# Distinct pod constraints remembered per index (Deployments make identical pods).
MEMO_SIZE: Final = 1024

PodSpec = Mapping[str, Any]
GroupKey = tuple[frozenset[tuple[str, str]], bool, bool, tuple[Taint, ...]]


@dataclass(frozen=True, slots=True)
class NodeMember:
    """One node of a group: its name and its per-node labels."""

    name: str
    labels: Mapping[str, str]
    allocatable_cpu: float = 0.0
    allocatable: tuple[tuple[str, int], ...] = ()  # capacity units, see `isa.capacity`


@dataclass(frozen=True, slots=True)
class NodeGroup:
    """Nodes that look the same to the scheduler and have the same CPU features."""

    labels: Mapping[str, str]  # shared by every member
    features: Features
    ready: bool
    unschedulable: bool
    taints: tuple[Taint, ...]
    members: tuple[NodeMember, ...]

    @property
    def representative(self) -> NodeState:
        """The group as one node (no name, shared labels only)."""
        return NodeState(
            info=NodeInfo(name="", features=self.features),
            labels=self.labels,
            ready=self.ready,
            unschedulable=self.unschedulable,
            taints=self.taints,
        )

    def member_state(self, member: NodeMember) -> NodeState:
        return NodeState(
            info=NodeInfo(name=member.name, features=self.features),
            labels={**self.labels, **member.labels},
            ready=self.ready,
            unschedulable=self.unschedulable,
            taints=self.taints,
        )


@dataclass(frozen=True, slots=True)
class FleetIndex:
    """An immutable view of the fleet, grouped; `version` changes whenever it does."""

    groups: tuple[NodeGroup, ...] = ()
    per_node_keys: frozenset[str] = PER_NODE_LABEL_KEYS
    version: int = 0

    @property
    def node_count(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def features_of(self, name: str) -> Features | None:
        """The CPU features of node `name`; None when the fleet has no such node."""
        for group in self.groups:
            if any(member.name == name for member in group.members):
                return group.features
        return None


def split_labels(name: str, labels: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(shared, per-node) labels of one node."""
    shared: dict[str, str] = {}
    own: dict[str, str] = {}
    for key, value in labels.items():
        target = own if key in PER_NODE_LABEL_KEYS or (name and value == name) else shared
        target[key] = value
    return shared, own


class FleetIndexBuilder:
    """Keeps the grouped fleet up to date node by node; `index()` is a cheap snapshot.

    Not thread-safe: one writer (the node watch) owns it and publishes `index()`.
    Look-alike nodes share one group key object (interned): a key holds every shared
    label, and one per node would cost ~4 KB per node.
    """

    def __init__(self, version: int = 0) -> None:
        self._version = version  # a replacement builder continues its predecessor's count
        self._index = FleetIndex()
        self._clear()

    def _clear(self) -> None:
        self._nodes: dict[str, tuple[GroupKey, NodeMember]] = {}
        self._keys: dict[GroupKey, GroupKey] = {}  # each live key -> its one shared object
        self._members: dict[GroupKey, dict[str, NodeMember]] = {}
        self._features: dict[GroupKey, Features] = {}
        self._built: dict[GroupKey, NodeGroup] = {}
        self._per_node_keys: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def version(self) -> int:
        return self._version

    def replace(self, states: Iterable[NodeState]) -> None:
        """Forget every node, then add `states` (a full list after a (re)list)."""
        self._clear()
        for state in states:
            self._add(state)
        self._version += 1

    def upsert(self, state: NodeState) -> bool:
        """Add or update a node; False when nothing a decision reads changed."""
        key, member = _key_and_member(state)
        if self._nodes.get(state.name) == (key, member):
            return False
        self._remove(state.name)
        self._add(state)
        self._version += 1
        return True

    def remove(self, name: str) -> bool:
        if name not in self._nodes:
            return False
        self._remove(name)
        self._version += 1
        return True

    def index(self) -> FleetIndex:
        if self._index.version != self._version:
            groups = tuple(self._group(key) for key in self._members)
            keys = frozenset(self._per_node_keys) | PER_NODE_LABEL_KEYS
            self._index = FleetIndex(groups, keys, self._version)
        return self._index

    def _group(self, key: GroupKey) -> NodeGroup:
        if key not in self._built:
            labels, ready, unschedulable, taints = key
            members = tuple(self._members[key].values())
            self._built[key] = NodeGroup(
                dict(labels), self._features[key], ready, unschedulable, taints, members
            )
        return self._built[key]

    def _add(self, state: NodeState) -> None:
        key, member = _key_and_member(state)
        key = self._keys.setdefault(key, key)
        self._nodes[state.name] = (key, member)
        self._members.setdefault(key, {})[state.name] = member
        self._features[key] = state.info.features
        self._built.pop(key, None)
        for label in member.labels:
            self._per_node_keys[label] = self._per_node_keys.get(label, 0) + 1

    def _remove(self, name: str) -> None:
        entry = self._nodes.pop(name, None)
        if entry is None:
            return
        key, member = entry
        self._built.pop(key, None)
        group = self._members[key]
        del group[name]
        if not group:
            del self._members[key], self._features[key], self._keys[key]
        for label in member.labels:
            self._per_node_keys[label] -= 1
            if not self._per_node_keys[label]:
                del self._per_node_keys[label]


def _key_and_member(state: NodeState) -> tuple[GroupKey, NodeMember]:
    shared, own = split_labels(state.name, state.labels)
    key = (frozenset(shared.items()), state.ready, state.unschedulable, state.taints)
    return key, NodeMember(state.name, own, state.info.allocatable_cpu, state.info.allocatable)


def index_nodes(states: Iterable[NodeState]) -> FleetIndex:
    """A FleetIndex of a fixed list of nodes (files, tests)."""
    builder = FleetIndexBuilder()
    builder.replace(states)
    return builder.index()


def names_per_node_label(pod_spec: PodSpec, per_node_keys: frozenset[str]) -> bool:
    """Does the pod's placement depend on something unique per node?"""
    if per_node_keys.intersection(pod_spec.get("nodeSelector") or {}):
        return True
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        if term.get("matchFields"):
            return True
        if any(e.get("key") in per_node_keys for e in term.get("matchExpressions") or []):
            return True
    return False


def eligible_members(group: NodeGroup, pod_spec: PodSpec, per_node: bool) -> tuple[NodeMember, ...]:
    """The group's nodes the pod could be scheduled on (the group's own tuple when all)."""
    if not per_node:
        return group.members if eligible(group.representative, pod_spec) else ()
    return tuple(m for m in group.members if eligible(group.member_state(m), pod_spec))


@dataclass(frozen=True, slots=True)
class Offer:
    """For one pod: how many eligible nodes there are, and which of them run each variant.

    `members_by_variant` holds, per variant, the eligible nodes whose CPU runs it, as
    one tuple per node group (shared with the index, not copied): capacity-aware
    placement looks for room on exactly these nodes.
    """

    eligible_nodes: int
    nodes_by_variant: Mapping[str, int]
    members_by_variant: Mapping[str, tuple[tuple[NodeMember, ...], ...]] = field(
        default_factory=dict
    )

    def offers(self, variant: Variant) -> int:
        return self.nodes_by_variant.get(variant.name, 0)

    def nodes(self, variant: Variant) -> Iterator[NodeMember]:
        """The eligible nodes that run `variant`."""
        for members in self.members_by_variant.get(variant.name, ()):
            yield from members


@dataclass(slots=True)
class OfferIndex:
    """A FleetIndex with the catalog's fits precomputed per distinct feature set.

    `offer()` answers per pod in time proportional to the number of groups, and
    remembers answers per distinct pod constraints until the fleet changes.
    """

    fleet: FleetIndex
    catalog: Catalog
    _fits: tuple[tuple[str, ...], ...] = field(init=False)
    _memo: dict[Hashable, Offer] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        by_features: dict[Features, tuple[str, ...]] = {}
        for group in self.fleet.groups:
            if group.features not in by_features:
                by_features[group.features] = tuple(
                    v.name for v in self.catalog.variants if fits(v, group.features)
                )
        self._fits = tuple(by_features[g.features] for g in self.fleet.groups)

    def offer(self, pod_spec: PodSpec) -> Offer:
        return self.offer_keyed(constraints_key(pod_spec), lambda: pod_spec)

    def offer_keyed(self, key: Hashable, pod_spec: Callable[[], PodSpec]) -> Offer:
        """`offer` under the caller's own key for the pod's constraints (equal keys must
        mean equal constraints); the spec is built only when the key is new."""
        cached = self._memo.get(key)
        if cached is None:
            cached = self._compute(pod_spec())
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = cached
        return cached

    def _compute(self, pod_spec: PodSpec) -> Offer:
        per_node = names_per_node_label(pod_spec, self.fleet.per_node_keys)
        total = 0
        by_variant: dict[str, int] = {}
        members_by_variant: dict[str, list[tuple[NodeMember, ...]]] = {}
        for group, variant_names in zip(self.fleet.groups, self._fits, strict=True):
            members = eligible_members(group, pod_spec, per_node)
            total += len(members)
            if members:
                for name in variant_names:
                    by_variant[name] = by_variant.get(name, 0) + len(members)
                    members_by_variant.setdefault(name, []).append(members)
        return Offer(total, by_variant, {k: tuple(v) for k, v in members_by_variant.items()})


def constraints_key(pod_spec: PodSpec) -> str:
    """The parts of a pod spec eligibility depends on, as one canonical string."""
    parts: Sequence[object] = (
        pod_spec.get("nodeSelector") or {},
        ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {},
        pod_spec.get("tolerations") or [],
    )
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))

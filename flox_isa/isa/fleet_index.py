"""The fleet index: nodes grouped by look-alikes, and the one eligibility query on it.

A fleet has thousands of nodes but few kinds of node. Nodes are grouped by
everything that decides eligibility and CPU features (labels, readiness,
schedulability, taints) except the labels that are unique per node (such as
`kubernetes.io/hostname`), so a query looks at each distinct group once.
Only a pod that names a per-node label (or a `matchFields` term, which matches
node names) is checked node by node inside the groups: that stays correct.

`FleetIndex.eligible(constraints)` is the one eligibility query: the nodes a pod with
those constraints could be scheduled on. It is remembered on the index, per distinct
constraints; an index never changes (each fleet version is a new one), so the memo
lives and dies with its version. What is derived from an answer is kept with it: the
operator's feature groups (`Eligible.feature_groups`), the webhook's offer
(`isa.offer`), the room (`isa.planning.room_on`) reads the members.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar, cast

from flox_isa.isa.constraints import Constraints
from flox_isa.isa.features import Features
from flox_isa.isa.fleet import FeatureGroup, NodeInfo, aggregate
from flox_isa.isa.scheduling import NodeState, Taint, eligible

# Labels that differ on every node by design. A label whose value is the node's own
# name is treated as per-node too (cloud providers add instance-id style labels).
PER_NODE_LABEL_KEYS: Final = frozenset({"kubernetes.io/hostname"})
# Distinct pod constraints remembered per index (Deployments make identical pods).
MEMO_SIZE: Final = 1024

T = TypeVar("T")
_MISSING: Final = object()
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
class Eligible:
    """The answer to one eligibility query: per group with eligible nodes (in the index's
    order), those nodes (the group's own tuple when all are). What is derived from it is
    computed once and kept with it (`view`)."""

    groups: tuple[tuple[NodeGroup, tuple[NodeMember, ...]], ...] = ()
    _views: dict[Hashable, object] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def node_count(self) -> int:
        return sum(len(members) for _, members in self.groups)

    def view(self, key: Hashable, compute: Callable[[Eligible], T]) -> T:
        """`compute(self)`, remembered under `key` (one key, one kind of view)."""
        found = self._views.get(key, _MISSING)
        if found is _MISSING:
            found = self._views[key] = compute(self)
        return cast(T, found)

    def feature_groups(self) -> tuple[FeatureGroup, ...]:
        """The eligible nodes aggregated by CPU feature set (what replica planning reads)."""
        return self.view(FeatureGroup, _feature_groups)


def _feature_groups(eligible: Eligible) -> tuple[FeatureGroup, ...]:
    return aggregate(
        (group.features, len(members), sum(m.allocatable_cpu for m in members))
        for group, members in eligible.groups
    )


@dataclass(frozen=True, slots=True)
class FleetIndex:
    """An immutable view of the fleet, grouped; `version` changes whenever it does (a
    new index), and the index remembers its eligibility answers (`eligible`)."""

    groups: tuple[NodeGroup, ...] = ()
    per_node_keys: frozenset[str] = PER_NODE_LABEL_KEYS
    version: int = 0
    _eligible: dict[Constraints, Eligible] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def node_count(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def eligible(self, constraints: Constraints) -> Eligible:
        """The nodes a pod with `constraints` could be scheduled on (resources aside),
        remembered per distinct constraints for this fleet version."""
        memo = self._eligible
        found = memo.get(constraints)
        if found is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            found = memo[constraints] = _query(self, constraints)
        return found

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


def names_per_node_label(constraints: Constraints, per_node_keys: frozenset[str]) -> bool:
    """Does the pod's placement depend on something unique per node?"""
    if any(key in per_node_keys for key, _ in constraints.node_selector):
        return True
    for term in constraints.required_terms:
        if term.match_fields:
            return True
        if any(e.key in per_node_keys for e in term.match_expressions):
            return True
    return False


def eligible_members(
    group: NodeGroup, constraints: Constraints, per_node: bool
) -> tuple[NodeMember, ...]:
    """The group's nodes the pod could be scheduled on (the group's own tuple when all)."""
    if not per_node:
        return group.members if eligible(group.representative, constraints) else ()
    return tuple(m for m in group.members if eligible(group.member_state(m), constraints))


def _query(fleet: FleetIndex, constraints: Constraints) -> Eligible:
    per_node = names_per_node_label(constraints, fleet.per_node_keys)
    found = []
    for group in fleet.groups:
        members = eligible_members(group, constraints, per_node)
        if members:
            found.append((group, members))
    return Eligible(tuple(found))

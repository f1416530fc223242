"""What the nodes a pod could run on offer: per variant, the eligible nodes that run it.

Derived from the fleet index's one eligibility query (`isa.fleet_index`): the offer
for some constraints is computed once per fleet version and kept with the query's
answer, so it is forgotten exactly when the fleet changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from flox_isa.isa.catalog import Catalog, Variant
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.features import Features
from flox_isa.isa.fleet_index import Eligible, FleetIndex, NodeMember
from flox_isa.isa.selection import fits


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


@dataclass(slots=True, eq=False)
class OfferIndex:
    """A FleetIndex with the catalog's fits precomputed per distinct feature set.

    `offer()` answers per pod in time proportional to the number of groups, once per
    distinct constraints and fleet version (kept with `FleetIndex.eligible`'s answer).
    """

    fleet: FleetIndex
    catalog: Catalog
    _fits: dict[Features, tuple[str, ...]] = field(init=False, default_factory=dict)
    _view: tuple[str, int] = field(init=False, default=("", 0))

    def __post_init__(self) -> None:
        self._view = ("offer", id(self.catalog))  # the offer is a view per catalog
        for group in self.fleet.groups:
            if group.features not in self._fits:
                self._fits[group.features] = tuple(
                    v.name for v in self.catalog.variants if fits(v, group.features)
                )

    def offer(self, constraints: Constraints) -> Offer:
        """What the nodes a pod with `constraints` could be scheduled on offer."""
        eligible = self.fleet.eligible(constraints)
        catalog, found = eligible.view(self._view, self._with_catalog)
        if catalog is not self.catalog:  # another catalog once had this id: not ours
            return self._compute(eligible)
        return found

    def _with_catalog(self, eligible: Eligible) -> tuple[Catalog, Offer]:
        return self.catalog, self._compute(eligible)

    def _compute(self, eligible: Eligible) -> Offer:
        total = 0
        by_variant: dict[str, int] = {}
        members_by_variant: dict[str, list[tuple[NodeMember, ...]]] = {}
        for group, members in eligible.groups:
            total += len(members)
            for name in self._fits[group.features]:
                by_variant[name] = by_variant.get(name, 0) + len(members)
                members_by_variant.setdefault(name, []).append(members)
        return Offer(total, by_variant, {k: tuple(v) for k, v in members_by_variant.items()})

"""Late binding: the best allowed variant *with room*, chosen just before scheduling.

The webhook gates a pod at admission; the placement controller then calls `place`
with what the pod may run (its allowed variants, ranked for its workload, that some
eligible node offers) and a `room` probe (which eligible node of a variant has room
for one more such pod, from `isa.capacity`). Pure: the caller owns the state.

When the best variant has no room:
- `next-best` (default): the next variant in rank order that has room ("spill");
- `wait`: the best *growable* variant, with no room: the pod turns Unschedulable, which
  is what cluster-autoscaler and Karpenter act on (they ignore gated pods).
When no variant has room, both pin the best growable variant ("full").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from flox_isa.isa import names
from flox_isa.isa.catalog import Variant, Workload
from flox_isa.isa.contract import environment_annotations, required_labels
from flox_isa.isa.inputs import InvalidInputError
from flox_isa.isa.offer import Offer
from flox_isa.isa.selection import rank_key
from flox_isa.isa.threads import carried_note, with_note

WhenFull = Literal["next-best", "wait"]
WHEN_FULL: Final[tuple[WhenFull, ...]] = get_args(WhenFull)
DEFAULT_WHEN_FULL: Final[WhenFull] = "next-best"
Reason = Literal["room", "spill", "wait", "full", "timeout"]
# pod-deletion-cost steps per rank: the best variant's pods are removed last on scale-down.
DELETION_COST_STEP: Final = 100


class WhenFullError(InvalidInputError):
    """An `isa.flox.dev/when-full` value flox-isa does not know."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one pod goes: the variant, the node whose room it takes (None: no room)."""

    variant: Variant
    node: str | None
    reason: Reason
    spilled_from: tuple[str, ...] = ()
    rank: int = 0  # position of `variant` among the ranked candidates

    @property
    def deletion_cost(self) -> int:
        """`controller.kubernetes.io/pod-deletion-cost`: lower ranks go first."""
        return -DELETION_COST_STEP * self.rank

    def message(self, workload: Workload) -> str:
        """The `isa.flox.dev/reason` text written with the ungate."""
        score = f"{self.variant.score(workload):g}"
        head = f"placement: {workload}: {self.variant.name} {score}"
        if self.reason == "room":
            return f"{head}, the best allowed variant; room on {self.node}"
        full = ", ".join(self.spilled_from)
        if self.reason == "spill":
            return f"{head}: spilled, no room on the nodes of {full}; room on {self.node}"
        if self.reason == "wait":
            return (
                f"{head}: no room, {names.WHEN_FULL_ANNOTATION}=wait: Unschedulable until"
                " the pool grows or room frees up"
            )
        if self.reason == "timeout":
            return f"{head}: gated longer than the maximum gate age; placed as admission would"
        return f"{head}: no allowed variant has room anywhere; pinned the best growable one"


def parse_when_full(text: str | None, default: WhenFull = DEFAULT_WHEN_FULL) -> WhenFull:
    if text is None:
        return default
    for value in WHEN_FULL:
        if text.strip() == value:
            return value
    raise WhenFullError(
        f"annotation {names.WHEN_FULL_ANNOTATION}: unknown value {text!r};"
        f" allowed: {', '.join(WHEN_FULL)} (default {default})"
    )


def ranked_candidates(
    allowed: Sequence[Variant], offer: Offer, workload: Workload
) -> list[Variant]:
    """The allowed variants some eligible node offers, best first."""
    return sorted((v for v in allowed if offer.offers(v)), key=lambda v: rank_key(v, workload))


RoomProbe = Callable[[Variant], str | None]


def place(
    ranked: Sequence[Variant],
    room: RoomProbe,
    when_full: WhenFull = DEFAULT_WHEN_FULL,
    growable: Collection[str] | None = None,
) -> Placement:
    """The variant for one gated pod (see the module doc); `ranked` is not empty."""
    if not ranked:
        raise ValueError("place() needs at least one candidate variant")
    tried: list[str] = []
    for rank, variant in enumerate(ranked):
        node = room(variant)
        if node is not None:
            reason: Reason = "room" if rank == 0 else "spill"
            return Placement(variant, node, reason, tuple(tried), rank)
        tried.append(variant.name)
        if when_full == "wait":
            break
    rank, variant = best_growable(ranked, growable)
    return Placement(variant, None, "wait" if when_full == "wait" else "full", tuple(tried), rank)


def best_growable(
    ranked: Sequence[Variant], growable: Collection[str] | None
) -> tuple[int, Variant]:
    """The best variant whose pool an autoscaler can grow (the best when none is listed)."""
    for rank, variant in enumerate(ranked):
        if growable is None or variant.name in growable:
            return rank, variant
    return 0, ranked[0]


def as_admission(ranked: Sequence[Variant]) -> Placement:
    """What admission pins without late binding: the best offered variant, room unseen."""
    return Placement(ranked[0], None, "timeout", (), 0)


def ungated(
    pod: Mapping[str, Any],
    placement: Placement,
    environment: str,
    workload: Workload,
    generations: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The pod's update: pinned to the placement's variant, our gate removed (one write).

    Only what a gated pod may change: nodeSelector entries added (never changed),
    labels and annotations; other gates are kept. Never affinity. The resourceVersion
    read stays in the body: the API server refuses the update if the pod changed since.
    """
    variant = placement.variant
    metadata = dict(pod.get("metadata") or {})
    spec = dict(pod.get("spec") or {})
    gates = [g for g in spec.get("schedulingGates") or () if g.get("name") != names.PLACEMENT_GATE]
    if gates:
        spec["schedulingGates"] = gates
    else:
        spec.pop("schedulingGates", None)
    selector = dict(spec.get("nodeSelector") or {})
    needed = required_labels(variant)
    added = sorted(key for key in needed if key not in selector)
    selector.update({key: needed[key] for key in added})
    spec["nodeSelector"] = selector
    metadata["labels"] = {**(metadata.get("labels") or {}), names.VARIANT_LABEL: variant.name}
    annotations = {
        **(metadata.get("annotations") or {}),
        **environment_annotations(environment, variant, generations),
        names.REASON_ANNOTATION: with_note(placement.message(workload), carried_note(metadata)),
        names.POD_DELETION_COST_ANNOTATION: str(placement.deletion_cost),
        names.ADDED_SELECTOR_ANNOTATION: ",".join(added),
    }
    if placement.spilled_from:
        annotations[names.SPILLED_FROM_ANNOTATION] = ",".join(placement.spilled_from)
    metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def placement_gates(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of a pod's scheduling gates."""
    return tuple(str(g.get("name")) for g in (pod.get("spec") or {}).get("schedulingGates") or ())

"""Recovery: a placed pod the scheduler cannot bind is recreated elsewhere (opt-in).

Room is modelled from requests alone (`isa.capacity`): host ports, required
anti-affinity, DoNotSchedule topology spread and volume zones are not, and a pod not
opted in may take room first. A pod the placement controller placed that stays
Unschedulable longer than a bound, while another allowed variant has room, is deleted
so its controller recreates it; the new pod is placed with the variant that failed
skipped for its owner. Only pods a ReplicaSet or StatefulSet recreates qualify: never
bare pods or Job pods, and never `when-full: wait` pods (they wait for an autoscaler
on purpose). Pure: the placement controller owns the state and the deletes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from flox_isa.isa import names
from flox_isa.isa.placement import WhenFull, parse_when_full

RECREATING_OWNERS: Final = frozenset({"ReplicaSet", "StatefulSet"})


def unschedulable_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """PodScheduled=False with reason Unschedulable: the scheduler tried and found no node."""
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return condition  # type: ignore[no-any-return]
    return None


def unschedulable_seconds(pod: Mapping[str, Any], now: dt.datetime) -> float | None:
    """How long the pod has been Unschedulable (None: it is not)."""
    condition = unschedulable_condition(pod)
    if condition is None:
        return None
    since = condition.get("lastTransitionTime")
    if not since:
        return 0.0
    started = dt.datetime.fromisoformat(str(since).replace("Z", "+00:00"))
    return max(0.0, (now - started).total_seconds())


def recreating_owner(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod's controller if it is one that recreates a deleted pod."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref if ref.get("kind") in RECREATING_OWNERS else None
    return None


def added_selector_keys(pod: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The nodeSelector keys the placement controller added (None: it did not place it)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(names.ADDED_SELECTOR_ANNOTATION)
    if text is None:
        return None
    return tuple(key for key in str(text).split(",") if key)


def base_spec(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's spec as its controller's template made it: our selector entries removed."""
    spec = dict(pod.get("spec") or {})
    added = added_selector_keys(pod) or ()
    selector = {k: v for k, v in (spec.get("nodeSelector") or {}).items() if k not in added}
    if selector:
        spec["nodeSelector"] = selector
    else:
        spec.pop("nodeSelector", None)
    return spec


def recoverable(
    pod: Mapping[str, Any], now: dt.datetime, after: float, default_when_full: WhenFull
) -> bool:
    """Placed by us, recreated by its owner, unbound and Unschedulable for over `after` s."""
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
        return False
    if added_selector_keys(pod) is None or recreating_owner(pod) is None:
        return False
    annotations = metadata.get("annotations") or {}
    try:
        when_full = parse_when_full(annotations.get(names.WHEN_FULL_ANNOTATION), default_when_full)
    except ValueError:
        return False
    if when_full == "wait":
        return False
    seconds = unschedulable_seconds(pod, now)
    return seconds is not None and seconds > after

"""Desired vs. actual Deployments -> the writes that close the gap: pure.

Comparison is semantic, with server-side-apply semantics: every field we
render must be present with our value in the live object; fields the API
server defaulted or someone else added are not ours and do not count.
Lists of named items (containers, env, volumes, ownerReferences) match by
name/uid, other lists compare whole. So an unchanged world yields no action,
while `kubectl edit`/`scale` of a field we own, or a deletion, does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from flox_isa.isa import names
from flox_isa.isa.quantity import quantity_or_none
from flox_isa.operator.render import Owner


@dataclass(frozen=True, slots=True)
class Create:
    name: str
    variant: str
    body: Mapping[str, Any]

    @property
    def replicas(self) -> int:
        return int(self.body["spec"]["replicas"])


@dataclass(frozen=True, slots=True)
class Update:
    """Re-apply `body`; `changed` are the paths that differ (for logs and events)."""

    name: str
    variant: str
    body: Mapping[str, Any]
    changed: tuple[str, ...]
    replicas_before: int | None

    @property
    def replicas(self) -> int:
        return int(self.body["spec"]["replicas"])

    @property
    def is_scale(self) -> bool:
        return self.changed == ("spec.replicas",)


@dataclass(frozen=True, slots=True)
class Delete:
    name: str
    variant: str
    uid: str


Action = Create | Update | Delete


# apiVersion and kind are in every request, not in what a watch cache keeps.
COMPARED: Final = ("metadata", "spec")


def owned_by(deployment: Mapping[str, Any], owner: Owner) -> bool:
    refs = (deployment.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid and ref.get("controller") for ref in refs)


def terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def diff(
    owner: Owner,
    desired: Mapping[str, Mapping[str, Any]],
    actual: Mapping[str, Mapping[str, Any]],
) -> tuple[Action, ...]:
    """Creates and updates in desired order, then deletes of owned leftovers by name.

    A Deployment being deleted is left alone: its DELETED event brings us back.
    Leftovers owned by another (older) TicketWorker of the same name are the
    garbage collector's job, not ours.
    """
    actions: list[Action] = []
    for name, body in desired.items():
        variant = variant_label(body)
        live = actual.get(name)
        if live is None:
            actions.append(Create(name, variant, body))
        elif not terminating(live):
            changed = tuple(drift({k: body[k] for k in COMPARED if k in body}, live))
            if changed:
                replicas = (live.get("spec") or {}).get("replicas")
                actions.append(Update(name, variant, body, changed, replicas))
    for name in sorted(set(actual) - set(desired)):
        live = actual[name]
        if owned_by(live, owner) and not terminating(live):
            actions.append(Delete(name, variant_label(live), live["metadata"].get("uid", "")))
    return tuple(actions)


def drift(desired: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where `actual` does not carry `desired` (empty: no drift)."""
    if _empty(desired) and _empty(actual):
        return []
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return [path]
        return [
            p
            for key, value in desired.items()
            for p in drift(value, actual.get(key), _join(path, key))
        ]
    if isinstance(desired, list):
        if not isinstance(actual, list):
            return [path]
        return _list_drift(desired, actual, path)
    if desired == actual or _same_quantity(path, desired, actual):
        return []
    return [path]


_KEYS: Final = ("name", "uid")


def _list_drift(desired: Sequence[Any], actual: Sequence[Any], path: str) -> list[str]:
    key = _list_key(desired)
    if key is None:
        if len(desired) != len(actual):
            return [path]
        return [
            p
            for i, (d, a) in enumerate(zip(desired, actual, strict=True))
            for p in drift(d, a, f"{path}[{i}]")
        ]
    live = {item.get(key): item for item in actual if isinstance(item, Mapping)}
    return [p for item in desired for p in drift(item, live.get(item[key]), f"{path}[{item[key]}]")]


def _list_key(items: Sequence[Any]) -> str | None:
    """`name` or `uid` if every item has a distinct one (a map-list under apply)."""
    for key in _KEYS:
        values = [i.get(key) for i in items if isinstance(i, Mapping)]
        if (
            items
            and len(values) == len(items)
            and None not in values
            and len(set(values)) == len(values)
        ):
            return key
    return None


def _empty(value: Any) -> bool:
    """Go's omitempty: the API server drops empty and zero values, we treat them as absent."""
    return (
        value is None
        or value in ({}, [], "", False)
        or (value == 0 and not isinstance(value, float))
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _same_quantity(path: str, desired: Any, actual: Any) -> bool:
    """Resource quantities come back canonical ("1000m" -> "1"): compare their values."""
    if ".resources." not in f".{path}" or not isinstance(actual, str | int | float):
        return False
    a, b = quantity_or_none(desired), quantity_or_none(actual)
    return a is not None and a == b


def variant_label(body: Mapping[str, Any]) -> str:
    return str(((body.get("metadata") or {}).get("labels") or {}).get(names.VARIANT_LABEL, ""))


def describe(action: Action, plan_summary: str) -> tuple[str, str]:
    """The Event reason and message for an action."""
    if isinstance(action, Create):
        return "Created", (
            f"created Deployment {action.name} for variant {action.variant}"
            f" with {action.replicas} replica{'' if action.replicas == 1 else 's'}"
        )
    if isinstance(action, Delete):
        return "Deleted", (
            f"deleted Deployment {action.name}: variant {action.variant} is no longer planned"
            f" (plan: {plan_summary})"
        )
    if action.is_scale:
        return "Scaled", (
            f"scaled Deployment {action.name} from {action.replicas_before} to {action.replicas}"
        )
    shown = ", ".join(action.changed[:3]) + (", ..." if len(action.changed) > 3 else "")
    return "Updated", f"updated Deployment {action.name}: {shown} differed from the spec"

"""`flox-isa ungate --all`: release every pod gated by flox-isa (uninstall, emergencies).

Lists the Nodes and every Pod once, then places each pod carrying our gate as the
placement controller would (the best allowed variant with room), removing only our
gate (others stay theirs), with the same conditional write. A pod no eligible node
offers a variant for is pinned to the widest fit, as admission pins it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog
from flox_isa.isa.placement import placement_gates
from flox_isa.kube.inventory import NodeInventory
from flox_isa.kube.rest import Rest, load_connection
from flox_isa.kube.watch import list_all
from flox_isa.operator.placement import PlacementController, PlacementSettings, uid_of


@dataclass
class Released:
    placed: list[dict[str, str]] = field(default_factory=list)
    left: list[dict[str, str]] = field(default_factory=list)  # could not be placed


async def release(kubeconfig: str | None, catalog: Catalog, *, dry_run: bool) -> Released:
    async with Rest(load_connection(kubeconfig)) as api:
        settings = PlacementSettings(catalog, "", "flox-isa-ungate", release_all=True)
        placement = PlacementController(settings, api)
        inventory = NodeInventory(placement.fleet_changed)  # skips bad nodes as the watch does
        inventory.replace((await list_all(api, "/api/v1/nodes"))[0])
        pods, _ = await list_all(api, "/api/v1/pods")
        placement.replace_pods(pods)
        chosen = placement.plan_batch()
        result = Released()
        if not dry_run:
            limit = asyncio.Semaphore(settings.write_concurrency)
            done = await asyncio.gather(*(placement.write(c, limit) for c in chosen))
        else:
            done = [True] * len(chosen)
        placed = {uid_of(c.pod) for c, ok in zip(chosen, done, strict=True) if ok}
        for c in chosen:
            if uid_of(c.pod) in placed:
                result.placed.append(_row(c.pod, c.placement.variant.name, c.placement.reason))
        for pod in pods:
            if names.PLACEMENT_GATE in placement_gates(pod) and uid_of(pod) not in placed:
                result.left.append(_row(pod, "", "not placed: see the operator log"))
        return result


def _row(pod: Mapping[str, Any], variant: str, reason: str) -> dict[str, str]:
    metadata = pod.get("metadata") or {}
    return {
        "namespace": str(metadata.get("namespace")),
        "pod": str(metadata.get("name")),
        "variant": variant,
        "reason": reason,
    }

"""Placement controller hot path (not a test): one batch of choices, without a cluster.

    python bench/placement_batch.py [--nodes 5000] [--other-pods 10000] [--replicas 1000]

The controller's state as in `bench/placement.py` at the issue's scale: half the nodes
m6i.2xlarge (AVX512VNNI), half m4.2xlarge (AVX2 only), `--other-pods` one-CPU pods bound
to the VNNI nodes. Then, side by side in one run:

- place:  `plan_batch` for `--replicas` gated int8 pods of one ReplicaSet, the VNNI
          pool with room for all (what every pass costs while a burst arrives);
- held:   a pass while those pods are held back (their spills wait for reserved room
          to bind, see `plan_batch`): replicas of one template (one choice per template)
          vs the same pods each of its own (one choice per pod): the ratio is what the
          per-template memo saves on every wake;
- ingest: the watch events of the other pods (`pod_changed`), per pod.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flox_isa.devcluster import fleet as fleets
from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.nodes import node_state
from flox_isa.kube.rest import Connection, Rest
from flox_isa.operator.placement import PlacementController, PlacementSettings

PER_NODE = 7  # one-CPU pods on an m6i.2xlarge / m4.2xlarge (7910m)
OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w", "uid": "rs-1",
         "controller": True}  # fmt: skip


def node_list(count: int) -> list[dict[str, Any]]:
    """Half m6i.2xlarge, half m4.2xlarge, VNNI first (fleet groups hold 500 at most)."""
    half = count // 2
    groups = [{"instanceType": kind, "count": min(500, total - start)}
              for kind, total in (("m6i.2xlarge", half), ("m4.2xlarge", count - half))
              for start in range(0, total, 500)]  # fmt: skip
    manifests = fleets.node_manifests(fleets.Fleet.model_validate({"nodes": groups}))
    for node in manifests:
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return manifests


def pod(uid: str, *, gated: bool, node: str = "", template: str | None = "t1") -> dict[str, Any]:
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {names.INJECT_LABEL: "true"}
    metadata: dict[str, Any] = {
        "name": f"w-{uid}", "namespace": "tickets", "uid": uid, "resourceVersion": "1",
        "creationTimestamp": created, "labels": labels,
        "annotations": {names.ENVIRONMENT_ANNOTATION: "acme/embedder",
                        names.WORKLOAD_ANNOTATION: "int8-inference"},
    }  # fmt: skip
    if template is not None:
        labels["pod-template-hash"] = template
        metadata["ownerReferences"] = [OWNER]
    spec: dict[str, Any] = {
        "containers": [{"name": "w", "resources": {"requests": {"cpu": "1", "memory": "64Mi"}}}]
    }
    if gated:
        spec["schedulingGates"] = [{"name": names.PLACEMENT_GATE}]
    if node:
        spec["nodeName"] = node
    return {"metadata": metadata, "spec": spec, "status": {"phase": "Pending"}}


def controller(nodes: list[dict[str, Any]]) -> PlacementController:
    placement = PlacementController(
        PlacementSettings(default_catalog(), lease_namespace="default", identity="bench"),
        Rest(Connection("http://127.0.0.1:1")),  # plan_batch does no I/O
    )
    placement.fleet_changed(index_nodes(node_state(n) for n in nodes))
    return placement


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def timed(prepare: Callable[[], Callable[[], object]], rounds: int) -> float:
    """The median of `rounds` runs of what `prepare` returns (prepared afresh, untimed)."""
    times = []
    for _ in range(rounds):
        action = prepare()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--other-pods", type=int, default=10000)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    nodes = node_list(args.nodes)
    vnni = [n["metadata"]["name"] for n in nodes[: args.nodes // 2]]
    others = [pod(f"o{i}", gated=False, node=vnni[i % len(vnni)], template=None)
              for i in range(args.other_pods)]  # fmt: skip

    def loaded() -> PlacementController:
        placement = controller(nodes)
        placement.replace_pods(others)
        return placement

    before = rss_mb()
    started = time.perf_counter()
    kept = loaded()
    ingest = (time.perf_counter() - started) / max(1, args.other_pods)
    state_mb = rss_mb() - before
    del kept

    def burst() -> Callable[[], object]:
        placement = loaded()
        for i in range(args.replicas):
            placement.pod_changed("ADDED", pod(f"r{i}", gated=True))
        return placement.plan_batch

    def held(template: bool) -> Callable[[], object]:
        """A pass over replicas held back: every VNNI node's room is reserved, unbound."""
        placement = loaded()
        for index, name in enumerate(vnni):
            bound = args.other_pods // len(vnni) + (index < args.other_pods % len(vnni))
            free = PER_NODE - bound
            for slot in range(max(0, free)):
                placement.ledger.reserve(f"res-{name}-{slot}", name, {"cpu": 1000, "pods": 1})
        for i in range(args.replicas):
            placement.pod_changed("ADDED", pod(f"h{i}", gated=True,
                                               template="t1" if template else None))  # fmt: skip
        return placement.plan_batch

    placed = timed(burst, args.rounds)
    templated = timed(lambda: held(True), args.rounds)
    unique = timed(lambda: held(False), args.rounds)
    print(f"nodes {args.nodes} ({len(vnni)} VNNI), other pods {args.other_pods},"
          f" replicas {args.replicas}")  # fmt: skip
    print(f"place:  one batch of {args.replicas} choices {placed * 1e3:8.1f} ms"
          f"  ({placed / args.replicas * 1e6:.0f} us per pod)")  # fmt: skip
    print(f"held:   one template {templated * 1e3:8.2f} ms vs one choice per pod"
          f" {unique * 1e3:8.1f} ms: {unique / templated:.0f}x less work per wake")  # fmt: skip
    print(f"ingest: {ingest * 1e6:.0f} us per pod event; the state of {args.nodes} nodes and"
          f" {args.other_pods} pods: +{state_mb:.0f} MB RSS (bound pods are kept as their"
          " requests only, not as bodies)")  # fmt: skip


if __name__ == "__main__":
    main()

"""The TicketWorker operator on the real local control plane, run as `flox-isa operator`.

Every test works in its own namespace and, where it changes the fleet, on nodes it
adds with its own label (the template's nodeSelector picks them), so the shared
session fleet is never altered. kubectl drives the cluster, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flox_isa.devcluster.build import bin_dir
from flox_isa.isa import names
from flox_isa.isa.capacity import demand_of
from flox_isa.isa.catalog import Workload, default_catalog
from flox_isa.isa.constraints import constraints_of
from flox_isa.isa.features import features_from_labels
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.nodes import node_state
from flox_isa.isa.planning import group_eligible, plan_replicas
from flox_isa.isa.selection import fits
from flox_isa.operator.capacity import Rooms
from flox_isa.operator.crd import crd_yaml
from flox_isa.operator.placement import PlacementSettings, Planner
from tests.e2e.conftest import DevCluster, NodeFactory
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.e2e

CATALOG = default_catalog()
LEASE_SECONDS = 6.0
POOL = "e2e.flox.dev/pool"


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.base = [str(bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig)]

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if check and done.returncode:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout + done.stderr

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, manifest: dict[str, Any] | str, check: bool = True) -> str:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.run("apply", "-f", "-", stdin=text, check=check)


@pytest.fixture(scope="module")
def kubectl(cluster: DevCluster) -> Kubectl:
    kubectl = Kubectl(cluster.kubeconfig)
    kubectl.apply(crd_yaml())
    kubectl.run("wait", "--for=condition=Established", "crd/ticketworkers.isa.flox.dev")
    return kubectl


class Operators:
    """`flox-isa operator` subprocesses; each test's are stopped after it."""

    def __init__(self, cluster: DevCluster, logs: Path) -> None:
        self.cluster = cluster
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, namespace: str, lease: str = "flox-isa-operator", lease_seconds: float = LEASE_SECONDS
    ) -> subprocess.Popen[bytes]:
        log = self.logs / f"operator-{namespace}-{len(self.running)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "flox_isa.cli", "operator",
             "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", namespace,
             "--lease-namespace", namespace, "--lease-name", lease,
             "--lease-duration", str(lease_seconds), "--health-port", "0"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def operators(cluster: DevCluster, tmp_path: Path) -> Iterator[Operators]:
    running = Operators(cluster, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"tw-e2e-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def ticketworker(
    namespace: str, name: str, replicas: int, workload: Workload = "int8-inference", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "isa.flox.dev/v1alpha1",
        "kind": "TicketWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"environment": "acme/ticket-processor", "workload": workload,
                 "replicas": replicas, **spec},
    }  # fmt: skip


def pool_template(pool: str) -> dict[str, Any]:
    return {"spec": {"nodeSelector": {POOL: pool}}}


def deployments(kubectl: Kubectl, namespace: str, tw: str) -> dict[str, Any]:
    found = kubectl.json(
        "get", "deployments", "-n", namespace, "-l", f"{names.TICKETWORKER_LABEL}={tw}"
    )
    return {d["metadata"]["name"]: d for d in found["items"]}


def replicas_by_variant(kubectl: Kubectl, namespace: str, tw: str) -> dict[str, int]:
    return {
        d["metadata"]["labels"][names.VARIANT_LABEL]: d["spec"]["replicas"]
        for d in deployments(kubectl, namespace, tw).values()
    }


def expected_split(  # noqa: PLR0917 - the cluster, then the plan's inputs
    kubectl: Kubectl,
    replicas: int,
    workload: Workload,
    pod_spec: dict[str, Any],
    allowed: list[str] | None = None,
    owner: tuple[str, str] = ("", ""),
) -> dict[str, int]:
    """The plan for the cluster's nodes and pods right now (the pure core, fed
    independently): by free room, the TicketWorker `owner`'s own pods not counted."""
    listed = kubectl.json("get", "nodes")["items"]
    nodes = [node_state(n) for n in listed]
    accounting = Planner(PlacementSettings(CATALOG, lease_namespace="", identity="e2e"))
    accounting.fleet_changed(index_nodes(nodes))
    accounting.replace_pods(kubectl.json("get", "pods", "-A")["items"])
    room = Rooms(accounting, CATALOG).room_for(
        owner, constraints_of(pod_spec), demand_of(pod_spec), workload, allowed
    )
    plan = plan_replicas(
        CATALOG,
        group_eligible(nodes, pod_spec),
        workload=workload,
        replicas=replicas,
        allowed=allowed,
        room=room,
    )
    return {s.variant.name: s.replicas for s in plan.shares}


def condition(kubectl: Kubectl, namespace: str, tw: str, kind: str) -> dict[str, Any]:
    status = kubectl.json("get", "tw", tw, "-n", namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def assert_pods_run_where_their_variant_can(
    kubectl: Kubectl,
    namespace: str,
    tw: str,
    count: int,
    generations: dict[str, int] | None = None,
) -> None:
    def running() -> list[dict[str, Any]]:
        """Running pods on nodes that still exist (pod GC removes the others later)."""
        pods = kubectl.json(
            "get", "pods", "-n", namespace, "-l", f"{names.TICKETWORKER_LABEL}={tw}"
        )
        return [p for p in pods["items"] if p["status"].get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")
                and p["spec"].get("nodeName") in nodes()]  # fmt: skip

    def nodes() -> dict[str, Any]:
        return {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}

    wait_until(f"{count} Running pods of {tw}", lambda: len(running()) == count, timeout=90)
    current = nodes()
    for pod in running():
        variant = CATALOG.get(pod["metadata"]["labels"][names.VARIANT_LABEL])
        assert variant is not None
        node = current[pod["spec"]["nodeName"]]
        assert fits(variant, features_from_labels(node["metadata"]["labels"])), (
            f"{pod['metadata']['name']} ({variant.name}) runs on {node['metadata']['name']}"
        )
        annotations = pod["metadata"]["annotations"]
        pin = f":{generations[variant.name]}" if generations else ""
        assert annotations[names.ENVIRONMENT_ANNOTATION] == (
            f"acme/ticket-processor-{variant.name}{pin}"
        )


def test_a_ticketworker_becomes_one_deployment_per_variant_with_running_pods(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    kubectl.apply(ticketworker(namespace, "tickets", 10))
    expected = expected_split(kubectl, 10, "int8-inference", {"runtimeClassName": "flox"})
    assert len(expected) >= 2  # the default fleet offers several variants
    wait_until(
        "one Deployment per variant",
        lambda: replicas_by_variant(kubectl, namespace, "tickets") == expected,
    )
    for name, deployment in deployments(kubectl, namespace, "tickets").items():
        (owner,) = deployment["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "TicketWorker",
            "tickets",
            True,
        )
        assert name == f"tickets-{deployment['metadata']['labels'][names.VARIANT_LABEL]}"
    assert_pods_run_where_their_variant_can(kubectl, namespace, "tickets", 10)
    wait_until(
        "Ready=True",
        lambda: condition(kubectl, namespace, "tickets", "Ready").get("status") == "True",
    )
    status = kubectl.json("get", "tw", "tickets", "-n", namespace)["status"]
    assert status["readyReplicas"] == 10
    assert status["expectedThroughput"] == sum(v["expectedThroughput"] for v in status["variants"])
    table = kubectl.run("get", "tw", "tickets", "-n", namespace)
    assert "DESIRED" in table and "VARIANTS" in table
    events = kubectl.run(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.kind=TicketWorker"
    )
    assert "Created" in events
    # Idempotent: the pods' rollout re-ran reconciles, none rewrote a Deployment
    # (the rendered spec, preferred node affinity included, round-trips as is).
    generations = {
        name: d["metadata"]["generation"]
        for name, d in deployments(kubectl, namespace, "tickets").items()
    }
    assert set(generations.values()) == {1}, generations
    assert "Updated" not in events


def test_rendered_pods_get_thread_variables_from_their_cpu_limit(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    worker = {"name": "worker", "resources": {"limits": {"cpu": "2500m"}}}
    own = {"name": "own", "env": [{"name": "OPENBLAS_NUM_THREADS", "value": "1"}],
           "resources": {"limits": {"cpu": "1"}}}  # fmt: skip
    template = {"spec": {"containers": [worker, own]}}
    kubectl.apply(ticketworker(namespace, "threads", 2, variants=["avx2"], template=template))
    wait_until(
        "the avx2 Deployment", lambda: "threads-avx2" in deployments(kubectl, namespace, "threads")
    )
    pod_template = deployments(kubectl, namespace, "threads")["threads-avx2"]["spec"]["template"]
    env = {c["name"]: {e["name"]: e["value"] for e in c.get("env") or ()}
           for c in pod_template["spec"]["containers"]}  # fmt: skip
    assert env == {
        "worker": dict.fromkeys(
            ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "2"
        ),
        "own": {"OPENBLAS_NUM_THREADS": "1"},
    }
    reason = pod_template["metadata"]["annotations"][names.REASON_ANNOTATION]
    assert "worker=2 (floor of CPU limit 2500m)" in reason and "own keeps its own" in reason
    wait_until(
        "Ready=True",
        lambda: condition(kubectl, namespace, "threads", "Ready").get("status") == "True",
    )
    # Idempotent: the rendered env round-trips, nothing rewrote the Deployment.
    assert deployments(kubectl, namespace, "threads")["threads-avx2"]["metadata"]["generation"] == 1


def test_a_pinned_ticketworker_runs_each_variants_own_generation(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    generations = {"avx2": 4, "avx512vnni": 6}
    tw = ticketworker(namespace, "pinned", 6, generations=generations)
    tw["spec"]["environment"] = "acme/ticket-processor:3"
    kubectl.apply(tw)
    expected = expected_split(
        kubectl, 6, "int8-inference", {"runtimeClassName": "flox"}, allowed=list(generations)
    )
    assert set(expected) == set(generations)  # the default fleet has both
    wait_until(
        "one Deployment per pinned variant",
        lambda: replicas_by_variant(kubectl, namespace, "pinned") == expected,
    )
    assert_pods_run_where_their_variant_can(kubectl, namespace, "pinned", 6, generations)


def test_the_fleet_changes_and_the_deployments_rebalance(
    kubectl: Kubectl, operators: Operators, namespace: str, nodes: NodeFactory
) -> None:
    template = pool_template(namespace)  # only this test's nodes carry the pool label
    nodes.add("m4.xlarge", 1, labels={POOL: namespace})
    vnni = nodes.add("m6i.xlarge", 2, labels={POOL: namespace})
    operators.start(namespace)
    kubectl.apply(ticketworker(namespace, "rebalance", 6, template=template))

    def settles_on(variants: set[str]) -> None:
        expected = expected_split(kubectl, 6, "int8-inference", template["spec"])
        assert set(expected) == variants
        wait_until(f"Deployments for {sorted(variants)}",
             lambda: replicas_by_variant(kubectl, namespace, "rebalance") == expected)  # fmt: skip

    settles_on({"avx2", "avx512vnni"})
    nodes.add("c8g.xlarge", 2, labels={POOL: namespace})  # Graviton4 (SVE2) joins
    settles_on({"avx2", "avx512vnni", "armv9"})
    nodes.delete(vnni)  # every VNNI node leaves
    settles_on({"avx2", "armv9"})
    assert_pods_run_where_their_variant_can(kubectl, namespace, "rebalance", 6)


def test_edited_and_deleted_deployments_are_restored(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    kubectl.apply(ticketworker(namespace, "drift", 3, variants=["avx2"]))
    wait_until(
        "the avx2 Deployment",
        lambda: replicas_by_variant(kubectl, namespace, "drift") == {"avx2": 3},
    )
    kubectl.run("scale", "deployment/drift-avx2", "-n", namespace, "--replicas=7")
    wait_until(
        "replicas restored", lambda: replicas_by_variant(kubectl, namespace, "drift") == {"avx2": 3}
    )
    key = names.cpuid_label("AVX2").replace("/", "~1")
    remove = [{"op": "remove", "path": f"/spec/template/spec/nodeSelector/{key}"}]
    kubectl.run("patch", "deployment/drift-avx2", "-n", namespace, "--type=json",
                f"-p={json.dumps(remove)}")  # fmt: skip

    def selector_back() -> bool:
        live = deployments(kubectl, namespace, "drift")["drift-avx2"]
        selector: dict[str, str] = live["spec"]["template"]["spec"]["nodeSelector"]
        return selector.get(names.cpuid_label("AVX2")) == "true"

    wait_until("nodeSelector restored", selector_back)
    uid = deployments(kubectl, namespace, "drift")["drift-avx2"]["metadata"]["uid"]
    kubectl.run("delete", "deployment/drift-avx2", "-n", namespace)
    wait_until(
        "Deployment re-created",
        lambda: (
            deployments(kubectl, namespace, "drift")
            .get("drift-avx2", {})
            .get("metadata", {})
            .get("uid")
            not in (None, uid)
        ),
    )


def test_kubectl_scale_on_the_ticketworker(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    kubectl.apply(ticketworker(namespace, "scaled", 2))
    wait_until(
        "2 replicas", lambda: sum(replicas_by_variant(kubectl, namespace, "scaled").values()) == 2
    )
    kubectl.run("scale", "tw/scaled", "-n", namespace, "--replicas=9")
    wait_until(
        "9 replicas", lambda: sum(replicas_by_variant(kubectl, namespace, "scaled").values()) == 9
    )
    wait_until(
        "status.replicas == 9",
        lambda: kubectl.json("get", "tw", "scaled", "-n", namespace)["status"].get("replicas") == 9,
        timeout=90,
    )


def test_a_ticketworker_sized_by_throughput_and_kubectl_scale_refused(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    template = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "1"}}}]}}
    tw = ticketworker(namespace, "sized", 0, variants=["avx2", "avx512vnni"], template=template,
                      throughput=300)  # fmt: skip
    del tw["spec"]["replicas"]
    kubectl.apply(tw)

    def reached() -> Any:
        status = kubectl.json("get", "tw", "sized", "-n", namespace).get("status") or {}
        return status if condition(kubectl, namespace, "sized", "TargetReachable") else None

    status = wait_until("the TargetReachable condition", reached)
    assert status["throughputTarget"] == 300
    planned = {v["variant"]: v["desiredReplicas"] * v["throughputPerReplica"]
               for v in status["variants"]}  # fmt: skip
    assert status["plannedThroughput"] == sum(planned.values()) >= 300
    # The fewest replicas: one fewer of the least productive variant would miss the target.
    least = min(v["throughputPerReplica"] for v in status["variants"])
    assert status["plannedThroughput"] - least < 300
    wait_until("Deployments as planned", lambda: replicas_by_variant(kubectl, namespace, "sized")
               == {v["variant"]: v["desiredReplicas"] for v in status["variants"]})  # fmt: skip
    refused = kubectl.run("scale", "tw/sized", "-n", namespace, "--replicas=9", check=False)
    assert "spec.replicas and spec.throughput are mutually exclusive" in refused, refused


THREADS = names.THREADS_ANNOTATION
RESERVED_ANNOTATION = {"metadata": {"annotations": {"flox.dev/environment": "x/y"}}}
INVALID = [
    ({"environment": "tp"}, ["spec.environment", "must be a Flox environment owner/name"]),
    ({"environment": "a/b", "variants": ["avx2", "avx2"]}, ["spec.variants", "must be unique"]),
    ({"environment": "a/b", "workload": "fp64"}, ["spec.workload", 'Unsupported value: "fp64"']),
    ({"environment": "a/b", "replicas": -1}, ["spec.replicas", "greater than or equal to 0"]),
    ({"environment": "a/b", "placement": "all"}, ["spec.placement", "Unsupported value"]),
    ({"environment": "a/b", "whenFull": "later"}, ["spec.whenFull", "Unsupported value"]),
    (
        {"environment": "a/b", "replan": {"maxMovePercent": 0}},
        ["spec.replan.maxMovePercent", "greater than or equal to 1"],
    ),
    (
        {"environment": "a/b", "template": RESERVED_ANNOTATION},
        ["spec.template.metadata.annotations", "is set by the operator from spec.environment"],
    ),
    (
        {"environment": "a/b", "template": {"metadata": {"annotations": {THREADS: "0"}}}},
        ["spec.template.metadata.annotations", f'{THREADS} must be "off" or a thread count'],
    ),
    (
        {"environment": "a/b", "replicas": 2, "throughput": 100},
        ["spec.replicas", "spec.replicas and spec.throughput are mutually exclusive"],
    ),
    ({"environment": "a/b", "throughput": 0}, ["spec.throughput", "more than 0 tickets/s"]),
    (
        {"environment": "a/b", "throughputPerReplica": {"avx2": -1}},
        ["spec.throughputPerReplica", "figures must be more than 0 tickets/s"],
    ),
    ({"replicas": 1}, ["spec.environment", "Required value"]),
    ({"environment": "a/b\n"}, ["spec.environment", "must be a Flox environment owner/name"]),
    ({"environment": "a/b:"}, ["spec.environment", "must be a Flox environment owner/name"]),
    (
        {"environment": "a/b:3"},
        ["spec.generations", "pins a generation", "generations: {avx2: 4, avx512vnni: 6}"],
    ),
    (
        {"environment": "a/b", "variants": ["armv9"], "generations": {"avx2": 1}},
        ["spec.generations", "names none of spec.variants"],
    ),
    ({"environment": "a/b", "generations": {"AVX2": 1}}, ["spec.generations", "variant names"]),
    ({"environment": "a/b", "generations": {"avx2": -1}}, ["spec.generations.avx2", "0"]),
]


@pytest.mark.parametrize(("spec", "messages"), INVALID)
def test_invalid_specs_are_rejected_naming_the_field(
    kubectl: Kubectl, namespace: str, spec: dict[str, Any], messages: list[str]
) -> None:
    manifest = {"apiVersion": "isa.flox.dev/v1alpha1", "kind": "TicketWorker",
                "metadata": {"name": "bad", "namespace": namespace}, "spec": spec}  # fmt: skip
    output = kubectl.apply(manifest, check=False)
    assert "is invalid" in output
    for message in messages:
        assert message in output


def test_what_only_the_operator_can_check_is_degraded_and_touches_nothing(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    kubectl.apply(ticketworker(namespace, "unknown", 2, variants=["avx2", "avx9"]))
    wait_until(
        "Degraded",
        lambda: condition(kubectl, namespace, "unknown", "Degraded").get("status") == "True",
    )
    degraded = condition(kubectl, namespace, "unknown", "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert degraded["message"].startswith("spec.variants: avx9 is not in the variant catalog")
    assert deployments(kubectl, namespace, "unknown") == {}
    # A good spec, then a bad edit: what exists stays as it was.
    kubectl.apply(ticketworker(namespace, "unknown", 2, variants=["avx2"]))
    wait_until("avx2", lambda: replicas_by_variant(kubectl, namespace, "unknown") == {"avx2": 2})
    kubectl.apply(ticketworker(namespace, "unknown", 5, variants=["avx2", "avx9"]))
    wait_until(
        "Degraded again",
        lambda: condition(kubectl, namespace, "unknown", "Degraded").get("status") == "True",
    )
    assert replicas_by_variant(kubectl, namespace, "unknown") == {"avx2": 2}
    warnings = kubectl.run("get", "events", "-n", namespace, "--field-selector", "type=Warning")
    assert "InvalidSpec" in warnings


def test_no_node_for_the_wanted_variants_is_degraded(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    tw = ticketworker(
        namespace, "nowhere", 2, variants=["avx512vnni"], template=pool_template("no-such-pool")
    )
    kubectl.apply(tw)
    wait_until(
        "Degraded",
        lambda: (
            condition(kubectl, namespace, "nowhere", "Degraded").get("reason") == "NoEligibleNodes"
        ),
    )
    message = condition(kubectl, namespace, "nowhere", "Degraded")["message"]
    assert message.startswith("no node supports any of [avx512vnni]")


def test_deleting_the_ticketworker_removes_everything_it_made(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    operators.start(namespace)
    kubectl.apply(ticketworker(namespace, "gone", 4))
    assert_pods_run_where_their_variant_can(kubectl, namespace, "gone", 4)
    kubectl.run("delete", "tw/gone", "-n", namespace)
    selector = f"{names.TICKETWORKER_LABEL}=gone"

    def nothing_left() -> bool:
        left = kubectl.json("get", "deployments,replicasets,pods", "-n", namespace, "-l", selector)
        return not left["items"]

    wait_until(
        "the garbage collector to remove Deployments, ReplicaSets and pods",
        nothing_left,
        timeout=90,
    )


def lease_holder(kubectl: Kubectl, namespace: str, lease: str) -> str:
    found = kubectl.run("get", "lease", lease, "-n", namespace, "-o", "json", check=False)
    if not found.startswith("{"):
        return ""  # not created yet
    return str(json.loads(found)["spec"].get("holderIdentity") or "")


def test_two_replicas_one_acts_and_the_survivor_converges(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    first = operators.start(namespace, lease="ha")
    wait_until("a leader", lambda: f"-{first.pid}-" in lease_holder(kubectl, namespace, "ha"))
    second = operators.start(namespace, lease="ha")
    by_pid = {first.pid: first, second.pid: second}
    kubectl.apply(ticketworker(namespace, "ha", 4))
    wait_until(
        "4 replicas", lambda: sum(replicas_by_variant(kubectl, namespace, "ha").values()) == 4
    )
    holder = lease_holder(kubectl, namespace, "ha")
    leader = next(p for pid, p in by_pid.items() if f"-{pid}-" in holder)
    survivor = next(p for p in by_pid.values() if p is not leader)
    # Kill the active replica in the middle of a change; the standby must finish it.
    kubectl.run("scale", "tw/ha", "-n", namespace, "--replicas=11")
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)
    wait_until(
        "the survivor to take the lease",
        lambda: f"-{survivor.pid}-" in lease_holder(kubectl, namespace, "ha"),
        timeout=LEASE_SECONDS * 4,
    )
    expected = expected_split(kubectl, 11, "int8-inference", {"runtimeClassName": "flox"},
                              owner=(namespace, "ha"))  # fmt: skip
    wait_until(
        "converged to 11",
        lambda: replicas_by_variant(kubectl, namespace, "ha") == expected,
        timeout=60,
    )
    names_now = sorted(deployments(kubectl, namespace, "ha"))
    assert names_now == sorted(f"ha-{v}" for v in expected)  # no duplicate, no orphan
    assert survivor.poll() is None


def test_a_clean_sigterm_releases_the_lease_and_the_standby_leads_without_waiting(
    kubectl: Kubectl, operators: Operators, namespace: str
) -> None:
    """The Lease lasts 90 s here (a standby polls every 12 s): the standby can only lead
    within the test's 45 s if the leader hands the Lease over on SIGTERM (it does so
    before it exits)."""
    long_lease = 90.0
    first = operators.start(namespace, lease="bye", lease_seconds=long_lease)
    wait_until("a leader", lambda: f"-{first.pid}-" in lease_holder(kubectl, namespace, "bye"))
    second = operators.start(namespace, lease="bye", lease_seconds=long_lease)
    # The leader has work behind it: a TicketWorker created, scaled and deleted.
    kubectl.apply(ticketworker(namespace, "bye", 3))
    wait_until(
        "3 replicas", lambda: sum(replicas_by_variant(kubectl, namespace, "bye").values()) == 3
    )
    kubectl.run("scale", "tw/bye", "-n", namespace, "--replicas=5")
    wait_until(
        "5 replicas", lambda: sum(replicas_by_variant(kubectl, namespace, "bye").values()) == 5
    )
    kubectl.run("delete", "tw/bye", "-n", namespace)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0  # a clean exit, not a kill
    assert f"-{first.pid}-" not in lease_holder(
        kubectl, namespace, "bye"
    )  # released on the way out
    wait_until(
        "the standby to lead",
        lambda: f"-{second.pid}-" in lease_holder(kubectl, namespace, "bye"),
        timeout=45,  # below the 90 s the Lease would otherwise take to expire
    )
    assert second.poll() is None


# -- planned by free room (issue 14) --------------------------------------------------------

ONE_CPU_TEMPLATE = {"containers": [{"name": "w", "resources": {"requests": {"cpu": "1"}}}]}
QUICK_REPLAN = {"unschedulableSeconds": 5, "intervalSeconds": 2, "maxMovePercent": 100}


def busy_pod(namespace: str, node: str, cpu: str) -> dict[str, Any]:
    """Another team's pod, bound to `node` (no scheduler), using `cpu` of its room."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"busy-{node}"[:60], "namespace": namespace,
                         "labels": {"app": "busy"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busy",
                     "resources": {"requests": {"cpu": cpu}}}]}}  # fmt: skip


def tw_pods(kubectl: Kubectl, namespace: str, tw: str) -> list[dict[str, Any]]:
    found = kubectl.json("get", "pods", "-n", namespace, "-l", f"{names.TICKETWORKER_LABEL}={tw}")
    return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]


def running_by_variant(kubectl: Kubectl, namespace: str, tw: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in tw_pods(kubectl, namespace, tw):
        if pod["status"].get("phase") == "Running":
            variant = pod["metadata"]["labels"][names.VARIANT_LABEL]
            counts[variant] = counts.get(variant, 0) + 1
    return counts


def unschedulable(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in pod["status"].get("conditions") or ())  # fmt: skip


@pytest.fixture
def busy_vnni(
    kubectl: Kubectl, operators: Operators, namespace: str, nodes: NodeFactory
) -> dict[str, Any]:
    """2 VNNI nodes (one slot left for a 1-CPU replica, another team's pods fill the rest)
    and 2 Graviton4 nodes, all in this test's pool, and the operator started; the
    template of this test's 1-CPU replicas, on its pool."""
    vnni = nodes.add("m6i.xlarge", 2, labels={POOL: namespace})
    nodes.add("c8g.xlarge", 2, labels={POOL: namespace})
    kubectl.apply(busy_pod(namespace, vnni[0], "3920m"))
    kubectl.apply(busy_pod(namespace, vnni[1], "2900m"))

    def busy_running() -> bool:
        busy = kubectl.json("get", "pods", "-n", namespace, "-l", "app=busy")["items"]
        return all(p["status"].get("phase") == "Running" for p in busy)

    wait_until("the busy pods Running", busy_running)
    operators.start(namespace)
    return {"spec": {"nodeSelector": {POOL: namespace}, **ONE_CPU_TEMPLATE}}


def moved_events(kubectl: Kubectl, namespace: str) -> str:
    return kubectl.run("get", "events", "-n", namespace, "--field-selector", "reason=MovedReplicas")


def test_best_on_busy_vnni_nodes_spills_then_moves_back_when_room_frees(
    kubectl: Kubectl, namespace: str, busy_vnni: dict[str, Any]
) -> None:
    kubectl.apply(ticketworker(namespace, "fits", 6, placement="best", template=busy_vnni,
                               replan=QUICK_REPLAN))  # fmt: skip
    # avx512 (52) ranks above armv9 (41) for int8 but runs only on the full VNNI nodes.
    wait_until("1 replica on avx512vnni, 5 spilled to armv9",
               lambda: replicas_by_variant(kubectl, namespace, "fits")
               == {"avx512vnni": 1, "armv9": 5})  # fmt: skip
    wait_until("all 6 Running", lambda: running_by_variant(kubectl, namespace, "fits")
               == {"avx512vnni": 1, "armv9": 5})  # fmt: skip
    assert_pods_run_where_their_variant_can(kubectl, namespace, "fits", 6)
    limited = wait_until("CapacityLimited", lambda: condition(kubectl, namespace, "fits",
                                                              "CapacityLimited"))  # fmt: skip
    assert (limited["status"], limited["reason"]) == ("True", "Spilled")
    assert limited["message"].startswith("avx512vnni has room for 1 of 6 (5 short)")
    status = kubectl.json("get", "tw", "fits", "-n", namespace)["status"]
    room = {v["variant"]: v["room"] for v in status["variants"]}
    assert room == {"avx512vnni": 1, "armv9": 6}
    # The other team leaves: room on the VNNI nodes, for longer than the bound (5 s here).
    kubectl.run("delete", "pods", "-n", namespace, "-l", "app=busy", "--wait=true")
    wait_until("every replica back on avx512vnni",
               lambda: replicas_by_variant(kubectl, namespace, "fits") == {"avx512vnni": 6},
               timeout=90)  # fmt: skip
    wait_until("6 Running on avx512vnni",
               lambda: running_by_variant(kubectl, namespace, "fits") == {"avx512vnni": 6},
               timeout=90)  # fmt: skip
    events = moved_events(kubectl, namespace)
    assert "5 replicas armv9 → avx512vnni: room back on avx512vnni" in events, events
    wait_until("CapacityLimited=False", lambda: condition(
        kubectl, namespace, "fits", "CapacityLimited").get("status") == "False")  # fmt: skip


def test_wait_keeps_the_excess_unschedulable_on_the_best_variant_until_next_best(
    kubectl: Kubectl, namespace: str, busy_vnni: dict[str, Any]
) -> None:
    tw = ticketworker(namespace, "waits", 4, placement="best", whenFull="wait",
                      template=busy_vnni, replan=QUICK_REPLAN)  # fmt: skip
    kubectl.apply(tw)
    wait_until(
        "every replica on avx512vnni",
        lambda: replicas_by_variant(kubectl, namespace, "waits") == {"avx512vnni": 4},
    )

    def one_running_three_unschedulable() -> bool:
        pods = tw_pods(kubectl, namespace, "waits")
        return (sum(p["status"].get("phase") == "Running" for p in pods) == 1
                and sum(unschedulable(p) for p in pods) == 3)  # fmt: skip

    wait_until("1 Running, 3 Unschedulable", one_running_three_unschedulable)
    time.sleep(8)  # past the bound: with wait, still nothing moves
    assert replicas_by_variant(kubectl, namespace, "waits") == {"avx512vnni": 4}

    def status_says_so() -> Any:
        status = kubectl.json("get", "tw", "waits", "-n", namespace).get("status") or {}
        variants = {v["variant"]: v for v in status.get("variants") or ()}
        vnni = variants.get("avx512vnni") or {}
        return vnni if vnni.get("unschedulableReplicas") == 3 else None

    vnni = wait_until("status: 3 Unschedulable on avx512vnni", status_says_so)
    assert (vnni["desiredReplicas"], vnni["room"]) == (4, 1)
    limited = condition(kubectl, namespace, "waits", "CapacityLimited")
    assert (limited["status"], limited["reason"]) == ("True", "WaitingForRoom")
    # next-best now: the pods Unschedulable past the bound move to armv9, all Running.
    tw["spec"]["whenFull"] = "next-best"
    kubectl.apply(tw)
    wait_until("3 moved to armv9", lambda: replicas_by_variant(kubectl, namespace, "waits")
               == {"avx512vnni": 1, "armv9": 3}, timeout=60)  # fmt: skip
    wait_until("all 4 Running", lambda: running_by_variant(kubectl, namespace, "waits")
               == {"avx512vnni": 1, "armv9": 3}, timeout=90)  # fmt: skip
    events = moved_events(kubectl, namespace)
    assert "3 replicas avx512vnni → armv9: avx512vnni full for" in events, events

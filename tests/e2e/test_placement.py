"""Capacity-aware placement on the real control plane: the real webhook gates, the real
operator's placement controller pins each pod to the best variant with room, and the
real scheduler places it on kwok nodes with real allocatable resources.

The module adds its own nodes, labelled and tainted with a run-unique pool, and its
pods select and tolerate that pool: the webhook and the controller see only these
nodes for them, whatever other tests add to the shared cluster.
Pool: 2 x m6i.xlarge (AVX512VNNI, 3 one-CPU pods each) and 2 x m4.xlarge (AVX2 only,
3 each). Workload int8-inference: avx512vnni (85) > avx2 (35).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flox_isa.devcluster.cluster import free_ports
from flox_isa.isa import names
from flox_isa.operator.crd import crd_yaml
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.registration import webhook_configuration
from tests.e2e.conftest import DevCluster
from tests.e2e.polling import wait_until
from tests.e2e.test_operator import Kubectl

pytestmark = pytest.mark.e2e

RUN = f"r{uuid.uuid4().hex[:5]}"  # never all digits or "1e5...": YAML would read a number
POOL_LABEL = "e2e.flox.dev/placement-pool"
SCOPE_LABEL = "e2e.flox.dev/placement-run"
LEASE_SECONDS = 4.0
ENV = "acme/embedder"
VNNI, AVX2 = "avx512vnni", "avx2"
PER_NODE = 3  # one-CPU pods on a 4-vCPU node (3920m allocatable)
INT8 = {names.ENVIRONMENT_ANNOTATION: ENV, names.WORKLOAD_ANNOTATION: "int8-inference"}


@dataclass
class Placement:
    """The session's webhook, the pool, and a way to (re)start the operator."""

    cluster: DevCluster
    kubectl: Kubectl
    namespace: str
    lease_namespace: str
    logs: Path
    vnni_nodes: list[str]
    avx2_nodes: list[str]
    operator: subprocess.Popen[bytes] | None = None

    def start_operator(self, *extra: str) -> None:
        self.stop_operator()
        log = self.logs / f"operator-{uuid.uuid4().hex[:4]}.log"
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "flox_isa.cli", "operator",
             "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", self.namespace,
             "--lease-namespace", self.lease_namespace, "--lease-name", f"op-{RUN}",
             "--lease-duration", "6", "--placement-lease-duration", str(LEASE_SECONDS),
             "--health-port", "0", *extra],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until("the webhook to see the placement Lease renewed", self.gating, timeout=60)

    def stop_operator(self) -> None:
        """Stop the operator and wait until the webhook has seen it gone.

        Without the wait, a restart races: the webhook still trusts the old Lease for up
        to a poll, `start_operator` sees it gating, then it stops gating for a moment and
        pins the test's pods at admission (a flake seen in CI).
        """
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            self.operator.wait(timeout=30)
            wait_until("the webhook to stop gating", lambda: not self.gating(), timeout=30)
        self.operator = None

    def gating(self) -> bool:
        """Does the webhook gate right now? (a dry-run create says)"""
        return names.PLACEMENT_GATE in gates(dry_run(self.kubectl, probe_pod()))

    def settle(
        self,
        selector: str,
        what: str,
        done: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 120,
    ) -> list[dict[str, Any]]:
        """The pods matching `selector` once `done` holds for them."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            nonlocal found
            found = self.pods(selector)
            return done(found)

        try:
            wait_until(what, check, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; pods now: {summary(found)}") from None
        return found

    def pod_once(
        self, name: str, what: str, done: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def check() -> bool:
            nonlocal found
            found = self.kubectl.json("get", "pod", name, "-n", self.namespace)
            return done(found)

        wait_until(what, check, timeout=60)
        return found

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl.json(
            "get", "pods", "-n", self.namespace, "-l", selector
        )["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def summary(pods: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """(name, phase, variant, node, why not scheduled) per pod, for failure messages."""
    rows: list[tuple[str, ...]] = []
    for pod in pods:
        conditions = pod.get("status", {}).get("conditions") or []
        why = next((c.get("message", "") for c in conditions if c.get("status") == "False"), "")
        rows.append((pod["metadata"]["name"], pod.get("status", {}).get("phase", "?"),
                     (pod["metadata"].get("labels") or {}).get(names.VARIANT_LABEL, "-"),
                     pod["spec"].get("nodeName") or "-", str(why)[:120]))  # fmt: skip
    return rows


def gates(pod: dict[str, Any]) -> list[str]:
    return [g["name"] for g in pod["spec"].get("schedulingGates") or ()]


def pool_spec(cpu: str = "1") -> dict[str, Any]:
    return {
        "runtimeClassName": "flox",
        "nodeSelector": {POOL_LABEL: RUN},
        "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": RUN,
                         "effect": "NoSchedule"}],
        "containers": [{"name": "worker", "image": "flox/empty:1.0.0",
                        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}],
    }  # fmt: skip


def probe_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "probe-", "namespace": f"placement-{RUN}",
                     "annotations": INT8},
        "spec": pool_spec(),
    }  # fmt: skip


def deployment(name: str, replicas: int, annotations: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": f"placement-{RUN}"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {
                        names.ENVIRONMENT_ANNOTATION: ENV,
                        names.WORKLOAD_ANNOTATION: "int8-inference",
                        **(annotations or {}),
                    },
                },
                "spec": pool_spec(),
            },
        },
    }


@pytest.fixture(scope="module")
def placement(cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Placement]:
    logs = tmp_path_factory.mktemp("placement")
    kubectl = Kubectl(cluster.kubeconfig)
    kubectl.apply(crd_yaml())
    namespace, lease_namespace = f"placement-{RUN}", f"placement-lease-{RUN}"
    for ns, labels in ((namespace, f"{names.INJECT_LABEL}=true"), (lease_namespace, None)):
        kubectl.run("create", "namespace", ns)
        kubectl.run("label", "namespace", ns, f"{SCOPE_LABEL}={RUN}",
                    *([labels] if labels else []))  # fmt: skip
    taint = [{"key": POOL_LABEL, "value": RUN, "effect": "NoSchedule"}]
    vnni = cluster.add_nodes("m6i.xlarge", 2, labels={POOL_LABEL: RUN}, taints=taint)
    avx2 = cluster.add_nodes("m4.xlarge", 2, labels={POOL_LABEL: RUN}, taints=taint)
    certs = write_serving_certs(logs / "tls")
    (port,) = free_ports(1)
    webhook_log = logs / "webhook.log"
    webhook = subprocess.Popen(
        [sys.executable, "-m", "flox_isa.cli", "webhook", "--host", "127.0.0.1",
         "--port", str(port), "--tls-cert", str(certs.cert_path),
         "--tls-key", str(certs.key_path), "--kubeconfig", str(cluster.kubeconfig),
         "--namespace", lease_namespace, "--placement-lease-duration", str(LEASE_SECONDS)],
        stdout=webhook_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    name = f"flox-isa-placement-{RUN}"
    registration = webhook_configuration(
        name, f"https://127.0.0.1:{port}", certs.ca_pem, namespace_labels={SCOPE_LABEL: RUN}
    )
    kubectl.apply(registration)
    state = Placement(cluster, kubectl, namespace, lease_namespace, logs, vnni, avx2)
    try:
        wait_until("the webhook to pin pods", lambda: _pins(kubectl), timeout=60)
        state.start_operator()
        yield state
    finally:
        state.stop_operator()
        kubectl.run("delete", "mutatingwebhookconfiguration", name, check=False)
        webhook.terminate()
        webhook.wait(timeout=20)
        for ns in (namespace, lease_namespace):
            kubectl.run("delete", "namespace", ns, "--wait=false", check=False)
        cluster.delete_nodes(vnni + avx2)
        print(webhook_log.read_text()[-3000:])


def dry_run(kubectl: Kubectl, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as admission leaves it (a server-side dry-run create)."""
    out = kubectl.run("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod))
    created: dict[str, Any] = json.loads(out)
    return created


def _pins(kubectl: Kubectl) -> bool:
    try:
        pod = dry_run(kubectl, probe_pod())
    except (AssertionError, ValueError):
        return False
    return bool((pod["metadata"].get("labels") or {}).get(names.VARIANT_LABEL))


@pytest.fixture
def clean(placement: Placement) -> Iterator[Placement]:
    yield placement
    placement.kubectl.run("delete", "deployments,pods", "--all", "-n", placement.namespace,
                          "--grace-period=0", "--wait=true", check=False)  # fmt: skip
    wait_until("the pool's pods to be gone", lambda: not placement.pods("!nothing"), timeout=90)
    if placement.operator is None or placement.operator.poll() is not None:
        placement.start_operator()


def by_variant(pods: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in pods:
        variant = (pod["metadata"].get("labels") or {}).get(names.VARIANT_LABEL, "-")
        counts[variant] = counts.get(variant, 0) + 1
    return counts


def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p.get("status", {}).get("phase") == "Running"]


def assert_on_nodes_with_their_instructions(placement: Placement, pods: list[Any]) -> None:
    for pod in pods:
        variant = pod["metadata"]["labels"][names.VARIANT_LABEL]
        node = pod["spec"]["nodeName"]
        allowed = (
            placement.vnni_nodes if variant == VNNI else placement.vnni_nodes + placement.avx2_nodes
        )
        assert node in allowed, (pod["metadata"]["name"], variant, node)
        assert pod["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-{variant}"


def test_a_deployment_larger_than_the_best_pool_runs_whole_best_pool_first(
    clean: Placement,
) -> None:
    clean.kubectl.apply(deployment("big", 10))
    pods = clean.settle("app=big", "10 pods Running", lambda p: len(running(p)) == 10)
    assert by_variant(pods) == {VNNI: 2 * PER_NODE, AVX2: 10 - 2 * PER_NODE}
    assert_on_nodes_with_their_instructions(clean, pods)
    spilled = [p for p in pods if p["metadata"]["labels"][names.VARIANT_LABEL] == AVX2]
    # Both variants above avx2 for int8 (avx512vnni 85, avx512 52) run on the full VNNI nodes.
    full = f"{VNNI},avx512"
    assert all(p["metadata"]["annotations"][names.SPILLED_FROM_ANNOTATION] == full for p in spilled)


def test_a_busy_best_pool_spills_to_the_next_variant(clean: Placement) -> None:
    for node in clean.vnni_nodes:  # another team's pods, not opted in, fill the VNNI nodes
        busy = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"busy-{node}"[:60], "namespace": clean.namespace,
                             "labels": {names.INJECT_LABEL: "false", "app": "busy"}},
                "spec": {**pool_spec("3"), "nodeName": node}}  # fmt: skip
        clean.kubectl.apply(busy)
    clean.kubectl.apply(deployment("spill", 3))
    pods = clean.settle("app=spill", "3 pods Running", lambda p: len(running(p)) == 3)
    assert by_variant(pods) == {AVX2: 3}


def test_wait_pins_the_best_variant_and_leaves_the_rest_unschedulable(clean: Placement) -> None:
    clean.kubectl.apply(deployment("wait", 8, {names.WHEN_FULL_ANNOTATION: "wait"}))

    def settled(pods: list[dict[str, Any]]) -> bool:
        unschedulable = [p for p in pods if _unschedulable(p)]
        return len(running(pods)) == 6 and len(unschedulable) == 2

    pods = clean.settle("app=wait", "6 Running and 2 Unschedulable", settled)
    assert by_variant(pods) == {VNNI: 8}
    assert all(not gates(p) for p in pods)  # visible to an autoscaler: Unschedulable, not gated


def _unschedulable(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        for c in pod.get("status", {}).get("conditions") or ()
    )


def test_a_scale_down_removes_the_spilled_pods_first(clean: Placement) -> None:
    clean.kubectl.apply(deployment("scale", 8))
    clean.settle("app=scale", "8 Running", lambda p: len(running(p)) == 8)
    clean.kubectl.run("scale", "deployment/scale", "-n", clean.namespace, "--replicas=6")
    pods = clean.settle("app=scale", "6 pods left", lambda p: len(p) == 6, timeout=60)
    assert by_variant(pods) == {VNNI: 6}


def test_a_rollout_ends_all_running_and_a_scale_down_then_removes_spilled_pods_first(
    clean: Placement,
) -> None:
    clean.kubectl.apply(deployment("roll", 8))  # maxSurge 25%: 2 surge pods at a time
    clean.settle("app=roll", "8 Running", lambda p: len(running(p)) == 8)
    clean.kubectl.run("patch", "deployment", "roll", "-n", clean.namespace, "--type=merge", "-p",
                      '{"spec": {"template": {"metadata": {"labels": {"rev": "2"}}}}}')  # fmt: skip
    # Old pods hold their room until they are gone: the new ones never over-commit.
    pods = clean.settle("app=roll,rev=2", "8 new pods Running", lambda p: len(running(p)) == 8
                        and len(clean.pods("app=roll")) == 8, timeout=180)  # fmt: skip
    assert_on_nodes_with_their_instructions(clean, pods)
    best = by_variant(pods).get(VNNI, 0)
    assert best >= 1, by_variant(pods)
    clean.kubectl.run("scale", "deployment/roll", "-n", clean.namespace, "--replicas=6")
    left = clean.settle("app=roll", "6 pods left", lambda p: len(p) == 6, timeout=60)
    assert by_variant(left).get(VNNI, 0) == min(best, 6), (by_variant(pods), by_variant(left))


def test_another_controllers_gate_holds_the_pod_until_it_is_removed(clean: Placement) -> None:
    pod = {**probe_pod(), "metadata": {"name": "held", "namespace": clean.namespace,
           "annotations": INT8}}  # fmt: skip
    pod["spec"] = {**pool_spec(), "schedulingGates": [{"name": "example.com/hold"}]}
    clean.kubectl.apply(pod)
    created = clean.kubectl.json("get", "pod", "held", "-n", clean.namespace)
    assert gates(created) == ["example.com/hold", names.PLACEMENT_GATE]
    explained = subprocess.run(
        [sys.executable, "-m", "flox_isa.cli", "explain", "pod", "held", "-n", clean.namespace,
         "--kubeconfig", str(clean.cluster.kubeconfig), "-o", "json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    placement = json.loads(explained.stdout)["placement"]
    assert placement["otherGates"] == ["example.com/hold"]
    assert placement["decision"]["variant"] == VNNI
    assert placement["decision"]["node"] in clean.vnni_nodes
    assert placement["room"][VNNI] == 2 * PER_NODE  # the pool is empty
    clean.kubectl.run("patch", "pod", "held", "-n", clean.namespace, "--type=json", "-p",
                      '[{"op": "remove", "path": "/spec/schedulingGates/0"}]')  # fmt: skip

    got = clean.pod_once(
        "held", "the pod placed", lambda pod: not gates(pod) and bool(pod["spec"].get("nodeName"))
    )
    assert got["metadata"]["labels"][names.VARIANT_LABEL] == VNNI


def test_without_the_placement_loop_pods_are_pinned_at_admission(clean: Placement) -> None:
    clean.stop_operator()  # a clean exit releases the Lease: the webhook stops gating
    clean.kubectl.apply(deployment("pinned", 2))
    pods = clean.settle("app=pinned", "2 Running", lambda p: len(running(p)) == 2)
    assert by_variant(pods) == {VNNI: 2}
    assert all("auto:" in p["metadata"]["annotations"][names.REASON_ANNOTATION] for p in pods)


def test_pods_gated_past_the_maximum_age_are_placed_as_admission_would(clean: Placement) -> None:
    clean.stop_operator()
    # Gated while no controller ran (here: gated at creation, which the webhook leaves as is).
    held = {**probe_pod(), "metadata": {"name": "old", "namespace": clean.namespace,
            "annotations": INT8}}  # fmt: skip
    held["spec"] = {**pool_spec(), "schedulingGates": [{"name": names.PLACEMENT_GATE}]}
    clean.kubectl.apply(held)
    # Older than the maximum age before the controller first sees it (creationTimestamp has
    # whole seconds): a controller quick to start would otherwise place it as any other.
    time.sleep(2.5)
    clean.start_operator("--max-gate-age", "1")

    got = clean.pod_once("old", "the old gated pod placed", lambda pod: not gates(pod))
    assert "maximum gate age" in got["metadata"]["annotations"][names.REASON_ANNOTATION]


def test_ungate_all_releases_every_gated_pod(clean: Placement) -> None:
    clean.stop_operator()
    for index in range(3):
        pod = {**probe_pod(), "metadata": {"name": f"gated-{index}", "namespace": clean.namespace,
               "annotations": INT8}}  # fmt: skip
        pod["spec"] = {**pool_spec(), "schedulingGates": [{"name": names.PLACEMENT_GATE}]}
        clean.kubectl.apply(pod)
    done = subprocess.run(
        [sys.executable, "-m", "flox_isa.cli", "ungate", "--all",
         "--kubeconfig", str(clean.cluster.kubeconfig), "--output", "json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    pods = clean.pods(f"!{POOL_LABEL}")
    assert not [p for p in pods if names.PLACEMENT_GATE in gates(p)]
    assert by_variant([p for p in pods if p["metadata"]["name"].startswith("gated-")]) == {VNNI: 3}


def test_a_large_scale_up_never_over_commits_the_best_variant(clean: Placement) -> None:
    replicas = 500
    taint = [{"key": POOL_LABEL, "value": RUN, "effect": "NoSchedule"}]
    extra_vnni = clean.cluster.add_nodes("m6i.2xlarge", 8, labels={POOL_LABEL: RUN}, taints=taint)
    extra_avx2 = clean.cluster.add_nodes("m4.2xlarge", 10, labels={POOL_LABEL: RUN}, taints=taint)
    try:
        # Quarter-CPU pods: 15 on a 4-vCPU node (3920m), 31 on an 8-vCPU one (7910m).
        vnni_slots = 2 * 15 + 8 * 31
        burst = deployment("burst", replicas)
        burst["spec"]["template"]["spec"] = pool_spec("250m")
        clean.kubectl.apply(burst)
        pods = clean.settle(
            "app=burst", f"{replicas} Running", lambda p: len(running(p)) == replicas, 400
        )
        assert by_variant(pods) == {VNNI: vnni_slots, AVX2: replicas - vnni_slots}
    finally:
        clean.kubectl.run("delete", "deployment", "burst", "-n", clean.namespace, check=False)
        wait_until("the burst's pods gone", lambda: not clean.pods("app=burst"), timeout=180)
        clean.cluster.delete_nodes(extra_vnni + extra_avx2)


def test_recovery_recreates_pods_the_scheduler_cannot_bind_where_another_variant_has_room(
    clean: Placement,
) -> None:
    # Required anti-affinity (one pod per node) is not modelled: the controller sees room
    # for all 4 on the two VNNI nodes, the scheduler binds 2 and leaves 2 Unschedulable.
    clean.start_operator("--recover-unschedulable-after", "3")
    try:
        spread = deployment("spread", 4)
        spread["spec"]["template"]["spec"]["affinity"] = {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "spread"}},
                "topologyKey": "kubernetes.io/hostname"}]}}  # fmt: skip
        clean.kubectl.apply(spread)
        pods = clean.settle("app=spread", "4 Running", lambda p: len(running(p)) == 4, 120)
        assert by_variant(pods) == {VNNI: 2, AVX2: 2}
        assert_on_nodes_with_their_instructions(clean, pods)
        reason = "--field-selector=reason=RecreatedUnschedulable"

        def recreated_event() -> bool:  # posted aggregated, every few seconds
            events = clean.kubectl.json("get", "events", "-n", clean.namespace, reason)
            messages = [e["message"] for e in events["items"]]
            wanted = (f"Unschedulable on {VNNI}", f"{AVX2} has room")
            return any(all(w in m for w in wanted) for m in messages)

        wait_until("the RecreatedUnschedulable Event", recreated_event, timeout=30)
    finally:
        clean.start_operator()

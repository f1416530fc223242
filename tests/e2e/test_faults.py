"""The essential faults of the fault suite (bench/faults.py prints their figures), asserting
outcomes only: what the webhook answers and what the operator converges to afterwards.

- The kube-apiserver is stopped and started again: the webhook's node watch and the
  operator's watches (nodes, TicketWorkers) come back by themselves, so a relabel and a
  scale made *after* the restart reach the webhook's decisions and the operator's plan.
- The operator leader dies in the middle of a fleet change (frozen before the change,
  so it cannot act on it, then killed without releasing its Lease): the standby leads and
  plans on the new fleet.

Each test works on nodes of its own pool label and in namespaces of its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from flox_isa.devcluster.cluster import free_ports
from flox_isa.isa import names
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.registration import webhook_configuration
from tests.e2e import test_operator
from tests.e2e.conftest import DevCluster, NodeFactory
from tests.e2e.polling import wait_until
from tests.e2e.test_operator import (
    POOL,
    Kubectl,
    Operators,
    assert_pods_run_where_their_variant_can,
    expected_split,
    lease_holder,
    pool_template,
    replicas_by_variant,
    ticketworker,
)

pytestmark = pytest.mark.e2e

# test_operator's fixtures: the CRD applied once, operator subprocesses, a namespace.
kubectl = test_operator.kubectl
operators = test_operator.operators
namespace = test_operator.namespace

SCOPE_LABEL = "e2e.flox.dev/faults-run"
AVX512 = names.NFD_CPUID_PREFIX + "AVX512F"


def _probe(pool: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"probe-{uuid.uuid4().hex[:6]}",
            "annotations": {names.ENVIRONMENT_ANNOTATION: "acme/fault-probe",
                            names.WORKLOAD_ANNOTATION: "fp32-inference"},
        },
        "spec": {"nodeSelector": {POOL: pool},
                 "containers": [{"name": "c", "image": "flox/empty:1.0.0"}]},
    }  # fmt: skip


class Webhook:
    """`flox-isa webhook` registered for one opted-in namespace; `variant(pool)` is what
    the API server's admission chain answers for a pod on that pool (a dry run)."""

    def __init__(self, core: Any, namespace: str) -> None:
        self.core, self.namespace = core, namespace

    def variant(self, pool: str) -> str:
        """The variant label of the admitted pod ("" if the API server refused it)."""
        try:
            pod: Any = self.core.create_namespaced_pod(self.namespace, _probe(pool), dry_run="All")
        except (ApiException, HTTPError):  # not ready yet, or a connection of before a restart
            return ""
        return str((pod.metadata.labels or {}).get(names.VARIANT_LABEL) or "")


@pytest.fixture
def webhook(cluster: DevCluster, core: Any, tmp_path: Path) -> Iterator[Webhook]:
    run = f"r{uuid.uuid4().hex[:6]}"
    certs = write_serving_certs(tmp_path / "tls")
    (port,) = free_ports(1)
    log = tmp_path / "webhook.log"
    command = [
        sys.executable, "-m", "flox_isa.cli", "webhook", "--host", "127.0.0.1",
        "--port", str(port), "--tls-cert", str(certs.cert_path),
        "--tls-key", str(certs.key_path), "--kubeconfig", str(cluster.kubeconfig),
        "--no-late-binding",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    name = f"flox-isa-faults-{run}"
    ns = f"faults-{run}"
    registrations: Any = client.AdmissionregistrationV1Api(core.api_client)
    config = webhook_configuration(
        name, f"https://127.0.0.1:{port}", certs.ca_pem, namespace_labels={SCOPE_LABEL: run}
    )
    try:
        registrations.create_mutating_webhook_configuration(config)
        labels = {SCOPE_LABEL: run, names.INJECT_LABEL: "true"}
        core.create_namespace({"metadata": {"name": ns, "labels": labels}})
        yield Webhook(core, ns)
    finally:
        registrations.delete_mutating_webhook_configuration(name)
        core.delete_namespace(ns)
        process.terminate()
        process.wait(timeout=20)
        print(log.read_text()[-4000:])  # shown by pytest for a failed test


def test_after_a_kube_apiserver_restart_the_webhook_and_the_operator_see_the_fleet_again(  # noqa: PLR0917 - fixtures
    cluster: DevCluster,
    core: Any,
    kubectl: Kubectl,
    operators: Operators,
    namespace: str,
    nodes: NodeFactory,
    webhook: Webhook,
) -> None:
    pool = namespace
    avx512 = nodes.add("m6i.xlarge", 2, labels={POOL: pool})
    template = pool_template(pool)
    # A Lease far longer than the restart: the same leader rides it out, so what must
    # recover is its watches (not a handover).
    leader = operators.start(namespace, lease="restart", lease_seconds=120)
    wait_until("a leader", lambda: f"-{leader.pid}-" in lease_holder(kubectl, namespace, "restart"))
    kubectl.apply(ticketworker(namespace, "restart", 4, template=template))
    first = expected_split(kubectl, 4, "int8-inference", template["spec"])
    wait_until(
        "the first plan", lambda: replicas_by_variant(kubectl, namespace, "restart") == first
    )
    wait_until("the webhook to pick AVX-512", lambda: webhook.variant(pool) == "avx512", timeout=30)

    cluster.restart_apiserver()

    # Changes made after the restart: only watches that came back can see them.
    for node in avx512:
        core.patch_node(node, {"metadata": {"labels": {AVX512: None}}})
    kubectl.run("scale", "tw/restart", "-n", namespace, "--replicas=6")
    wait_until(
        "the webhook to see the relabel", lambda: webhook.variant(pool) == "avx2", timeout=90
    )
    # The plan's own pods are not load on its room (owner): as the operator counts.
    after = expected_split(kubectl, 6, "int8-inference", template["spec"],
                           owner=(namespace, "restart"))  # fmt: skip
    assert set(after) != set(first), (first, after)  # the relabel changes the plan
    wait_until(
        "the operator's new plan",
        lambda: replicas_by_variant(kubectl, namespace, "restart") == after,
        timeout=90,
    )
    assert f"-{leader.pid}-" in lease_holder(kubectl, namespace, "restart")
    assert leader.poll() is None
    assert_pods_run_where_their_variant_can(kubectl, namespace, "restart", 6)


def test_the_leader_killed_mid_fleet_change_the_standby_leads_and_plans_the_new_fleet(
    kubectl: Kubectl, operators: Operators, namespace: str, nodes: NodeFactory
) -> None:
    template = pool_template(namespace)
    nodes.add("m4.xlarge", 2, labels={POOL: namespace})
    first = operators.start(namespace, lease="fleet")
    wait_until("a leader", lambda: f"-{first.pid}-" in lease_holder(kubectl, namespace, "fleet"))
    second = operators.start(namespace, lease="fleet")
    # The default spec.replan (minutes): the new leader must apply the fleet change made
    # during the handover at once, from the status.planBasis its predecessor published.
    kubectl.apply(ticketworker(namespace, "fleet", 6, template=template))
    before = expected_split(kubectl, 6, "int8-inference", template["spec"])
    wait_until("the first plan", lambda: replicas_by_variant(kubectl, namespace, "fleet") == before)

    first.send_signal(signal.SIGSTOP)  # it holds the Lease but can no longer act
    try:
        nodes.add("c8g.xlarge", 2, labels={POOL: namespace})  # Graviton4 (SVE2) joins
        after = expected_split(kubectl, 6, "int8-inference", template["spec"],
                               owner=(namespace, "fleet"))  # its own pods are not load  # fmt: skip
        assert set(after) != set(before), (before, after)
        assert replicas_by_variant(kubectl, namespace, "fleet") == before  # nobody acted
        first.send_signal(signal.SIGKILL)  # no Lease release: the standby waits for expiry
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
    wait_until(
        "the standby to lead",
        lambda: f"-{second.pid}-" in lease_holder(kubectl, namespace, "fleet"),
        timeout=test_operator.LEASE_SECONDS * 5,
    )
    wait_until(
        "the plan for the new fleet",
        lambda: replicas_by_variant(kubectl, namespace, "fleet") == after,
        timeout=60,
    )
    assert sorted(test_operator.deployments(kubectl, namespace, "fleet")) == sorted(
        f"fleet-{variant}" for variant in after
    )  # no duplicate, no orphan
    assert second.poll() is None
    assert_pods_run_where_their_variant_can(kubectl, namespace, "fleet", 6)

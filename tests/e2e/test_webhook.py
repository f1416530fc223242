"""The webhook on the real control plane: the API server calls it, the scheduler obeys it.

`flox-isa webhook` runs as a subprocess over TLS (a CA made here), registered with a
URL client config by `flox_isa.webhook.registration` (the chart's two entries: pod
opt-in on /mutate, namespace opt-in on /mutate/namespace-opt-in). It only selects
namespaces carrying this module's run label, so other tests sharing the session
cluster are unaffected. The webhook runs as a ServiceAccount that may only
get/list/watch nodes, the chart's RBAC: namespace opt-in must work without reading
Namespaces. API objects are held as Any (the client types every field Optional), as
in test_devcluster.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from flox_isa.cli import main
from flox_isa.devcluster.cluster import free_ports
from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.webhook.certs import write_serving_certs
from flox_isa.webhook.registration import (
    NAMESPACE_OPT_IN_WEBHOOK,
    webhook_configuration,
)
from tests.e2e.conftest import DevCluster
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.e2e

RUN = f"r{uuid.uuid4().hex[:5]}"  # never all digits or "1e5...": YAML would read a number
SCOPE_LABEL = "e2e.flox.dev/webhook-run"
ENV = "yourorg/ticket-processor"
CATALOG = default_catalog()
OWN_NAMESPACE = f"flox-isa-system-{RUN}"
RBAC_NAMESPACE = f"wh-rbac-{RUN}"
# The chart's webhook ClusterRole (charts/flox-isa/templates/webhook/rbac.yaml).
NODES_ONLY = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
# ...and its Role (templates/webhook/rbac.yaml): the placement controller's Lease, by name.
PLACEMENT_LEASE_ONLY = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                         "resourceNames": [names.PLACEMENT_LEASE], "verbs": ["get"]}]  # fmt: skip


@dataclass
class Webhook:
    url: str
    ca: Path
    log: Path
    kubectl: Path | None
    kubeconfig: Path
    metrics_url: str

    def get(self, path: str) -> tuple[int, str]:
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(self.url + path, context=context, timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()
        except OSError:
            return 0, ""


def _kubectl() -> Path | None:
    try:
        from flox_isa.devcluster.build import bin_dir  # noqa: PLC0415 - optional helper

        candidate = bin_dir() / "kubectl"
        if candidate.is_file():
            return candidate
    except Exception:  # no pinned binaries: fall back to PATH
        pass
    found = shutil.which("kubectl")
    return Path(found) if found else None


def _nodes_only_kubeconfig(cluster: DevCluster, directory: Path) -> Path:
    """A kubeconfig for a ServiceAccount bound to NODES_ONLY (cleaned up by the caller)."""
    name = f"flox-isa-webhook-{RUN}"
    with cluster.api_client() as api:
        core: Any = client.CoreV1Api(api)
        rbac: Any = client.RbacAuthorizationV1Api(api)
        core.create_namespace({"metadata": {"name": RBAC_NAMESPACE}})
        core.create_namespaced_service_account(RBAC_NAMESPACE, {"metadata": {"name": name}})
        rbac.create_cluster_role({"metadata": {"name": name}, "rules": NODES_ONLY})
        rbac.create_cluster_role_binding({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": RBAC_NAMESPACE}],
        })  # fmt: skip
        rbac.create_namespaced_role(
            RBAC_NAMESPACE, {"metadata": {"name": name}, "rules": PLACEMENT_LEASE_ONLY}
        )
        rbac.create_namespaced_role_binding(RBAC_NAMESPACE, {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": RBAC_NAMESPACE}],
        })  # fmt: skip
        token = core.create_namespaced_service_account_token(
            name, RBAC_NAMESPACE, client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        ).status.token  # fmt: skip
    return cluster.token_kubeconfig(name, token, directory / "webhook.kubeconfig")


def _delete_nodes_only_access(cluster: DevCluster) -> None:
    name = f"flox-isa-webhook-{RUN}"
    with cluster.api_client() as api:
        rbac: Any = client.RbacAuthorizationV1Api(api)
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
        client.CoreV1Api(api).delete_namespace(RBAC_NAMESPACE)


@pytest.fixture(scope="module")
def webhook(cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    directory = tmp_path_factory.mktemp("webhook")
    certs = write_serving_certs(directory / "tls")
    port, metrics_port = free_ports(2)
    log = directory / "webhook.log"
    kubeconfig = _nodes_only_kubeconfig(cluster, directory)
    command = [
        sys.executable, "-m", "flox_isa.cli", "webhook",
        "--host", "127.0.0.1", "--port", str(port),
        "--tls-cert", str(certs.cert_path), "--tls-key", str(certs.key_path),
        "--kubeconfig", str(kubeconfig), "--namespace", OWN_NAMESPACE,
        # No placement controller runs there: the Lease is absent, pods are pinned at once.
        "--placement-lease-namespace", RBAC_NAMESPACE,
        "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    hook = Webhook(
        f"https://127.0.0.1:{port}", certs.ca_path, log, _kubectl(), cluster.kubeconfig,
        f"http://127.0.0.1:{metrics_port}",
    )  # fmt: skip
    name = f"flox-isa-e2e-{RUN}"
    # No own_namespace: the API server would then never call for OWN_NAMESPACE, and
    # test_the_webhooks_own_namespace_is_never_touched checks the webhook's own refusal.
    configuration = webhook_configuration(
        name, hook.url, certs.ca_pem, namespace_labels={SCOPE_LABEL: RUN}
    )
    with cluster.api_client() as api:
        registrations: Any = client.AdmissionregistrationV1Api(api)
        core: Any = client.CoreV1Api(api)
        try:
            wait_until("the webhook's /readyz", lambda: hook.get("/readyz")[0] == 200, timeout=60)
            registrations.create_mutating_webhook_configuration(configuration)
            _wait_until_effective(core)
            yield hook
        finally:
            registrations.delete_mutating_webhook_configuration(name)
            process.terminate()
            process.wait(timeout=20)
            _delete_nodes_only_access(cluster)
            print(log.read_text()[-4000:])  # shown by pytest for a failed test


def _wait_until_effective(core: Any) -> None:
    """The API server loads webhook configurations asynchronously: probe with dry runs."""
    probe_ns = f"wh-probe-{RUN}"
    core.create_namespace(_namespace(probe_ns, inject=True))
    try:

        def mutated() -> bool:
            pod: Any = core.create_namespaced_pod(probe_ns, _pod("probe"), dry_run="All")
            return bool((pod.metadata.labels or {}).get(names.VARIANT_LABEL))

        wait_until("the webhook configuration to take effect", mutated, timeout=30)
    finally:
        core.delete_namespace(probe_ns)


def _namespace(name: str, *, inject: bool) -> dict[str, Any]:
    labels = {SCOPE_LABEL: RUN}
    if inject:
        labels[names.INJECT_LABEL] = "true"
    return {"metadata": {"name": name, "labels": labels}}


def _pod(
    name: str,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    env: str | None = ENV,
) -> dict[str, Any]:
    meta_annotations = dict(annotations or {})
    if env is not None:
        meta_annotations[names.ENVIRONMENT_ANNOTATION] = env
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": meta_annotations},
        "spec": {
            "containers": [{"name": "worker", "image": "ghcr.io/flox/flox:latest"}],
            **(spec or {}),
        },
    }


def _template(app: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A pod template (no apiVersion/kind) naming the base environment."""
    pod = _pod("", spec=spec)
    return {
        "metadata": {"labels": {"app": app}, "annotations": pod["metadata"]["annotations"]},
        "spec": pod["spec"],
    }


@pytest.fixture
def make_namespace(webhook: Webhook, core: Any) -> Iterator[Callable[[bool], str]]:
    created: list[str] = []

    def make(inject: bool) -> str:
        name = f"wh-{RUN}-{uuid.uuid4().hex[:6]}"
        core.create_namespace(_namespace(name, inject=inject))
        created.append(name)
        return name

    yield make
    for name in created:
        core.delete_namespace(name)


def _scheduled(core: Any, namespace: str, name: str) -> Any:
    return wait_until(
        f"pod {namespace}/{name} to be scheduled",
        lambda: (p := core.read_namespaced_pod(name, namespace)).spec.node_name and p,
    )


def _assert_on_right_node(core: Any, pod: Any, variant: str, instance_types: set[str]) -> None:
    node = core.read_node(pod.spec.node_name)
    labels = node.metadata.labels
    assert labels[names.INSTANCE_TYPE_LABEL] in instance_types, labels[names.INSTANCE_TYPE_LABEL]
    chosen = CATALOG.get(variant)
    assert chosen is not None
    assert all(labels.get(names.cpuid_label(f)) == "true" for f in chosen.flags)
    assert labels[names.ARCH_LABEL] == chosen.arch


VNNI_TYPES = {"m5n.xlarge", "m6i.xlarge", "m7i.xlarge"}
ARMV9_TYPES = {"c8g.xlarge"}  # SVE2: Graviton4, not Graviton3


def test_a_labelled_pod_gets_the_best_variant_and_lands_on_a_node_with_it(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(False)
    body = _pod(
        "int8",
        {names.WORKLOAD_ANNOTATION: "int8-inference", "team": "support"},
        {names.INJECT_LABEL: "true", "app": "worker"},
    )
    core.create_namespaced_pod(namespace, body)
    pod = _scheduled(core, namespace, "int8")
    meta = pod.metadata
    assert meta.annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512vnni"
    assert meta.annotations[names.BASE_ENVIRONMENT_ANNOTATION] == ENV
    assert meta.annotations["team"] == "support" and meta.labels["app"] == "worker"
    assert "avx512vnni 85 > avx512 52" in meta.annotations[names.REASON_ANNOTATION]
    assert meta.labels[names.VARIANT_LABEL] == "avx512vnni"
    assert pod.spec.node_selector[names.cpuid_label("AVX512VNNI")] == "true"


def test_pods_new_only_in_their_environments_name_each_get_their_own_through_the_api_server(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    # The first is decided; the others get its answer with their names spliced into the
    # encoded patch (names of three lengths: the patch's padding differs for each), which
    # the real API server must take as the JSONPatch it is.
    namespace = make_namespace(False)
    environments = ["acme/b", "acme/bb", "acme/bbb", "acme/bbbb"]
    for at, environment in enumerate(environments):
        body = _pod(f"team-{at}", {names.WORKLOAD_ANNOTATION: "int8-inference"},
                    {names.INJECT_LABEL: "true"}, env=environment)  # fmt: skip
        core.create_namespaced_pod(namespace, body)
    for at, environment in enumerate(environments):
        pod = _scheduled(core, namespace, f"team-{at}")
        annotations = pod.metadata.annotations
        assert annotations[names.ENVIRONMENT_ANNOTATION] == f"{environment}-avx512vnni"
        assert annotations[names.BASE_ENVIRONMENT_ANNOTATION] == environment
        assert "avx512vnni 85 > avx512 52" in annotations[names.REASON_ANNOTATION]
        assert pod.metadata.labels[names.VARIANT_LABEL] == "avx512vnni"
        assert pod.spec.node_selector[names.cpuid_label("AVX512VNNI")] == "true"
    _assert_on_right_node(core, pod, "avx512vnni", VNNI_TYPES)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def test_thread_variables_match_each_containers_cpus_and_the_users_are_kept(
    make_namespace: Callable[[bool], str],
    core: Any,
    cluster: DevCluster,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = make_namespace(False)
    containers = [
        {"name": "worker", "image": "ghcr.io/flox/flox:latest",
         "resources": {"limits": {"cpu": "1500m"}, "requests": {"cpu": "1"}}},
        {"name": "own", "image": "ghcr.io/flox/flox:latest",
         "env": [{"name": "OMP_NUM_THREADS", "value": "7"}],
         "resources": {"requests": {"cpu": "500m"}}},
        {"name": "sidecar", "image": "ghcr.io/flox/flox:latest",
         "env": [{"name": "A", "value": "x"}], "resources": {"requests": {"cpu": "1500m"}}},
    ]  # fmt: skip
    body = _pod("threads", labels={names.INJECT_LABEL: "true"}, spec={"containers": containers})
    core.create_namespaced_pod(namespace, body)
    pod = core.read_namespaced_pod("threads", namespace)
    env = {c.name: {e.name: e.value for e in c.env or ()} for c in pod.spec.containers}
    assert env == {
        "worker": dict.fromkeys(THREAD_VARS, "1"),  # floor(1.5): 2 threads would throttle
        "own": {"OMP_NUM_THREADS": "7"},
        "sidecar": {"A": "x", **dict.fromkeys(THREAD_VARS, "1")},
    }
    reason = pod.metadata.annotations[names.REASON_ANNOTATION]
    assert "worker=1 (floor of CPU limit 1500m)" in reason
    assert "own keeps its own" in reason
    off = _pod(
        "threads-off",
        {names.THREADS_ANNOTATION: "off"},
        {names.INJECT_LABEL: "true"},
        spec={"containers": containers[:1]},
    )
    core.create_namespaced_pod(namespace, off)
    assert not core.read_namespaced_pod("threads-off", namespace).spec.containers[0].env
    # `flox-isa doctor --pod` reads both through the kubeconfig (the static part).
    _scheduled(core, namespace, "threads")
    capsys.readouterr()
    for name, expected in (("threads", ["ok", "ok", "ok"]), ("threads-off", ["ok"])):
        args = ["doctor", "--pod", f"{namespace}/{name}", "--kubeconfig", str(cluster.kubeconfig)]
        main([*args, "--output", "json"])
        found = json.loads(capsys.readouterr().out)["findings"]
        assert [f["status"] for f in found if f["check"] == "container"] == expected, found
        assert any(f["check"] == "node" for f in found)
    assert main(["doctor", "--pod", f"{namespace}/nope", "--kubeconfig",
                 str(cluster.kubeconfig)]) == 2  # fmt: skip
    assert f"pod {namespace}/nope: 404" in capsys.readouterr().err


def test_a_deployment_in_an_opted_in_namespace(
    make_namespace: Callable[[bool], str], core: Any, cluster: DevCluster
) -> None:
    namespace = make_namespace(True)
    template = _template("summarizer", {"nodeSelector": {names.ARCH_LABEL: "arm64"}})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "summarizer"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "summarizer"}},
            "template": template,
        },
    }
    with cluster.api_client() as api:
        apps: Any = client.AppsV1Api(api)
        apps.create_namespaced_deployment(namespace, deployment)

    def all_scheduled() -> list[Any]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=summarizer").items
        return pods if len(pods) == 4 and all(p.spec.node_name for p in pods) else []

    for pod in wait_until("4 scheduled summarizer pods", all_scheduled):
        assert pod.metadata.annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-armv9"
        assert pod.metadata.labels[names.VARIANT_LABEL] == "armv9"
        _assert_on_right_node(core, pod, "armv9", ARMV9_TYPES)


def test_pods_that_did_not_opt_in_are_untouched(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(False)
    created = core.create_namespaced_pod(namespace, _pod("plain"))
    assert created.metadata.annotations == {names.ENVIRONMENT_ANNOTATION: ENV}
    assert not created.spec.node_selector and not created.metadata.labels


def test_a_daemonset_is_left_alone(
    make_namespace: Callable[[bool], str], core: Any, cluster: DevCluster
) -> None:
    namespace = make_namespace(True)
    template = _template("agent", {"nodeSelector": {names.INSTANCE_TYPE_LABEL: "m4.xlarge"}})
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template},
    }
    with cluster.api_client() as api:
        apps: Any = client.AppsV1Api(api)
        apps.create_namespaced_daemon_set(namespace, daemonset)
    pods = wait_until(
        "DaemonSet pods",
        lambda: core.list_namespaced_pod(namespace, label_selector="app=agent").items,
    )
    for pod in pods:
        assert pod.metadata.annotations[names.ENVIRONMENT_ANNOTATION] == ENV
        assert names.VARIANT_LABEL not in pod.metadata.labels
        assert names.cpuid_label("AVX2") not in (pod.spec.node_selector or {})


def _kubectl_create(hook: Webhook, namespace: str, body: dict[str, Any]) -> tuple[int, str]:
    if hook.kubectl is None:
        pytest.skip("no kubectl binary (pinned cache or PATH)")
    result = subprocess.run(
        [str(hook.kubectl), "--kubeconfig", str(hook.kubeconfig), "-n", namespace,
         "create", "-f", "-"],
        input=json.dumps(body), capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "KUBECONFIG": str(hook.kubeconfig)},
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_a_conflicting_guard_denial_reaches_kubectl(
    webhook: Webhook, make_namespace: Callable[[bool], str]
) -> None:
    namespace = make_namespace(True)
    body = _pod("confused", spec={"nodeSelector": {names.ARCH_LABEL: "arm64"}}, env=f"{ENV}-avx512")
    code, output = _kubectl_create(webhook, namespace, body)
    assert code != 0
    assert f'admission webhook "{NAMESPACE_OPT_IN_WEBHOOK}" denied the request' in output
    assert "flox-isa: avx512" in output
    assert "kubernetes.io/arch=arm64 but avx512 needs kubernetes.io/arch=amd64" in output


def test_no_eligible_node_warns_through_kubectl(
    webhook: Webhook, make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(True)
    body = _pod("lonely", spec={"nodeSelector": {"pool": "gpu-only"}})
    code, output = _kubectl_create(webhook, namespace, body)
    assert code == 0, output
    assert "Warning: flox-isa: no eligible node offers an allowed variant; pinned avx2" in output
    stored = core.read_namespaced_pod("lonely", namespace)
    assert stored.metadata.labels[names.VARIANT_LABEL] == "avx2"
    assert stored.spec.node_selector["pool"] == "gpu-only"


def test_a_pinned_generation_pod_runs_each_variants_own_generation(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(True)
    annotations = {
        names.WORKLOAD_ANNOTATION: "int8-inference",
        names.GENERATIONS_ANNOTATION: "avx2=4,avx512vnni=6",
    }
    core.create_namespaced_pod(namespace, _pod("pinned", annotations, env=f"{ENV}:3"))
    pod = _scheduled(core, namespace, "pinned")
    assert pod.metadata.annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512vnni:6"
    assert pod.metadata.annotations[names.BASE_ENVIRONMENT_ANNOTATION] == f"{ENV}:3"
    _assert_on_right_node(core, pod, "avx512vnni", VNNI_TYPES)
    # A pinned variant is guarded, its generation kept.
    core.create_namespaced_pod(namespace, _pod("guarded", env=f"{ENV}-avx512vnni:7"))
    guarded = _scheduled(core, namespace, "guarded")
    assert guarded.metadata.annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512vnni:7"
    _assert_on_right_node(core, guarded, "avx512vnni", VNNI_TYPES)


def test_a_pinned_base_without_generations_is_denied_through_kubectl(
    webhook: Webhook, make_namespace: Callable[[bool], str]
) -> None:
    namespace = make_namespace(True)
    code, output = _kubectl_create(webhook, namespace, _pod("unmapped", env=f"{ENV}:3"))
    assert code != 0
    assert f'admission webhook "{NAMESPACE_OPT_IN_WEBHOOK}" denied the request' in output
    assert f"{ENV}:3 pins a generation" in output
    assert "isa.flox.dev/generations: avx2=4,avx512vnni=6" in output


def test_bad_input_is_denied_with_what_is_allowed(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(True)
    body = _pod("typo", {names.WORKLOAD_ANNOTATION: "int4-inference"})
    with pytest.raises(client.ApiException) as denied:
        core.create_namespaced_pod(namespace, body)
    assert denied.value.status == 400
    message = json.loads(denied.value.body or "{}")["message"]
    assert "fp32-inference, int8-inference, bf16-training" in message


def test_dry_run_is_mutated_but_not_stored(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(True)
    body = _pod("dry", {names.WORKLOAD_ANNOTATION: "bf16-training"})
    answer = core.create_namespaced_pod(namespace, body, dry_run="All")
    assert answer.metadata.annotations[names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512bf16"
    assert core.list_namespaced_pod(namespace).items == []


def test_the_webhooks_own_namespace_is_never_touched(core: Any, webhook: Webhook) -> None:
    """Refused by name on both paths, even when the configuration does not exclude it."""
    core.create_namespace(_namespace(OWN_NAMESPACE, inject=True))
    try:
        for pod_name, labels in [("self", {names.INJECT_LABEL: "true"}), ("self-ns", {})]:
            created = core.create_namespaced_pod(OWN_NAMESPACE, _pod(pod_name, labels=labels))
            assert created.metadata.annotations == {names.ENVIRONMENT_ANNOTATION: ENV}
            assert names.VARIANT_LABEL not in (created.metadata.labels or {})
        _, metrics = webhook.get("/metrics")
        assert 'outcome="skipped",reason="own-namespace",variant=""} 2.0' in metrics
    finally:
        core.delete_namespace(OWN_NAMESPACE)


def test_a_pod_labelled_false_opts_out_of_its_namespace(
    make_namespace: Callable[[bool], str], core: Any
) -> None:
    namespace = make_namespace(True)
    created = core.create_namespaced_pod(
        namespace, _pod("out", labels={names.INJECT_LABEL: "false"})
    )
    assert created.metadata.annotations == {names.ENVIRONMENT_ANNOTATION: ENV}
    assert not created.spec.node_selector


def test_the_webhook_is_never_refused_by_its_nodes_only_rbac(webhook: Webhook) -> None:
    """Everything above ran as a ServiceAccount that may only get/list/watch nodes (and get
    the placement Lease), the chart's RBAC."""
    log = webhook.log.read_text()
    assert "forbidden" not in log.lower(), log[-2000:]


def test_metrics_count_decisions_and_the_inventory(
    webhook: Webhook, core: Any, make_namespace: Callable[[bool], str]
) -> None:
    namespace = make_namespace(True)
    core.create_namespaced_pod(namespace, _pod("counted"))
    status, text = webhook.get("/metrics")
    assert status == 200
    assert (
        'flox_isa_webhook_requests_total{outcome="patched",reason="auto",variant="avx512"}' in text
    )
    node_count = len(core.list_node().items)
    assert f"flox_isa_inventory_nodes {float(node_count)}" in text


def test_the_inventory_follows_nodes_joining_and_leaving(
    make_namespace: Callable[[bool], str], core: Any, nodes: Any
) -> None:
    """A node added after the webhook started is offered; once deleted, it is not."""
    namespace = make_namespace(True)
    pool = {"e2e.flox.dev/pool": f"join-{RUN}"}
    spec = {"nodeSelector": pool}
    before = core.create_namespaced_pod(namespace, _pod("before", spec=spec), dry_run="All")
    assert before.metadata.labels[names.VARIANT_LABEL] == "avx2"  # nothing eligible: widest fit
    added = nodes.add("c8g.xlarge", labels=pool)

    def offered() -> bool:
        pod = core.create_namespaced_pod(namespace, _pod("joined", spec=spec), dry_run="All")
        return bool(pod.metadata.labels[names.VARIANT_LABEL] == "armv9")

    wait_until("the new node to reach the webhook's inventory", offered, timeout=20)
    nodes.delete(added)

    def gone() -> bool:
        pod = core.create_namespaced_pod(namespace, _pod("left", spec=spec), dry_run="All")
        return bool(pod.metadata.labels[names.VARIANT_LABEL] == "avx2")

    wait_until("the deleted node to leave the webhook's inventory", gone, timeout=20)


def test_metrics_are_served_over_plain_http_too(
    webhook: Webhook, core: Any, make_namespace: Callable[[bool], str]
) -> None:
    core.create_namespaced_pod(make_namespace(True), _pod("plain-metrics"), dry_run="All")
    with urllib.request.urlopen(f"{webhook.metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'flox_isa_webhook_requests_total{outcome="patched"' in text
    node_count = len(core.list_node().items)
    assert f"flox_isa_inventory_nodes {float(node_count)}" in text


def _selftest(webhook: Webhook, namespace: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "flox_isa.cli", "selftest", "--kubeconfig", str(webhook.kubeconfig),
         "--namespace", namespace, "--output", "json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert not result.stderr.strip() or "Traceback" not in result.stderr, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, found


def test_selftest_passes_where_the_webhook_is_called_and_fails_where_it_is_not(
    webhook: Webhook, core: Any, make_namespace: Callable[[bool], str]
) -> None:
    """`flox-isa selftest` (the chart's helm test): a dry-run pod, the patch checked."""
    code, result = _selftest(webhook, make_namespace(False))  # opted in by its own label
    assert code == 0 and result["ok"] is True, result
    assert result["variant"] and result["nodeSelector"]
    assert result["environment"] == f"flox-isa/selftest-{result['variant']}"
    # A namespace this run's webhook does not select: the pod is admitted unpatched.
    outside = f"wh-outside-{RUN}"
    core.create_namespace({"metadata": {"name": outside}})
    try:
        code, result = _selftest(webhook, outside)
        assert code == 1 and result["ok"] is False
        assert "not patched" in result["message"]
        assert core.list_namespaced_pod(outside).items == []  # dry runs store nothing
    finally:
        core.delete_namespace(outside)

"""The Helm chart against a real API server: install, upgrade, admission scope, uninstall.

The tests run in file order on one release in a dedicated namespace, which is
uninstalled and deleted at the end whatever happens. On the local control plane the
webhook's pods are simulated (kwok), so nothing answers the webhook: the routing test
points the webhook at a Service port that does not exist, so the API server fails
those calls before dialling anything and (failurePolicy Fail) rejects exactly the pods
the webhook would have been called for.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from flox_isa.devcluster.build import bin_dir
from flox_isa.isa import names
from tests.e2e.conftest import DevCluster
from tests.e2e.polling import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flox-isa"
INJECT = "isa.flox.dev/inject"
INSTANCE = "app.kubernetes.io/instance"
# Namespaced kinds the chart creates (checked empty after uninstall).
NAMESPACED_KINDS = (
    "deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,"
    "poddisruptionbudgets,jobs"
)
CLUSTER_KINDS = "clusterroles,clusterrolebindings,mutatingwebhookconfigurations"


@dataclass
class Release:
    cluster: DevCluster
    name: str
    namespace: str
    extra_namespaces: list[str] = field(default_factory=list)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(bin_dir() / "helm"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            check,
        )

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(bin_dir() / "kubectl"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            check,
            input_text,
        )

    def get(self, *args: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(
            self.kubectl("get", *args, "-o", "json").stdout
        ).get("items", [])
        return items

    def manifest(self) -> list[dict[str, Any]]:
        text = self.helm("get", "manifest", self.name, "-n", self.namespace).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def tls(self) -> dict[str, str]:
        secret = self.get("secrets", "-n", self.namespace, "-l", INSTANCE + "=" + self.name)
        assert len(secret) == 1, [s["metadata"]["name"] for s in secret]
        data: dict[str, str] = secret[0]["data"]
        return data

    def webhook_configuration(self) -> dict[str, Any]:
        configs = self.get("mutatingwebhookconfigurations", "-l", f"{INSTANCE}={self.name}")
        assert len(configs) == 1
        return configs[0]


def _run(
    argv: list[str], check: bool, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=300, input=input_text
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv[:4])} ... failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def release(cluster: DevCluster) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    rel = Release(cluster, f"isa-{suffix}", f"flox-isa-e2e-{suffix}")
    with cluster.api_client() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=rel.namespace,
                    # The chart's pods must pass the strictest Pod Security level.
                    labels={"pod-security.kubernetes.io/enforce": "restricted"},
                )
            )
        )
    try:
        yield rel
    finally:
        rel.helm("uninstall", rel.name, "-n", rel.namespace, "--wait", check=False)
        for namespace in [rel.namespace, *rel.extra_namespaces]:
            rel.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_install_is_accepted_by_the_api_server(release: Release) -> None:
    result = release.helm("install", release.name, str(CHART), "-n", release.namespace)
    assert "STATUS: deployed" in result.stdout
    objects = release.manifest()
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "MutatingWebhookConfiguration", "Secret", "ClusterRole"} <= kinds
    # Every object the chart rendered is stored by the API server as rendered.
    for obj in objects:
        namespace = ["-n", release.namespace] if obj["metadata"].get("namespace") else []
        stored = json.loads(
            release.kubectl(
                "get", obj["kind"].lower(), obj["metadata"]["name"], *namespace, "-o", "json"
            ).stdout
        )
        assert stored["metadata"]["labels"][INSTANCE] == release.name
    # The webhook configuration was accepted with its CEL matchConditions compiled.
    hooks = release.webhook_configuration()["webhooks"]
    # Each webhook calls its own path: the namespace-opt-in path is how the webhook
    # knows the namespace opted in (it may not read namespaces).
    assert {h["name"]: h["clientConfig"]["service"]["path"] for h in hooks} == {
        "pod-opt-in.isa.flox.dev": "/mutate",
        "namespace-opt-in.isa.flox.dev": "/mutate/namespace-opt-in",
    }
    assert all(len(h["matchConditions"]) == 2 for h in hooks)


def test_the_webhook_may_only_get_list_and_watch_nodes(release: Release) -> None:
    webhook = next(
        o for o in release.manifest()
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-webhook")
    )  # fmt: skip
    service_account = webhook["spec"]["template"]["spec"]["serviceAccountName"]
    account = f"system:serviceaccount:{release.namespace}:{service_account}"

    def can(verb: str, resource: str, *scope: str) -> bool:
        answer = release.kubectl(
            "auth", "can-i", verb, resource, *scope, "--as", account, check=False
        )
        return answer.stdout.strip() == "yes"

    assert all(can(verb, "nodes") for verb in ("get", "list", "watch"))
    assert not any(can(verb, "nodes") for verb in ("create", "patch", "update", "delete"))
    for resource in ("namespaces", "pods", "secrets", "configmaps", "ticketworkers.isa.flox.dev"):
        assert not any(can(verb, resource) for verb in ("get", "list", "watch")), resource
    # Late binding: it reads the placement controller's Lease, by name, and nothing else.
    lease = "leases.coordination.k8s.io"
    here = ("-n", release.namespace)
    assert can("get", f"{lease}/{names.PLACEMENT_LEASE}", *here)
    assert not can("get", f"{lease}/someone-else", *here)
    assert not any(can(verb, lease, *here) for verb in ("list", "watch", "update"))


def test_the_operator_may_do_exactly_what_it_calls(release: Release) -> None:
    operator = next(
        o for o in release.manifest()
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator")
    )  # fmt: skip
    pod = operator["spec"]["template"]["spec"]
    account = f"system:serviceaccount:{release.namespace}:{pod['serviceAccountName']}"
    args = pod["containers"][0]["args"]
    lease = next(a for a in args if a.startswith("--lease-name=")).split("=", 1)[1]

    def can(verb: str, resource: str, *scope: str) -> bool:
        """`resource` may be TYPE/NAME, or TYPE:SUBRESOURCE; cluster-wide unless scoped."""
        resource, _, subresource = resource.partition(":")
        sub = (f"--subresource={subresource}",) if subresource else ()
        answer = release.kubectl(
            "auth", "can-i", verb, resource, *sub, *(scope or ("--all-namespaces",)),
            "--as", account, check=False,
        )  # fmt: skip
        return answer.stdout.strip() == "yes"

    tw = "ticketworkers.isa.flox.dev"
    allowed = [
        *((verb, tw) for verb in ("get", "list", "watch")),
        ("patch", f"{tw}:status"),
        ("update", f"{tw}:finalizers"),
        *((verb, "deployments.apps") for verb in ("list", "watch", "create", "patch", "delete")),
        ("list", "nodes"),
        ("watch", "nodes"),
        ("create", "events"),
        *((verb, "pods") for verb in ("list", "watch", "update")),  # the placement controller
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ]  # fmt: skip
    assert [(v, r) for v, r in allowed if not can(v, r)] == []
    denied = [
        *((verb, tw) for verb in ("create", "update", "patch", "delete")),
        ("update", f"{tw}:status"),
        ("get", "deployments.apps"),
        ("update", "deployments.apps"),
        ("get", "nodes"),
        ("patch", "nodes"),
        ("patch", "events"),
        ("list", "namespaces"),
        ("watch", "namespaces"),
        *((verb, "pods") for verb in ("get", "create", "patch", "delete")),
        *((verb, res) for res in ("secrets", "configmaps") for verb in ("get", "list")),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io"),  # cluster-wide: no
    ]  # fmt: skip
    assert [(v, r) for v, r in denied if can(v, r)] == []
    # Leader election: its own Lease in the release namespace, nothing else.
    here = ("-n", release.namespace)
    assert can("create", "leases.coordination.k8s.io", *here)
    assert can("get", f"leases.coordination.k8s.io/{lease}", *here)
    assert can("update", f"leases.coordination.k8s.io/{lease}", *here)
    assert not can("update", "leases.coordination.k8s.io/someone-else", *here)
    # The placement controller's heartbeat, which the webhook reads.
    assert can("update", f"leases.coordination.k8s.io/{names.PLACEMENT_LEASE}", *here)
    assert not can("delete", f"leases.coordination.k8s.io/{lease}", *here)


def test_the_operator_does_its_job_with_the_charts_rbac_alone(
    release: Release, tmp_path: Path
) -> None:
    """`can-i` above checks each verb; this runs the operator as its ServiceAccount.

    The chart's operator pod is simulated (kwok), so the real operator runs here with
    the chart's arguments and a token of the chart's ServiceAccount: it creates,
    scales, repairs and deletes Deployments, patches status, posts Events and holds
    its Lease without one request refused.
    """
    operator = next(
        o for o in release.manifest()
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator")
    )  # fmt: skip
    pod = operator["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    args = [a for a in pod["containers"][0]["args"] if not a.startswith(("--catalog", "--health"))]
    token = release.kubectl("create", "token", account, "-n", release.namespace).stdout.strip()
    kubeconfig = release.cluster.token_kubeconfig(account, token, tmp_path / "kubeconfig")
    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    release.kubectl("create", "namespace", namespace)
    release.extra_namespaces.append(namespace)
    log = tmp_path / "operator.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "flox_isa.cli", *args, "--kubeconfig", str(kubeconfig),
         "--lease-namespace", release.namespace, "--health-port", "0"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _exercise_the_operator(release, namespace, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # It watches every namespace: another test's namespace being deleted refuses creates
    # there (namespace lifecycle, not RBAC), which the operator logs as an INFO skip
    # (writes.NAMESPACE_TERMINATING_SKIP) that names no refusal. Every line counts.
    text = log.read_text()
    failures = [
        line
        for line in text.splitlines()
        if '"level":"error"' in line.replace(" ", "") or "forbidden" in line.lower()
    ]
    assert not failures, "\n".join(failures)[-3000:]


def _exercise_the_operator(release: Release, namespace: str, tmp_path: Path) -> None:
    """Every kind of write the operator makes, each waited for."""

    def apply(spec: dict[str, Any]) -> None:
        manifest = tmp_path / "tw.yaml"
        manifest.write_text(yaml.safe_dump({
            "apiVersion": "isa.flox.dev/v1alpha1", "kind": "TicketWorker",
            "metadata": {"name": "rbac", "namespace": namespace},
            "spec": {"environment": "acme/ticket-processor", "workload": "int8-inference",
                     **spec},
        }))  # fmt: skip
        release.kubectl("apply", "-f", str(manifest))

    def variants() -> dict[str, int]:
        selector = f"{names.TICKETWORKER_LABEL}=rbac"
        found = release.get("deployments", "-n", namespace, "-l", selector)
        return {d["metadata"]["labels"][names.VARIANT_LABEL]: d["spec"]["replicas"] for d in found}

    def status() -> dict[str, Any]:
        found = release.get("tw", "-n", namespace)
        return dict(found[0].get("status") or {}) if found else {}

    apply({"replicas": 6})  # create
    wait_until("Deployments of several variants", lambda: len(variants()) >= 2, timeout=90)
    wait_until("the status", lambda: status().get("observedGeneration") == 1, timeout=30)
    apply({"replicas": 9})  # patch
    wait_until("9 replicas", lambda: sum(variants().values()) == 9, timeout=60)
    first = sorted(variants())[0]
    release.kubectl("delete", "deployment", f"rbac-{first}", "-n", namespace)  # repair
    wait_until("the deleted Deployment back", lambda: first in variants(), timeout=60)
    apply({"replicas": 9, "variants": [first]})  # delete the others
    wait_until(f"only {first}", lambda: variants() == {first: 9}, timeout=60)

    def reasons() -> set[str]:  # Events follow the writes by about a second
        events = release.get("events", "-n", namespace, "--field-selector",
                             "involvedObject.kind=TicketWorker")  # fmt: skip
        return {e["reason"] for e in events}

    expected = {"Created", "Scaled", "Deleted"}
    wait_until(f"Events {sorted(expected)}", lambda: reasons() >= expected)
    _exercise_the_placement_controller(release, namespace)


def _exercise_the_placement_controller(release: Release, namespace: str) -> None:
    """A pod gated at creation (as the webhook gates it) is pinned and released."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gated", "namespace": namespace,
                     "annotations": {names.ENVIRONMENT_ANNOTATION: "acme/ticket-processor"}},
        "spec": {"schedulingGates": [{"name": names.PLACEMENT_GATE}],
                 "containers": [{"name": "w", "image": "flox/empty:1.0.0"}]},
    }  # fmt: skip
    release.kubectl("apply", "-f", "-", input_text=json.dumps(pod))

    def placed() -> bool:
        (got,) = release.get("pods", "-n", namespace, "--field-selector", "metadata.name=gated")
        return not got["spec"].get("schedulingGates") and bool(
            (got["metadata"].get("labels") or {}).get(names.VARIANT_LABEL)
        )

    wait_until("the gated pod placed by the operator", placed, timeout=60)


MONITORING_CRDS = ROOT / "tests" / "data" / "prometheus-operator-crds"
OPT_IN_OBJECTS = (
    "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
    "--set", "metrics.prometheusRule.enabled=true", "--set", "networkPolicy.enabled=true",
    "--set", "networkPolicy.egress.enabled=true",
    "--set", "networkPolicy.egress.apiServerCIDRs={192.0.2.1/32}",
)  # fmt: skip


def _server_dry_run(
    release: Release, documents: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / "kubectl"), "--kubeconfig", str(release.cluster.kubeconfig),
         "create", "--dry-run=server", "--validate=strict", "-f", "-"],
        input="\n---\n".join(json.dumps(d) for d in documents),
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_monitoring_objects_and_network_policies_are_accepted_by_the_api_server(
    release: Release,
) -> None:
    """ServiceMonitor, PodMonitor, PrometheusRule (against prometheus-operator's CRDs,
    tests/data/prometheus-operator-crds/) and NetworkPolicy, checked by the API server with
    strict field validation. Nothing here scrapes or enforces them."""
    release.kubectl("apply", "-f", str(MONITORING_CRDS))
    try:
        for path in sorted(MONITORING_CRDS.glob("*.yaml")):
            name = next(d for d in yaml.safe_load_all(path.read_text()) if d)["metadata"]["name"]
            release.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        rendered = release.helm(
            "template", release.name, str(CHART), "-n", release.namespace, *OPT_IN_OBJECTS
        ).stdout
        wanted = ("ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy")
        objects = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in wanted]
        assert sorted(o["kind"] for o in objects) == sorted(
            ["ServiceMonitor"] * 2 + ["PodMonitor"] * 2 + ["PrometheusRule"] + ["NetworkPolicy"] * 2
        )
        accepted = _server_dry_run(release, objects)
        assert accepted.returncode == 0, accepted.stderr
        # The CRDs do check: a misspelt field and a bad enum value are refused.
        monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
        monitor["spec"]["endpoints"][0]["intervall"] = "30s"
        refused = _server_dry_run(release, [monitor])
        assert refused.returncode != 0 and "intervall" in refused.stderr, refused.stderr
        pod_monitor = next(o for o in objects if o["kind"] == "PodMonitor")
        pod_monitor["spec"]["podMetricsEndpoints"][0]["scheme"] = "ftp"
        refused = _server_dry_run(release, [pod_monitor])
        assert refused.returncode != 0 and "scheme" in refused.stderr, refused.stderr
    finally:
        release.kubectl("delete", "-f", str(MONITORING_CRDS), "--wait=false", check=False)


def test_crds_are_installed_and_established(release: Release) -> None:
    files = sorted((CHART / "crds").glob("*.yaml"))
    assert files, "charts/flox-isa/crds/ holds no CRD"
    for path in files:
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        release.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def test_components_become_available_under_restricted_pod_security(release: Release) -> None:
    release.kubectl(
        "rollout", "status", "deployment", "-n", release.namespace, "--timeout=180s"
    )  # every Deployment of the namespace
    deployments = release.get("deployments", "-n", release.namespace)
    assert {d["metadata"]["name"].rsplit("-", 1)[1]: d["status"].get("availableReplicas")
            for d in deployments} == {"webhook": 3, "operator": 2}  # fmt: skip
    events = release.get("events", "-n", release.namespace)
    assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]


def test_upgrade_keeps_the_generated_certificate(release: Release) -> None:
    before = release.tls()
    release.helm(
        "upgrade", release.name, str(CHART), "-n", release.namespace, "--reuse-values",
        "--set", "webhook.timeoutSeconds=3",
    )  # fmt: skip
    after = release.tls()
    assert after == before
    hooks = release.webhook_configuration()["webhooks"]
    assert {h["timeoutSeconds"] for h in hooks} == {3}  # the upgrade did apply
    assert {h["clientConfig"]["caBundle"] for h in hooks} == {after["ca.crt"]}
    assert base64.b64decode(after["ca.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")


def _namespace(release: Release, name: str, labels: dict[str, str]) -> str:
    release.extra_namespaces.append(name)
    release.kubectl("create", "namespace", name)
    if labels:
        release.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))
    return name


def _create_pod(
    release: Release, namespace: str, labels: dict[str, str], daemonset_owned: bool = False
) -> subprocess.CompletedProcess[str]:
    metadata: dict[str, Any] = {"generateName": "probe-", "namespace": namespace}
    metadata["labels"] = labels
    if daemonset_owned:
        metadata["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
             "uid": str(uuid.uuid4()), "controller": True}
        ]  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            # Pod Security "restricted"-compliant, so only the webhook can reject it.
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "flox/empty:1.0.0",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    return subprocess.run(
        [str(bin_dir() / "kubectl"), "--kubeconfig", str(release.cluster.kubeconfig),
         "create", "--dry-run=server", "-f", "-"],
        input=json.dumps(pod), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_the_webhook_is_called_only_for_opted_in_pods(release: Release) -> None:
    # Point both webhooks at a Service port that does not exist: the API server fails
    # such a call before it dials anything, and failurePolicy Fail rejects the pod.
    config = release.webhook_configuration()
    patch = [
        {"op": "replace", "path": f"/webhooks/{i}/clientConfig/service/port", "value": 1}
        for i in range(len(config["webhooks"]))
    ]
    release.kubectl(
        "patch", "mutatingwebhookconfiguration", config["metadata"]["name"],
        "--type=json", "-p", json.dumps(patch),
    )  # fmt: skip
    suffix = release.name.removeprefix("isa-")
    plain = _namespace(release, f"plain-{suffix}", {})
    opted = _namespace(release, f"opted-{suffix}", {INJECT: "true"})
    kube = _namespace(release, f"kube-e2e-{suffix}", {INJECT: "true"})

    service = f"{release.name}-flox-isa-webhook"

    def called(namespace: str, labels: dict[str, str], daemonset_owned: bool = False) -> str:
        """Which of this release's webhooks the API server called for such a pod ("-": none)."""
        result = _create_pod(release, namespace, labels, daemonset_owned)
        if result.returncode == 0:
            return "-"
        # Webhook names repeat across releases: the Service says it was this release's.
        assert f'no service port 1 found for service "{service}"' in result.stderr, result.stderr
        return result.stderr.split('failed calling webhook "', 1)[1].split('"', 1)[0]

    assert called(plain, {}) == "-"
    assert called(plain, {INJECT: "true"}) == "pod-opt-in.isa.flox.dev"
    assert called(opted, {}) == "namespace-opt-in.isa.flox.dev"
    assert called(opted, {INJECT: "true"}) == "pod-opt-in.isa.flox.dev"
    assert called(opted, {INJECT: "false"}) == "-"  # the pod opts out
    assert called(opted, {}, daemonset_owned=True) == "-"  # matchCondition
    assert called(kube, {INJECT: "true"}) == "-"  # kube-* (matchCondition)
    assert called(release.namespace, {INJECT: "true"}) == "-"  # its own namespace
    assert called("kube-system", {INJECT: "true"}) == "-"


def test_uninstall_leaves_only_the_crds(release: Release) -> None:
    objects = release.manifest()
    release.helm("uninstall", release.name, "-n", release.namespace, "--wait")
    selector = f"{INSTANCE}={release.name}"
    assert release.get(NAMESPACED_KINDS, "-n", release.namespace, "-l", selector) == []
    assert release.get(CLUSTER_KINDS, "-l", selector) == []
    for obj in objects:
        namespace = ["-n", release.namespace] if obj["metadata"].get("namespace") else []
        gone = release.kubectl(
            "get", obj["kind"].lower(), obj["metadata"]["name"], *namespace, check=False
        )
        assert gone.returncode != 0 and "NotFound" in gone.stderr, obj["metadata"]["name"]
    for path in sorted((CHART / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        release.kubectl("get", f"crd/{name}")  # kept: deleting it would delete every TicketWorker

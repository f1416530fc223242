"""The Helm chart, rendered with `helm template` (no cluster): what users rely on.

Needs the pinned helm binary (`make binaries` puts it in the devcluster cache; $HELM
overrides). Without it these tests skip locally and fail under CI.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography import x509

from flox_isa.devcluster.build import find_helm
from flox_isa.devcluster.versions import load_versions
from flox_isa.isa import names
from flox_isa.isa.catalog import DEFAULT_CATALOG_DATA, default_catalog, parse_catalog
from flox_isa.operator.models import API_VERSION as TICKETWORKER_API_VERSION
from flox_isa.operator.models import TicketWorkerSpec
from flox_isa.webhook.registration import webhook_configuration
from tests.unit.label_selectors import called_webhooks, selects

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "flox-isa"
RELEASE, NAMESPACE = "isa", "flox-system"
CERT_MANAGER = ("--set", "certManager.enabled=true")
INJECT = "isa.flox.dev/inject"

Obj = dict[str, Any]


@cache
def helm() -> str:
    try:
        return find_helm()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False)


@cache
def _render(args: tuple[str, ...]) -> tuple[Obj, ...]:
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(*args: str) -> list[Obj]:
    return [json.loads(json.dumps(doc)) for doc in _render(args)]  # a fresh copy per test


def one(objects: list[Obj], kind: str, name_suffix: str = "") -> Obj:
    found = [
        o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def deployments(objects: list[Obj]) -> dict[str, Obj]:
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in objects
        if d["kind"] == "Deployment"
    }


def containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for deployment in deployments(objects).values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


# --- lint and schema validation ---------------------------------------------------


def test_helm_lint_strict_passes() -> None:
    for args in ((), CERT_MANAGER):
        result = run_helm("lint", "--strict", str(CHART), *args)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("args", [(), CERT_MANAGER], ids=["generated-tls", "cert-manager"])
def test_rendered_objects_match_the_pinned_kubernetes_openapi_schemas(
    args: tuple[str, ...],
) -> None:
    minor = ".".join(load_versions().kubernetes.lstrip("v").split(".")[:2])
    validated = set()
    for obj in render(*args, "--include-crds"):
        if obj["apiVersion"].startswith("cert-manager.io/"):
            continue  # not Kubernetes' own schema: see test_cert_manager_mode_*
        kubernetes_validate.validate(obj, f"{minor}.0", strict=True)
        validated.add(obj["kind"])
    assert {"Deployment", "MutatingWebhookConfiguration", "Service", "ClusterRole"} <= validated


def test_chart_kube_version_admits_the_pinned_kubernetes() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pinned = tuple(int(p) for p in load_versions().kubernetes.lstrip("v").split("."))
    floor = re.fullmatch(r">=(\d+)\.(\d+)\.(\d+)-0", chart["kubeVersion"])
    assert floor, chart["kubeVersion"]
    assert pinned >= tuple(int(g) for g in floor.groups())
    ok = run_helm("template", str(CHART), "--kube-version", load_versions().kubernetes)
    assert ok.returncode == 0, ok.stderr
    too_old = run_helm("template", str(CHART), "--kube-version", "v1.29.0")
    assert too_old.returncode != 0 and "kubeVersion" in too_old.stderr


def test_values_schema_rejects_typos_and_bad_values() -> None:
    for bad, message in [
        (("--set", "webhook.replica=2"), "replica"),
        (("--set", "webhook.failurePolicy=Maybe"), "failurePolicy"),
        (("--set", "webhook.timeoutSeconds=31"), "timeoutSeconds"),
        (("--set", "catalog.variants[0].arch=riscv64"), "arch"),
        (("--set", "certManager.issuerRef.kind=ClusterIssuer"), "name"),
    ]:
        result = run_helm("template", str(CHART), *bad)
        assert result.returncode != 0, bad
        assert message in result.stderr, result.stderr


# --- values.yaml ------------------------------------------------------------------


def test_values_catalog_is_the_built_in_default_catalog() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["catalog"] == DEFAULT_CATALOG_DATA


# Values that are Kubernetes objects passed through verbatim: documented as a whole.
PASS_THROUGH = {
    "podSecurityContext", "securityContext", "resources",
    "nodeSelector", "topologySpreadConstraints",
}  # fmt: skip


def test_every_value_is_camel_case_and_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:-][^:]*):(?:\s|$)")
    ancestors: list[tuple[int, str]] = []
    problems = []
    for number, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue  # comments, blank lines, list items (catalog data, not settings)
        indent, name = len(match["indent"]), match["key"]
        ancestors = [(i, k) for i, k in ancestors if i < indent]
        inside = {k for _, k in ancestors}
        ancestors.append((indent, name))
        if inside & (PASS_THROUGH | {"catalog"}):
            continue
        above = lines[number - 1].strip() if number else ""
        if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", name):
            problems.append(f"line {number + 1}: {name!r} is not camelCase")
        if not above.startswith("#") and "#" not in line:
            problems.append(f"line {number + 1}: {name!r} has no comment")
    assert not problems, "\n".join(problems)


# --- catalog ----------------------------------------------------------------------


def test_both_components_read_the_catalog_config_map() -> None:
    objects = render()
    config_map = one(objects, "ConfigMap", "-catalog")
    assert parse_catalog(config_map["data"]["catalog.yaml"]) == default_catalog()
    for deployment, container in containers(objects):
        pod = deployment["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v.get("configMap"))
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert f"--catalog={mount['mountPath']}/catalog.yaml" in container["args"]
        # A catalog change rolls the pods (neither component re-reads the file).
        assert "checksum/catalog" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_a_custom_catalog_reaches_the_config_map(tmp_path: Path) -> None:
    custom = {
        "catalog": {
            "variants": [
                {"name": "baseline", "arch": "amd64", "flags": [],
                 "scores": {"fp32-inference": 1, "int8-inference": 1, "bf16-training": 1}},
            ]
        }
    }  # fmt: skip
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(custom))
    default_checksum = deployments(render())["webhook"]["spec"]["template"]["metadata"]
    objects = render("-f", str(values))
    catalog = parse_catalog(one(objects, "ConfigMap", "-catalog")["data"]["catalog.yaml"])
    assert catalog.names == ("baseline",)
    annotations = deployments(objects)["webhook"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/catalog"] != default_checksum["annotations"]["checksum/catalog"]


# --- the admission webhook ---------------------------------------------------------


def webhook_config(*args: str) -> Obj:
    return one(render(*args), "MutatingWebhookConfiguration")


POD_OPT_IN, NAMESPACE_OPT_IN = "pod-opt-in.isa.flox.dev", "namespace-opt-in.isa.flox.dev"
# The namespace-opt-in path tells the webhook "the namespace is opted in": it reads none.
PATHS = {POD_OPT_IN: "/mutate", NAMESPACE_OPT_IN: "/mutate/namespace-opt-in"}


def test_webhook_configuration_follows_admission_good_practices() -> None:
    objects = render()
    service = one(objects, "Service", "-webhook")
    config = one(objects, "MutatingWebhookConfiguration")
    assert config["webhooks"]
    for hook in config["webhooks"]:
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] == 2
        assert hook["failurePolicy"] == "Fail"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
             "resources": ["pods"], "scope": "Namespaced"}
        ]  # fmt: skip
        ref = hook["clientConfig"]["service"]
        assert ref == {
            "name": service["metadata"]["name"],
            "namespace": NAMESPACE,
            "path": PATHS[hook["name"]],
            "port": service["spec"]["ports"][0]["port"],
        }
        conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
        assert "startsWith('kube-')" in conditions["not-a-kube-namespace"]
        assert "DaemonSet" in conditions["not-a-daemonset-pod"]


def test_failure_policy_and_timeout_are_configurable() -> None:
    config = webhook_config(
        "--set", "webhook.failurePolicy=Ignore", "--set", "webhook.timeoutSeconds=5"
    )
    assert {h["failurePolicy"] for h in config["webhooks"]} == {"Ignore"}
    assert {h["timeoutSeconds"] for h in config["webhooks"]} == {5}


def _namespace(name: str, *, opted_in: bool) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": name}
    return labels | ({INJECT: "true"} if opted_in else {})


@pytest.mark.parametrize(
    ("namespace", "pod_labels", "called"),
    [
        (_namespace("shop", opted_in=False), {}, None),
        (_namespace("shop", opted_in=False), {INJECT: "true"}, POD_OPT_IN),
        (_namespace("shop", opted_in=False), {INJECT: "false"}, None),
        (_namespace("shop", opted_in=True), {}, NAMESPACE_OPT_IN),
        (_namespace("shop", opted_in=True), {INJECT: "true"}, POD_OPT_IN),
        (_namespace("shop", opted_in=True), {INJECT: "false"}, None),  # the pod opts out
        (_namespace("kube-system", opted_in=True), {INJECT: "true"}, None),
        (_namespace("kube-node-lease", opted_in=True), {INJECT: "true"}, None),
        (_namespace(NAMESPACE, opted_in=True), {INJECT: "true"}, None),  # its own namespace
        (_namespace("batch", opted_in=True), {}, None),  # webhook.excludedNamespaces
    ],
)
def test_opt_in_by_pod_or_namespace_label_calls_the_webhook_exactly_once(
    namespace: dict[str, str], pod_labels: dict[str, str], called: str | None
) -> None:
    config = webhook_config("--set", "webhook.excludedNamespaces={batch}")
    # Called at most once (two matching entries would patch the pod twice), on the path
    # that says why: /mutate/namespace-opt-in only for pods in opted-in namespaces.
    assert called_webhooks(config, namespace, pod_labels) == ([called] if called else [])


def test_the_registration_builder_renders_the_charts_webhooks() -> None:
    """The URL-configured registration (demo, e2e) is the chart's, but for clientConfig."""
    chart = webhook_config("--set", "webhook.excludedNamespaces={batch}")
    built = webhook_configuration(
        "unused", "https://127.0.0.1:8443", b"ca", own_namespace=NAMESPACE,
        excluded_namespaces=["batch"], timeout_seconds=2,
    )  # fmt: skip
    for ours, theirs in zip(built["webhooks"], chart["webhooks"], strict=True):
        assert ours["clientConfig"]["url"] == "https://127.0.0.1:8443" + PATHS[ours["name"]]
        assert theirs["clientConfig"]["service"]["path"] == PATHS[theirs["name"]]
        assert {**ours, "clientConfig": None} == {**theirs, "clientConfig": None}


def test_generated_tls_certificate_is_trusted_by_the_webhook_configuration() -> None:
    objects = render()
    secret = one(objects, "Secret", "-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    serving = x509.load_pem_x509_certificate(data["tls.crt"])
    serving.verify_directly_issued_by(ca)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    service = one(objects, "Service", "-webhook")["metadata"]["name"]
    # The API server calls https://<service>.<namespace>.svc.
    assert f"{service}.{NAMESPACE}.svc" in san.get_values_for_type(x509.DNSName)
    assert serving.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(
        days=3000
    )
    for hook in one(objects, "MutatingWebhookConfiguration")["webhooks"]:
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == data["ca.crt"]
    webhook_pod = deployments(objects)["webhook"]["spec"]["template"]["spec"]
    tls_volume = next(v for v in webhook_pod["volumes"] if v.get("secret"))
    assert tls_volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_cert_manager_mode_issues_the_certificate_the_webhook_mounts() -> None:
    objects = render(*CERT_MANAGER)
    assert not [o for o in objects if o["kind"] == "Secret"]  # cert-manager writes it
    certificate = one(objects, "Certificate", "-webhook")
    issuer = one(objects, "Issuer", "-webhook")
    assert "ca" in issuer["spec"]
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    service = one(objects, "Service", "-webhook")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    webhook_pod = deployments(objects)["webhook"]["spec"]["template"]["spec"]
    tls_volume = next(v for v in webhook_pod["volumes"] if v.get("secret"))
    assert tls_volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    config = one(objects, "MutatingWebhookConfiguration")
    annotation = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert annotation == f"{NAMESPACE}/{certificate['metadata']['name']}"
    assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])


def _duration_hours(text: str) -> float:
    return sum(
        float(n) * {"h": 1, "m": 1 / 60, "s": 1 / 3600}[u]
        for n, u in re.findall(r"([\d.]+)([hms])", text)
    )


def test_cert_manager_mode_signs_the_serving_certificate_with_a_long_lived_ca() -> None:
    """selfSigned -> CA (isCA, key never rotated) -> CA Issuer -> leaf (key rotated): a leaf
    renewal never changes the caBundle (the CA injector copies the CA, not the leaf)."""
    objects = render(*CERT_MANAGER)
    certificates = {c["metadata"]["name"]: c for c in objects if c["kind"] == "Certificate"}
    issuers = {i["metadata"]["name"]: i for i in objects if i["kind"] == "Issuer"}
    serving = one(objects, "Certificate", "-webhook")
    ca_issuer = issuers[serving["spec"]["issuerRef"]["name"]]
    ca = next(
        c
        for c in certificates.values()
        if c["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]
    )
    assert ca["spec"]["isCA"] is True and "isCA" not in serving["spec"]
    assert ca["spec"]["privateKey"]["rotationPolicy"] == "Never"
    assert serving["spec"]["privateKey"]["rotationPolicy"] == "Always"
    assert _duration_hours(ca["spec"]["duration"]) >= 5 * 365 * 24
    assert _duration_hours(ca["spec"]["duration"]) > 2 * _duration_hours(
        serving["spec"]["duration"]
    )
    root = issuers[ca["spec"]["issuerRef"]["name"]]
    assert root["spec"] == {"selfSigned": {}}
    assert set(certificates) == {serving["metadata"]["name"], ca["metadata"]["name"]}


def test_cert_manager_mode_can_use_an_existing_issuer() -> None:
    objects = render(
        *CERT_MANAGER,
        "--set", "certManager.issuerRef.name=corp-ca",
        "--set", "certManager.issuerRef.kind=ClusterIssuer",
    )  # fmt: skip
    assert not [o for o in objects if o["kind"] == "Issuer"]
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
    }


# --- availability ------------------------------------------------------------------


def test_webhook_is_highly_available_by_default() -> None:
    objects = render()
    webhook = deployments(objects)["webhook"]
    assert webhook["spec"]["replicas"] == 3
    pod_labels = webhook["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget", "-webhook")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"], pod_labels)
    service = one(objects, "Service", "-webhook")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
    anti = webhook["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], pod_labels)
    # The operator's pods must not count as webhook pods (and the reverse).
    operator_labels = deployments(objects)["operator"]["spec"]["template"]["metadata"]["labels"]
    assert not selects(pdb["spec"]["selector"], operator_labels)


def test_webhook_scheduling_is_configurable() -> None:
    objects = render(
        "--set", "webhook.priorityClassName=system-cluster-critical",
        "--set", "webhook.podAntiAffinity=hard",
        "--set", "webhook.replicas=5",
    )  # fmt: skip
    spec = deployments(objects)["webhook"]["spec"]
    assert spec["replicas"] == 5
    assert spec["template"]["spec"]["priorityClassName"] == "system-cluster-critical"
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in anti


def test_webhook_probes_and_service_use_the_https_port() -> None:
    objects = render("--set", "webhook.port=9443")
    webhook = deployments(objects)["webhook"]
    container = webhook["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0] == {"name": "https", "containerPort": 9443, "protocol": "TCP"}
    assert "--port=9443" in container["args"]
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert one(objects, "Service", "-webhook")["spec"]["ports"][0]["targetPort"] == "https"


def test_operator_runs_two_replicas_with_a_liveness_probe() -> None:
    operator = deployments(render())["operator"]
    assert operator["spec"]["replicas"] == 2
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "operator"
    assert "--health-port=8080" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_components_can_be_disabled() -> None:
    objects = render("--set", "webhook.enabled=false")
    assert not [o for o in objects if o["kind"] == "MutatingWebhookConfiguration"]
    assert set(deployments(objects)) == {"operator"}
    objects = render("--set", "operator.enabled=false")
    assert set(deployments(objects)) == {"webhook"}


# --- security ----------------------------------------------------------------------


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    for deployment, container in containers(render()):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        # Memory limits only: CPU throttling under a burst turns into admission timeouts.
        assert set(container["resources"]["limits"]) == {"memory"}


def rules_of(objects: list[Obj], kind: str, suffix: str) -> list[Obj]:
    return list(one(objects, kind, suffix)["rules"])


def test_webhook_rbac_is_get_list_watch_nodes_only() -> None:
    assert rules_of(render(), "ClusterRole", "-webhook") == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
    ]


def test_operator_rbac_is_least_privilege() -> None:
    objects = render()
    cluster_rules = rules_of(objects, "ClusterRole", "-operator")
    resources = {res for r in cluster_rules for res in r["resources"]}
    assert "secrets" not in resources
    for rule in cluster_rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    # Exactly what the operator calls (controller.py, handlers.py, run.py, kube/):
    # no patch of TicketWorkers (no finalizers, no annotations), no namespaces
    # (kopf runs cluster-wide), no get of single nodes (one list + watch).
    granted = {
        (group, resource): sorted(r["verbs"])
        for r in cluster_rules
        for group in r["apiGroups"]
        for resource in r["resources"]
    }
    assert granted == {
        ("isa.flox.dev", "ticketworkers"): ["get", "list", "watch"],
        ("isa.flox.dev", "ticketworkers/status"): ["patch"],
        ("isa.flox.dev", "ticketworkers/finalizers"): ["update"],
        ("apps", "deployments"): ["create", "delete", "list", "patch", "watch"],
        ("", "nodes"): ["list", "watch"],
        ("", "events"): ["create"],
        # The placement controller: every pod's requests (a watch) and the one update that
        # pins a gated pod and removes its gate; no get, create, patch or delete of pods.
        ("", "pods"): ["list", "update", "watch"],
        ("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"],
    }
    assert not any("resourceNames" in r for r in cluster_rules)
    role = one(objects, "Role", "-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    lease = deployments(objects)["operator"]["spec"]["template"]["spec"]["containers"][0]
    lease_name = next(a for a in lease["args"] if a.startswith("--lease-name=")).split("=")[1]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": [lease_name, names.PLACEMENT_LEASE], "verbs": ["get", "update"]},
    ]  # fmt: skip


def test_late_binding_is_wired_and_can_be_turned_off() -> None:
    objects = render()
    first = {k: d["spec"]["template"]["spec"]["containers"][0]
                  for k, d in deployments(objects).items()}  # fmt: skip
    assert "--late-binding" in first["webhook"]["args"]
    assert f"--placement-lease-namespace={NAMESPACE}" in first["webhook"]["args"]
    assert "--placement" in first["operator"]["args"]
    assert "--when-full=next-best" in first["operator"]["args"]
    lease_role = one(objects, "Role", "-placement-lease")
    lease = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"]}
    assert lease_role["rules"] == [
        {**lease, "resourceNames": [names.PLACEMENT_LEASE], "verbs": ["get"]}
    ]
    hook = one(objects, "Job", "-ungate")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert hook["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["ungate", "--all"]
    off = render("--set", "placement.lateBinding=false")
    off_args = {k: d["spec"]["template"]["spec"]["containers"][0]["args"]
                for k, d in deployments(off).items()}  # fmt: skip
    assert "--no-late-binding" in off_args["webhook"] and "--no-placement" in off_args["operator"]
    assert not [o for o in off if o["kind"] == "Job" or o["metadata"]["name"].endswith("-lease")]


def test_capacity_planning_is_on_and_can_be_turned_off_with_least_pod_access() -> None:
    def wired(*flags: str) -> tuple[list[str], list[str]]:
        objects = render(*flags)
        operator = deployments(objects)["operator"]["spec"]["template"]["spec"]["containers"][0]
        rules = rules_of(objects, "ClusterRole", "-operator")
        verbs = sorted(v for r in rules if "pods" in r["resources"] for v in r["verbs"])
        return operator["args"], verbs

    args, verbs = wired()
    assert "--no-capacity-planning" not in args and verbs == ["list", "update", "watch"]
    args, verbs = wired("--set", "operator.capacityPlanning=false")
    assert "--no-capacity-planning" in args and verbs == ["list", "update", "watch"]
    args, verbs = wired("--set", "placement.lateBinding=false")
    assert "--no-capacity-planning" not in args and verbs == ["list", "watch"]  # its own watch
    args, verbs = wired("--set", "placement.lateBinding=false",
                        "--set", "operator.capacityPlanning=false")  # fmt: skip
    assert "--no-capacity-planning" in args and verbs == []


def test_recovery_is_opt_in_and_only_then_may_the_operator_delete_pods() -> None:
    def pod_verbs(objects: list[Obj]) -> set[str]:
        rules = rules_of(objects, "ClusterRole", "-operator")
        return {v for r in rules if "pods" in r["resources"] for v in r["verbs"]}

    def operator_args(objects: list[Obj]) -> list[str]:
        args: list[str] = deployments(objects)["operator"]["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]
        return args

    default = render()
    assert "delete" not in pod_verbs(default)
    assert not [a for a in operator_args(default) if a.startswith("--recover")]
    on = render("--set", "placement.recovery.enabled=true",
                "--set", "placement.recovery.unschedulableSeconds=120")  # fmt: skip
    assert "delete" in pod_verbs(on)
    assert "--recover-unschedulable-after=120" in operator_args(on)


def test_every_object_carries_the_recommended_labels() -> None:
    for obj in render(*CERT_MANAGER):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "flox-isa"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "app.kubernetes.io/version" in labels
        if obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["name"].endswith("-selftest"):
            assert obj["metadata"]["namespace"] == "default"  # selftest.namespace
        elif obj["kind"] not in (
            "ClusterRole",
            "ClusterRoleBinding",
            "MutatingWebhookConfiguration",
        ):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


# --- manifests/ ---------------------------------------------------------------------


def test_checked_in_manifests_match_the_chart() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "render-manifests.py"), "--check", "--helm", helm()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_manifests_names_a_helm_that_is_not_there_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "helm"
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "render-manifests.py"), "--helm", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"render-manifests: helm {str(missing)!r}: no executable file there\n"


def test_manifest_examples_are_valid_objects() -> None:
    minor = ".".join(load_versions().kubernetes.lstrip("v").split(".")[:2])
    kinds = set()
    for path in sorted((ROOT / "manifests" / "examples").rglob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            kinds.add(obj["kind"])
            if obj["apiVersion"] == TICKETWORKER_API_VERSION:
                TicketWorkerSpec.model_validate(obj["spec"])  # what the operator accepts
            elif obj["apiVersion"].startswith("nfd.k8s-sigs.io/"):
                assert obj["spec"]["rules"], path
            else:
                kubernetes_validate.validate(obj, f"{minor}.0", strict=True)
    assert {"TicketWorker", "Deployment", "Namespace", "NodeFeatureRule"} <= kinds


def test_nfd_rule_example_requires_exactly_each_default_variants_flags() -> None:
    rule = yaml.safe_load((ROOT / "manifests/examples/nfd/nodefeaturerule.yaml").read_text())
    required = {
        r["name"].removeprefix("flox-isa "): set(r["matchFeatures"][0]["matchExpressions"])
        for r in rule["spec"]["rules"]
    }
    assert required == {v.name: set(v.flags) for v in default_catalog().variants}


# --- production operations ----------------------------------------------------------


def container_of(objects: list[Obj], component: str) -> Obj:
    return dict(deployments(objects)[component]["spec"]["template"]["spec"]["containers"][0])


def pod_spec_of(objects: list[Obj], component: str) -> Obj:
    return dict(deployments(objects)[component]["spec"]["template"]["spec"])


def test_webhook_shutdown_is_covered_by_the_grace_period() -> None:
    objects = render("--set", "webhook.shutdownDelaySeconds=7", "--set", "webhook.timeoutSeconds=3")
    args = container_of(objects, "webhook")["args"]
    assert "--shutdown-delay=7" in args and "--drain-timeout=3" in args
    assert pod_spec_of(objects, "webhook")["terminationGracePeriodSeconds"] > 7 + 3
    default = container_of(render(), "webhook")["args"]
    assert "--shutdown-delay=10" in default  # Gatekeeper's default


def test_webhook_tls_minimum_and_plain_http_metrics_port() -> None:
    objects = render("--set", "webhook.tlsMinVersion=1.3", "--set", "webhook.metricsPort=9090")
    container = container_of(objects, "webhook")
    assert (
        "--tls-min-version=1.3" in container["args"] and "--metrics-port=9090" in container["args"]
    )
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    service_ports = {p["name"]: p for p in one(objects, "Service", "-webhook")["spec"]["ports"]}
    assert service_ports["metrics"]["port"] == 9090
    assert run_helm("template", str(CHART), "--set", "webhook.tlsMinVersion=1.1").returncode != 0


def test_pods_default_to_linux_amd64_nodes_and_spread_over_zones() -> None:
    objects = render()
    for component in ("webhook", "operator"):
        spec = pod_spec_of(objects, component)
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        (spread,) = spec["topologySpreadConstraints"]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"
        selector = deployments(objects)[component]["spec"]["selector"]["matchLabels"]
        assert spread["labelSelector"] == {"matchLabels": selector}


def test_host_network_and_extra_args_env_volumes() -> None:
    objects = render(
        "--set", "webhook.hostNetwork=true", "--set", "webhook.extraArgs={--log-level=DEBUG}",
        "--set", "webhook.extraEnv[0].name=A", "--set", "webhook.extraEnv[0].value=b",
        "--set", "webhook.extraVolumes[0].name=x",
        "--set", "webhook.extraVolumes[0].emptyDir.medium=Memory",
        "--set", "webhook.extraVolumeMounts[0].name=x",
        "--set", "webhook.extraVolumeMounts[0].mountPath=/x",
        "--set", "operator.extraArgs={--workers=4}",
    )  # fmt: skip
    spec = pod_spec_of(objects, "webhook")
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    container = container_of(objects, "webhook")
    assert container["args"][-1] == "--log-level=DEBUG"
    assert {"name": "A", "value": "b"} in container["env"]
    assert {"name": "x", "mountPath": "/x"} in container["volumeMounts"]
    assert {"name": "x", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    assert container_of(objects, "operator")["args"][-1] == "--workers=4"
    assert "hostNetwork" not in pod_spec_of(render(), "webhook")


def test_disruption_budgets_let_unhealthy_pods_be_evicted() -> None:
    for budget in (o for o in render() if o["kind"] == "PodDisruptionBudget"):
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_operator_readiness_probe_is_its_readyz() -> None:
    container = container_of(render(), "operator")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


MONITORING = (
    "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
    "--set", "metrics.prometheusRule.enabled=true", "--set", "networkPolicy.enabled=true",
)  # fmt: skip


def test_monitoring_and_network_policies_are_opt_in() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"}
    objects = render(*MONITORING)
    monitors = [o for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    assert len(monitors) == 4
    services = {s["metadata"]["name"]: s for s in objects if s["kind"] == "Service"}
    for monitor in (m for m in monitors if m["kind"] == "ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["scheme"] == "http"
        selected = [
            s
            for s in services.values()
            if s["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]
        ]
        assert [endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected] == [
            True
        ]


def test_network_policy_admits_the_webhook_port_from_anywhere_and_optional_egress() -> None:
    objects = render(*MONITORING)
    webhook = one(objects, "NetworkPolicy", "-webhook")
    ports = {r["ports"][0]["port"]: r for r in webhook["spec"]["ingress"]}
    assert set(ports) == {8443, 8081} and "from" not in ports[8443]
    assert webhook["spec"]["policyTypes"] == ["Ingress"]
    egress = render(
        *MONITORING, "--set", "networkPolicy.egress.enabled=true",
        "--set", "networkPolicy.egress.apiServerCIDRs={192.0.2.10/32}",
    )  # fmt: skip
    rule = one(egress, "NetworkPolicy", "-operator")["spec"]["egress"]
    tcp = [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]
    assert rule == [{"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": tcp}]
    missing = run_helm("template", str(CHART), "--set", "networkPolicy.egress.enabled=true")
    assert missing.returncode != 0 and "apiServerCIDRs" in missing.stderr


def test_helm_test_hook_runs_the_selftest_in_a_namespace_that_is_mutated() -> None:
    objects = render()
    pod = one(objects, "Pod", "-selftest")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["args"]
    assert args[0] == "selftest" and "--namespace=default" in args
    config = one(objects, "MutatingWebhookConfiguration")
    opted_in = {INJECT: "true"}
    assert called_webhooks(config, _namespace("default", opted_in=False), opted_in) == [POD_OPT_IN]
    role = one(objects, "Role", "-selftest")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]

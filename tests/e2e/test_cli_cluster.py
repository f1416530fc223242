"""The CLI against a live cluster: `explain` without files, `report`, kubectl's errors.

Every command runs as a user runs it (a subprocess of the installed entry point, or
through the real kubectl as a plugin), against the session's real API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from flox_isa.devcluster.build import bin_dir
from flox_isa.devcluster.cluster import free_ports
from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from tests.e2e.conftest import DevCluster

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
CATALOG = default_catalog()
ENVIRONMENT = "acme/embedder"


def flox_isa(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flox_isa", *args],
        capture_output=True, text=True, timeout=120, env=env, input=stdin, check=False,
    )  # fmt: skip


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without any kubeconfig hint: HOME is `home`, no KUBECONFIG."""
    drop = {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "HOME": str(home), **extra}


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed as kubectl does: exit 2, one line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def kubectl(cluster: DevCluster, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(bin_dir() / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True, text=True, timeout=120, input=stdin, check=True,
    )  # fmt: skip
    return result.stdout


def namespace(cluster: DevCluster, name: str, opted_in: bool = False) -> str:
    labels = {names.INJECT_LABEL: "true"} if opted_in else {}
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})
    return name


def deployment(name: str, template_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, **template_meta.get("labels", {})},
                    "annotations": template_meta.get("annotations", {}),
                },
                "spec": {"containers": [{"name": "w", "image": "flox/embedder"}]},
            },
        },
    }


# --- explain ---------------------------------------------------------------------------


def test_explain_nodes_reads_the_cluster_like_the_dump_file_and_stdin(
    cluster: DevCluster, tmp_path: Path
) -> None:
    dump = kubectl(cluster, "get", "nodes", "-o", "json")
    (tmp_path / "nodes.json").write_text(dump)
    config = str(cluster.kubeconfig)
    from_file = ok_json(flox_isa("explain", "nodes", "--nodes", str(tmp_path / "nodes.json"),
                                 "-o", "json"))  # fmt: skip
    live = ok_json(flox_isa("explain", "nodes", "--kubeconfig", config, "-o", "json"))
    piped = ok_json(flox_isa("explain", "nodes", "--nodes", "-", "-o", "json", stdin=dump))
    assert live == from_file == piped
    assert {row["name"] for row in live} >= set(cluster.fleet_node_names)
    text = flox_isa("explain", "nodes", "--kubeconfig", config)
    assert text.returncode == 0 and "fleet offers for fp32-inference:" in text.stdout


def test_kubeconfig_is_found_in_kubectls_order(cluster: DevCluster, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere.kubeconfig"
    write_kubeconfig(nowhere, "https://127.0.0.1:1")
    expected = ok_json(flox_isa("explain", "nodes", "--kubeconfig", str(cluster.kubeconfig),
                                "-o", "json"))  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    # KUBECONFIG (a list: a missing file is skipped) when no flag.
    listed = f"{tmp_path / 'missing'}{os.pathsep}{cluster.kubeconfig}"
    env = clean_env(home, KUBECONFIG=listed)
    assert ok_json(flox_isa("explain", "nodes", "-o", "json", env=env)) == expected
    # The flag beats KUBECONFIG.
    env = clean_env(home, KUBECONFIG=str(nowhere))
    assert ok_json(flox_isa("explain", "nodes", "--kubeconfig", str(cluster.kubeconfig),
                            "-o", "json", env=env)) == expected  # fmt: skip
    # KUBECONFIG beats ~/.kube/config.
    (home / ".kube").mkdir()
    (home / ".kube" / "config").write_text(portable(cluster.kubeconfig))
    assert "Unable to connect" in one_line_error(flox_isa("explain", "nodes", env=env))
    # ~/.kube/config when nothing else is given.
    assert ok_json(flox_isa("explain", "nodes", "-o", "json", env=clean_env(home))) == expected


def portable(kubeconfig: Path) -> str:
    """The kubeconfig's text with relative file paths made absolute (it moves elsewhere)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for entry in [*config.get("clusters", []), *config.get("users", [])]:
        body = entry.get("cluster") or entry.get("user") or {}
        for key in ("certificate-authority", "client-certificate", "client-key"):
            if key in body:
                body[key] = str((kubeconfig.parent / body[key]).resolve())
    return str(yaml.safe_dump(config))


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_explain_deployment_of_a_live_deployment(cluster: DevCluster, tmp_path: Path) -> None:
    ns = namespace(cluster, f"cli-explain-{RUN}")
    manifest = deployment("embedder", {"annotations": {
        names.ENVIRONMENT_ANNOTATION: ENVIRONMENT, names.WORKLOAD_ANNOTATION: "int8-inference",
    }})  # fmt: skip
    cluster.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", manifest)
    (tmp_path / "deploy.json").write_text(json.dumps(manifest))
    (tmp_path / "nodes.json").write_text(kubectl(cluster, "get", "nodes", "-o", "json"))
    offline = ok_json(flox_isa("explain", "pod", "--pod", str(tmp_path / "deploy.json"),
                               "--nodes", str(tmp_path / "nodes.json"), "-o", "json"))  # fmt: skip
    config = str(cluster.kubeconfig)
    for word in ("deployment", "deploy"):
        live = ok_json(flox_isa("explain", word, "embedder", "-n", ns, "--kubeconfig", config,
                                "-o", "json"))  # fmt: skip
        assert live == offline
    assert live["allowed"] and live["reason"] == "auto"
    text = flox_isa("explain", "deployment", "embedder", "-n", ns, "--kubeconfig", config)
    assert text.returncode == 0 and text.stdout.startswith("patched (auto)"), text.stdout


def test_a_patched_pod_is_redecided_from_its_base_environment(
    cluster: DevCluster, tmp_path: Path
) -> None:
    ns = namespace(cluster, f"cli-patched-{RUN}")
    avx2 = CATALOG.get("avx2")
    assert avx2 is not None
    selector = {names.cpuid_label(f): "true" for f in sorted(avx2.flags)}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "old",
            "labels": {names.INJECT_LABEL: "true", names.VARIANT_LABEL: "avx2"},
            "annotations": {
                names.ENVIRONMENT_ANNOTATION: f"{ENVIRONMENT}-avx2",
                names.BASE_ENVIRONMENT_ANNOTATION: ENVIRONMENT,
                names.WORKLOAD_ANNOTATION: "int8-inference",
                names.REASON_ANNOTATION: "auto: avx2 (then)",
            },
        },
        "spec": {
            "nodeSelector": {**selector, names.ARCH_LABEL: "amd64"},
            "containers": [{"name": "w", "image": "flox/embedder"}],
        },
    }
    cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    # What the webhook answers today for the same pod as it was before admission.
    fresh = {**pod, "metadata": {"name": "old", "labels": {names.INJECT_LABEL: "true"},
             "annotations": {names.ENVIRONMENT_ANNOTATION: ENVIRONMENT,
                             names.WORKLOAD_ANNOTATION: "int8-inference"}},
             "spec": {"containers": pod["spec"]["containers"]}}  # fmt: skip
    (tmp_path / "fresh.json").write_text(json.dumps(fresh))
    (tmp_path / "nodes.json").write_text(kubectl(cluster, "get", "nodes", "-o", "json"))
    today = ok_json(flox_isa("explain", "pod", "--pod", str(tmp_path / "fresh.json"),
                             "--nodes", str(tmp_path / "nodes.json"), "-o", "json"))  # fmt: skip
    live = ok_json(flox_isa("explain", "pod", "old", "-n", ns, "--kubeconfig",
                            str(cluster.kubeconfig), "-o", "json"))  # fmt: skip
    previous = live.pop("previous")
    assert live == today
    variant = next(op["value"] for op in today["patch"]
                   if op["path"].endswith("isa.flox.dev~1variant"))  # fmt: skip
    assert previous == {
        "variant": "avx2",
        "environment": f"{ENVIRONMENT}-avx2",
        "baseEnvironment": ENVIRONMENT,
        "today": variant,
        "differs": variant != "avx2",
        "ticketworker": None,
    }
    text = flox_isa("explain", "pod", "old", "-n", ns, "--kubeconfig", str(cluster.kubeconfig))
    verdict = "differs" if variant != "avx2" else "same"
    assert text.stdout.strip().endswith(f"{variant}: {verdict}"), text.stdout


# --- errors ----------------------------------------------------------------------------


def test_cluster_errors_are_one_line_as_kubectl_says_them(
    cluster: DevCluster, core: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    assert one_line_error(flox_isa("explain", "nodes", env=env)).startswith(
        "flox-isa: error: no kubeconfig: give --kubeconfig FILE, set KUBECONFIG"
    )
    missing = one_line_error(flox_isa("report", "--kubeconfig", str(tmp_path / "no"), env=env))
    assert missing == f"flox-isa: error: --kubeconfig {str(tmp_path / 'no')!r}: no such file"
    (port,) = free_ports(1)
    nowhere = write_kubeconfig(tmp_path / "nowhere", f"https://127.0.0.1:{port}")
    for command in (["explain", "nodes"], ["report", "-A"], ["explain", "deploy", "x"]):
        line = one_line_error(flox_isa(*command, "--kubeconfig", str(nowhere), env=env))
        assert line.startswith(
            f"flox-isa: error: Unable to connect to the server https://127.0.0.1:{port}:"
        ), line
    line = one_line_error(flox_isa("explain", "nodes", "--kubeconfig", str(cluster.kubeconfig),
                                   "--context", "nope", env=env))  # fmt: skip
    assert "nope" in line and "context" in line, line
    line = one_line_error(flox_isa("explain", "deployment", "missing", "-n", "default",
                                   "--kubeconfig", str(cluster.kubeconfig), env=env))  # fmt: skip
    assert line == (
        'flox-isa: error: Error from server (NotFound): deployments.apps "missing" not found'
    )
    # A service account with no role at all: every read is refused, naming verb + resource.
    account = f"cli-nobody-{RUN}"
    core.create_namespaced_service_account("default", {"metadata": {"name": account}})
    token = core.create_namespaced_service_account_token(
        account, "default", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token  # fmt: skip
    weak = cluster.token_kubeconfig(account, token, tmp_path / "weak.kubeconfig")
    line = one_line_error(flox_isa("explain", "nodes", "--kubeconfig", str(weak), env=env))
    assert line.startswith("flox-isa: error: Error from server (Forbidden): nodes is forbidden:")
    assert f'User "system:serviceaccount:default:{account}" cannot list resource "nodes"' in line
    line = one_line_error(flox_isa("report", "-n", "default", "--kubeconfig", str(weak), env=env))
    assert 'cannot list resource "' in line, line
    line = one_line_error(flox_isa("explain", "pod", "p", "--kubeconfig", str(weak), env=env))
    assert 'cannot get resource "pods" in API group "" in the namespace "default"' in line, line


# --- report ----------------------------------------------------------------------------


def test_report_counts_placed_pending_skipped_and_hints(
    cluster: DevCluster, tmp_path: Path
) -> None:
    nodes = ok_json(flox_isa("explain", "nodes", "--kubeconfig", str(cluster.kubeconfig),
                             "-o", "json"))  # fmt: skip
    amd64 = next(n for n in nodes if n["arch"] == "amd64" and n["best"]["int8-inference"])
    arm64 = next(n for n in nodes if n["arch"] == "arm64" and n["best"]["int8-inference"])
    opted = namespace(cluster, f"cli-report-{RUN}", opted_in=True)
    other = namespace(cluster, f"cli-report-other-{RUN}")

    def pod(name: str, ns: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels, "annotations": {
                names.ENVIRONMENT_ANNOTATION: ENVIRONMENT,
                names.WORKLOAD_ANNOTATION: "int8-inference",
            }},
            "spec": {"containers": [{"name": "w", "image": "flox/embedder"}], **spec},
        }  # fmt: skip
        cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", body)

    placed = {amd64["name"]: amd64["best"]["int8-inference"],
              arm64["name"]: arm64["best"]["int8-inference"]}  # fmt: skip
    for i, (node, variant) in enumerate(placed.items()):
        pod(f"placed-{i}", opted, {names.VARIANT_LABEL: variant}, {"nodeName": node})
    pod("gated", opted, {}, {"schedulingGates": [{"name": names.PLACEMENT_GATE}]})
    pod("unpatched", opted, {}, {"nodeName": amd64["name"]})
    pod("outsider", other, {}, {"nodeName": amd64["name"], "runtimeClassName": "flox"})

    config = str(cluster.kubeconfig)
    report = ok_json(flox_isa("report", "-n", opted, "--kubeconfig", config, "-o", "json"))
    expected_rows = []
    for node in (amd64, arm64):
        variant = CATALOG.get(node["best"]["int8-inference"])
        base = CATALOG.get({"amd64": "avx2", "arm64": "armv8.2"}[node["arch"]])
        assert variant is not None and base is not None
        expected_rows.append((node["instanceType"], variant.name, 1,
                              variant.score("int8-inference"), base.name,
                              base.score("int8-inference")))  # fmt: skip
    rows = [(r["instanceType"], r["variant"], r["pods"], r["ticketsPerSecond"], r["baseline"],
             r["baselineTicketsPerSecond"]) for r in report["rows"]]  # fmt: skip
    assert sorted(rows) == sorted(expected_rows)
    assert report["baselines"] == {"amd64": "avx2", "arm64": "armv8.2"}
    (pending,) = report["pending"]
    assert pending["name"] == "Pod/gated" and "placement controller" in pending["why"]
    # What the webhook would answer now for such a pod, on this fleet.
    (tmp_path / "fresh.json").write_text(json.dumps({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "f", "labels": {names.INJECT_LABEL: "true"}, "annotations": {
            names.ENVIRONMENT_ANNOTATION: ENVIRONMENT,
            names.WORKLOAD_ANNOTATION: "int8-inference"}},
        "spec": {"containers": [{"name": "w", "image": "flox/embedder"}]}}))  # fmt: skip
    decision = flox_isa("explain", "pod", "--pod", str(tmp_path / "fresh.json"),
                        "--kubeconfig", config)  # fmt: skip
    assert decision.returncode == 0, decision.stderr
    now = decision.stdout.splitlines()[1].removeprefix("variant: ")
    (skipped,) = report["skipped"]
    assert skipped["name"] == "Pod/unpatched"
    assert skipped["why"].endswith(f"today it would get {now}"), skipped
    assert report["hints"] == []  # the outsider is in another namespace

    everything = ok_json(flox_isa("report", "-A", "--kubeconfig", config, "-o", "json"))
    (hint,) = [h for h in everything["hints"] if h["namespace"] == other]
    best, avx2 = CATALOG.get(now), CATALOG.get("avx2")
    assert best is not None and avx2 is not None and best.arch == "amd64"
    assert best.score("int8-inference") > avx2.score("int8-inference"), "no gain: no hint"
    assert hint == {
        "namespace": other, "owner": "Pod/outsider", "pods": 1, "workload": "int8-inference",
        "runs": "avx2", "wouldGet": best.name,
        "gain": round(best.score("int8-inference") / avx2.score("int8-inference"), 3),
    }  # fmt: skip
    # --baseline replaces its architecture's default.
    avx512 = ok_json(flox_isa("report", "-n", opted, "--baseline", "avx512", "--kubeconfig",
                              config, "-o", "json"))  # fmt: skip
    assert avx512["baselines"] == {"amd64": "avx512", "arm64": "armv8.2"}
    bad = one_line_error(flox_isa("report", "--baseline", "avx2,avx512", "--kubeconfig", config))
    assert "avx2 and avx512 are both amd64" in bad

    # The same report through the real kubectl, as a plugin on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    plugin = subprocess.run(
        [str(bin_dir() / "kubectl"), "flox-isa", "report", "-n", opted, "--kubeconfig", config],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": path},
        check=False,
    )  # fmt: skip
    assert plugin.returncode == 0, plugin.stderr
    assert "INSTANCE-TYPE  WORKLOAD" in plugin.stdout
    assert "Pending: 1 pod" in plugin.stdout and "Opted in but not placed: 1 pod" in plugin.stdout

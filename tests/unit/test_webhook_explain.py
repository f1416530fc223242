"""`flox-isa explain pod` (the webhook's decision on files) and `flox-isa webhook --help`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flox_isa.cli import EXIT_INPUT, main
from flox_isa.webhook.commands import EXIT_DENIED
from tests.unit.test_webhook_decision import DATA

NODES = str(DATA / "nodes-default-fleet.yaml")


def explain(
    capsys: pytest.CaptureFixture[str], pod_file: str | Path, *extra: str
) -> tuple[int, str, str]:
    code = main(["explain", "pod", "--pod", str(pod_file), "--nodes", NODES, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, DATA / "auto-int8.yaml", "--output", "json")
    result = json.loads(out)
    assert code == 0
    assert set(result) == {"allowed", "patch", "warnings", "reason", "message"}
    assert (result["allowed"], result["reason"], result["warnings"]) == (True, "auto", [])
    env = next(op for op in result["patch"] if op["path"].endswith("flox.dev~1environment"))
    assert env["value"] == "yourorg/ticket-processor-avx512vnni"


def test_a_deployment_template_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, DATA / "deployment-arm-only.yaml")
    assert code == 0
    assert out.splitlines()[:2] == ["patched (auto)", "variant: armv9"]
    assert "2 of 6 eligible nodes offer armv9" in out


def test_a_denial_exits_1_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, DATA / "guard-conflict.yaml")
    assert code == EXIT_DENIED
    assert out.startswith("denied (conflict)")
    assert "kubernetes.io/arch=arm64" in out


def test_a_daemonset_is_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, DATA / "daemonset.yaml")
    assert (code, out.splitlines()[0]) == (0, "skipped (daemonset)")


@pytest.mark.parametrize(
    ("document", "mentions"),
    [
        (
            {"kind": "Service", "metadata": {"name": "s"}},
            "kind 'Service' has no pod; allowed kinds",
        ),
        ({"kind": "Deployment", "spec": {}}, "spec.template is missing"),
        ({"kind": "Pod", "metadata": {"labels": ["a"]}}, "metadata.labels"),
        (["not", "a", "pod"], "expected a Pod or a workload"),
    ],
)
def test_bad_files_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, document: Any, mentions: str
) -> None:
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(document))
    code, _, err = explain(capsys, path)
    assert code == EXIT_INPUT
    assert mentions in err


def test_webhook_command_keeps_the_flags_the_chart_uses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["webhook", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--port",
        "--tls-cert",
        "--tls-key",
        "--kubeconfig",
        "--catalog",
        "--host",
        "--namespace",
    ):
        assert flag in out


def test_webhook_command_refuses_missing_certificate_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["webhook", "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key")]
    )
    assert code == EXIT_INPUT
    assert "--tls-cert" in capsys.readouterr().err

"""The chart's PrometheusRule: valid rules (`promtool check rules`) whose alerts fire when
they should and stay quiet otherwise (`promtool test rules`, tests/data/prometheus/).

Needs promtool (Debian's `prometheus` package: `.ci/run` installs it; $PROMTOOL overrides).
Without it these tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.chart.test_chart import CHART, NAMESPACE, RELEASE, one, render, run_helm

RULES_TEST = Path(__file__).resolve().parents[2] / "data" / "prometheus" / "rules-test.yaml"
RULES = ("--set", "metrics.prometheusRule.enabled=true")


def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    message = "no promtool: apt-get install prometheus (or set PROMTOOL)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def rules_file(tmp_path: Path, *args: str) -> Path:
    rule = one(render(*RULES, *args), "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_rules_are_valid_prometheus_rules(tmp_path: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules_file(tmp_path))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 rules found" in result.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise(tmp_path: Path) -> None:
    rules_file(tmp_path)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((tmp_path / "rules.yaml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert tested == alerts  # every alert has its cases


def test_a_broken_threshold_is_caught_by_the_rule_tests(tmp_path: Path) -> None:
    """The rule tests can fail: with a ratio of 0.5 the 10% error case no longer fires."""
    rules_file(tmp_path, "--set-json", "metrics.prometheusRule.errorRatio=0.5")
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "FloxIsaWebhookErrors" in result.stdout + result.stderr


def test_latency_threshold_follows_the_webhook_timeout() -> None:
    rule = one(render(*RULES, "--set", "webhook.timeoutSeconds=10"), "PrometheusRule")
    slow = next(
        r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "FloxIsaWebhookSlow"
    )
    assert slow["expr"].endswith("> 5")


def test_monitoring_objects_render_only_when_asked() -> None:
    result = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE)
    assert "monitoring.coreos.com" not in result.stdout

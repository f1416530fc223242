"""`flox-isa explain pod` (the webhook's decision on files) and `flox-isa webhook --help`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from flox_isa.cli import EXIT_INPUT, main
from flox_isa.webhook.commands import EXIT_DENIED
from tests.unit.webhook.test_decision import DATA

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
        (
            {"kind": "Pod", "spec": {"containers": [{"name": "w", "resources": {"limits": []}}]}},
            "spec.containers.0.resources.limits: Expected `object | null`, got `array`",
        ),
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


def _patched_pod(variant: str) -> dict[str, Any]:
    from flox_isa.isa import names  # noqa: PLC0415
    from flox_isa.isa.catalog import default_catalog  # noqa: PLC0415
    from flox_isa.isa.contract import required_labels  # noqa: PLC0415

    known = default_catalog().get(variant)
    assert known is not None
    return {
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "labels": {names.INJECT_LABEL: "true", names.VARIANT_LABEL: variant, "app": "a"},
            "annotations": {
                names.ENVIRONMENT_ANNOTATION: f"acme/e-{variant}",
                names.BASE_ENVIRONMENT_ANNOTATION: "acme/e",
                names.WORKLOAD_ANNOTATION: "int8-inference",
                names.REASON_ANNOTATION: "then",
            },
        },
        "spec": {
            "nodeName": "m4-xlarge-0",
            "nodeSelector": {**required_labels(known), "kubernetes.io/os": "linux"},
            "containers": [{"name": "c", "image": "x"}],
        },
    }


def test_a_patched_pod_is_redecided_as_it_was_before_admission() -> None:
    from flox_isa.isa.catalog import default_catalog  # noqa: PLC0415
    from flox_isa.webhook.explain import explain_live, unpatched  # noqa: PLC0415

    catalog = default_catalog()
    before = unpatched(_patched_pod("avx2"), catalog)
    assert before is not None
    original, previous = before
    assert original["metadata"]["labels"] == {"isa.flox.dev/inject": "true", "app": "a"}
    assert original["metadata"]["annotations"] == {
        "flox.dev/environment": "acme/e",
        "isa.flox.dev/workload": "int8-inference",
    }
    assert original["spec"]["nodeSelector"] == {
        "kubernetes.io/os": "linux"
    }  # the user's own entry stays
    assert "nodeName" not in original["spec"]
    assert (previous.variant, previous.environment, previous.base_environment) == (
        "avx2", "acme/e-avx2", "acme/e",
    )  # fmt: skip
    nodes = yaml.safe_load(open(NODES).read())["items"]  # noqa: SIM115
    decision, again = explain_live(_patched_pod("avx2"), nodes, catalog)
    assert again is not None and (again.today, again.differs) == ("avx512vnni", True)
    assert decision.variant == "avx512vnni"
    assert again.text().endswith("today, from isa.flox.dev/base-environment acme/e: avx512vnni:"
                                 " differs")  # fmt: skip
    _, same = explain_live(_patched_pod("avx512vnni"), nodes, catalog)
    assert same is not None and not same.differs
    # A TicketWorker's pods carry no workload annotation: its spec.workload is used.
    workerless = _patched_pod("avx2")
    del workerless["metadata"]["annotations"]["isa.flox.dev/workload"]
    workerless["metadata"]["labels"]["isa.flox.dev/ticketworker"] = "tw"
    decision, spread = explain_live(workerless, nodes, catalog, "int8-inference")
    assert spread is not None and (decision.variant, spread.ticketworker) == ("avx512vnni", "tw")
    assert explain_live(workerless, nodes, catalog)[0].variant == "avx512"  # fp32 default
    # A pod never patched is explained as it is.
    plain = _patched_pod("avx2")
    del plain["metadata"]["annotations"]["isa.flox.dev/base-environment"]
    assert unpatched(plain, catalog) is None
    assert explain_live(plain, nodes, catalog)[1] is None


def test_cluster_argument_mistakes_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod_file = str(DATA / "auto-int8.yaml")
    assert main(["explain", "pod", "p", "--pod", pod_file, "--nodes", NODES]) == EXIT_INPUT
    assert "give the pod's NAME or --pod FILE, not both" in capsys.readouterr().err
    assert main(["explain", "pod", "--nodes", NODES]) == EXIT_INPUT
    assert "give the pod's NAME (read from the cluster) or --pod FILE" in capsys.readouterr().err
    assert main(["explain", "pod", "--pod", "-", "--nodes", "-"]) == EXIT_INPUT
    assert "only one of them can be standard input" in capsys.readouterr().err
    assert main(["report", "-A", "-n", "x"]) == EXIT_INPUT
    assert "give -n NAMESPACE or -A, not both" in capsys.readouterr().err
    assert main(["report", "--baseline", "generic"]) == EXIT_INPUT
    assert "--baseline: baseline variant 'generic' is not in the catalog" in (
        capsys.readouterr().err
    )


def test_nodes_from_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io  # noqa: PLC0415

    text = Path(NODES).read_text()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["explain", "nodes", "--nodes", "-", "-o", "json"]) == 0
    piped = json.loads(capsys.readouterr().out)
    assert main(["explain", "nodes", "--nodes", NODES, "-o", "json"]) == 0
    assert piped == json.loads(capsys.readouterr().out)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["explain", "pod", "--pod", str(DATA / "auto-int8.yaml"), "--nodes", "-"]) == 0


def test_yaml_output_is_the_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = explain(capsys, DATA / "auto-int8.yaml", "-o", "json")
    code_yaml, out_yaml, _ = explain(capsys, DATA / "auto-int8.yaml", "-o", "yaml")
    assert (code, code_yaml) == (0, 0)
    assert yaml.safe_load(out_yaml) == json.loads(out)


def test_a_pod_the_placement_controller_placed_keeps_the_selector_its_template_had() -> None:
    from flox_isa.isa import names  # noqa: PLC0415
    from flox_isa.isa.catalog import default_catalog  # noqa: PLC0415
    from flox_isa.isa.placement import Placement, ungated  # noqa: PLC0415
    from flox_isa.webhook.explain import unpatched  # noqa: PLC0415

    catalog = default_catalog()
    vnni = catalog.get("avx512vnni")
    assert vnni is not None
    flag = names.cpuid_label("AVX512VNNI")
    template = {"metadata": {"annotations": {names.ENVIRONMENT_ANNOTATION: "acme/e"}},
                "spec": {"nodeSelector": {flag: "true", "pool": "x"},
                         "schedulingGates": [{"name": names.PLACEMENT_GATE}]}}  # fmt: skip
    placed = ungated(template, Placement(vnni, "n1", "room"), "acme/e", "int8-inference")
    before = unpatched(placed, catalog)
    assert before is not None
    assert before[0]["spec"]["nodeSelector"] == {flag: "true", "pool": "x"}  # arch was ours
    assert names.ADDED_SELECTOR_ANNOTATION not in before[0]["metadata"]["annotations"]

"""`flox-isa detect` and `flox-isa explain nodes`: outputs, exit codes, errors, --help."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from flox_isa.cli import EXIT_INPUT, EXIT_NO_VARIANT, build_parser, main

# Flags lines trimmed from real processors; the full files, with their sources, are in
# flox_isa/devcluster/profiles/cpuinfo/.
CASCADE_LAKE_FLAGS = (
    "fpu vme sse sse2 ssse3 fma cx16 pcid sse4_1 sse4_2 movbe popcnt aes xsave avx f16c"
    " rdrand avx2 bmi1 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
)
SANDY_BRIDGE_FLAGS = "fpu vme sse sse2 ssse3 cx16 sse4_1 sse4_2 popcnt aes xsave avx"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_detect_json_names_the_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _cpuinfo(tmp_path, CASCADE_LAKE_FLAGS)
    argv = ("detect", "--cpuinfo", str(path), "--workload", "int8-inference", "--output", "json")
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert json.loads(out) == {
        "variant": "avx512vnni",
        "arch": "amd64",
        "workload": "int8-inference",
        "compatible": ["avx2", "avx512", "avx512vnni"],
        "reason": "has AVX512VNNI; int8-inference: avx512vnni 85 > avx512 52",
    }


def test_detect_text_defaults_to_fp32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "detect", "--cpuinfo", str(_cpuinfo(tmp_path, CASCADE_LAKE_FLAGS)))
    assert code == 0
    assert out.startswith("avx512\t")


def test_detect_nothing_fits_exits_3_and_names_missing_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _cpuinfo(tmp_path, SANDY_BRIDGE_FLAGS)
    code, out, _ = _run(capsys, "detect", "--cpuinfo", str(path), "--output", "json")
    assert code == EXIT_NO_VARIANT
    result = json.loads(out)
    assert result["variant"] is None
    assert result["reason"] == "no variant fits: nearest avx2 misses AVX2, FMA3"


def test_detect_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "detect", "--cpuinfo", str(tmp_path / "missing"))
    assert code == EXIT_INPUT
    assert "cannot read cpuinfo" in err and "No such file" in err
    assert "Traceback" not in err


def test_detect_malformed_cpuinfo_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text("hello world\n")
    code, _, err = _run(capsys, "detect", "--cpuinfo", str(path))
    assert code == EXIT_INPUT
    assert "flags" in err and "Features" in err


def test_bad_catalog_exits_2_naming_variant_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.yaml"
    scores = {"fp32-inference": 1, "int8-inference": 1, "bf16-training": 1}
    catalog.write_text(yaml.safe_dump({"variants": [{"name": "x", "arch": "mips", "flags": [],
                                                     "scores": scores}]}))  # fmt: skip
    cpuinfo = _cpuinfo(tmp_path, CASCADE_LAKE_FLAGS)
    code, _, err = _run(capsys, "detect", "--cpuinfo", str(cpuinfo), "--catalog", str(catalog))
    assert code == EXIT_INPUT
    assert "variant 'x': arch: unknown arch 'mips'; allowed: amd64, arm64" in err


def _node(name: str, arch: str, instance: str, flags: list[str]) -> dict[str, object]:
    labels = {f"feature.node.kubernetes.io/cpu-cpuid.{f}": "true" for f in flags}
    labels |= {"kubernetes.io/arch": arch, "node.kubernetes.io/instance-type": instance}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": "3920m"}},
    }


NODES = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        _node("m4-a", "amd64", "m4.xlarge", ["AVX2", "FMA3"]),
        _node("c8g-a", "arm64", "c8g.xlarge", ["SVE", "SVE2", "BF16", "I8MM", "FPHP", "ASIMDHP"]),
    ],
}


def test_explain_nodes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump(NODES))
    code, out, _ = _run(capsys, "explain", "nodes", "--nodes", str(path), "--output", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["arch"], r["instanceType"]) for r in rows] == [
        ("m4-a", "amd64", "m4.xlarge"),
        ("c8g-a", "arm64", "c8g.xlarge"),
    ]
    assert rows[0]["best"]["int8-inference"] == "avx2"
    assert rows[1]["best"] == {
        "fp32-inference": "armv9",
        "int8-inference": "armv9",
        "bf16-training": "armv9",
    }
    assert rows[1]["keyFlags"] == ["ASIMDHP", "BF16", "FPHP", "I8MM", "SVE", "SVE2"]


def test_explain_nodes_text_and_single_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(NODES["items"][0]))
    code, out, _ = _run(capsys, "explain", "nodes", "--nodes", str(path))
    assert code == 0
    header, row, _, summary = out.splitlines()
    assert header.split()[:3] == ["NAME", "ARCH", "INSTANCE-TYPE"]
    assert row.split() == ["m4-a", "amd64", "m4.xlarge", "avx2", "avx2", "avx2", "AVX2,FMA3"]
    assert summary == "fleet offers for fp32-inference: avx2 1 node (3.92 CPU)"


def test_explain_nodes_text_counts_each_node_under_its_best_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump(NODES))
    code, out, _ = _run(capsys, "explain", "nodes", "--nodes", str(path))
    assert code == 0
    assert out.splitlines()[-1] == (
        "fleet offers for fp32-inference: avx2 1 node (3.92 CPU), armv9 1 node (3.92 CPU)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: Pod\nmetadata: {name: p}\n", "kind: expected Node, NodeList or List, got 'Pod'"),
        ("- 1\n- 2\n", "expected a Node or a List of Nodes"),
        ("kind: List\nitems: [{kind: Pod}]\n", "items[0]: kind: expected Node, got 'Pod'"),
        ("kind: Node\nstatus: {allocatable: {cpu: lots}}\n", "status.allocatable.cpu"),
        ("kind: [", "is not valid YAML or JSON"),
    ],
)
def test_explain_nodes_bad_documents_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(content)
    code, _, err = _run(capsys, "explain", "nodes", "--nodes", str(path))
    assert code == EXIT_INPUT
    assert message in err


def _all_command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _all_command_paths(sub, (*prefix, name))
    return paths


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = _all_command_paths(build_parser())
    assert ("detect",) in paths and ("explain", "nodes") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        assert exited.value.code == 0, path
        assert "usage: flox-isa" in capsys.readouterr().out


@pytest.mark.parametrize("workers", ["0", "-3", "many"])
def test_operator_refuses_a_worker_count_below_one(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["operator", "--workers", workers])
    assert exited.value.code == 2
    assert f"--workers: expected a whole number >= 1, got '{workers}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["operator", "--max-gate-age", "0"], "--max-gate-age: expected seconds > 0"),
        (["operator", "--placement-lease-duration", "soon"], "--placement-lease-duration:"),
        (["operator", "--when-full", "later"], "--when-full: invalid choice: 'later'"),
        (["operator", "--growable-variants", " , "], "--growable-variants: expected a comma"),
        (["webhook", "--tls-cert", "c", "--tls-key", "k", "--placement-lease-duration", "0"],
         "--placement-lease-duration: expected seconds > 0"),
        (["ungate"], "the following arguments are required: --all"),
        (["operator", "--recover-unschedulable-after", "-5"],
         "--recover-unschedulable-after: expected seconds > 0"),
    ],
)  # fmt: skip
def test_placement_flags_refuse_bad_values(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_recovery_needs_the_placement_controller(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "operator", "--no-placement", "--recover-unschedulable-after", "5")
    assert code == EXIT_INPUT
    assert "--recover-unschedulable-after needs the placement controller" in err
    assert "Traceback" not in err


def test_unknown_growable_variants_are_named_with_what_is_allowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _run(capsys, "operator", "--growable-variants", "avx2,avx1024")
    assert code == EXIT_INPUT
    assert "--growable-variants: unknown variant(s) avx1024; allowed: avx2," in err
    assert "Traceback" not in err

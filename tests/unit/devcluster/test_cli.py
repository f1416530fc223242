"""`flox-isa devcluster` commands: help, and clear errors without a cluster or without go."""

from __future__ import annotations

from pathlib import Path

import pytest

from flox_isa.cli import main
from flox_isa.devcluster import build
from flox_isa.devcluster.versions import load_versions


@pytest.mark.parametrize("action", ["build", "up", "down", "status"])
def test_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["devcluster", action, "--help"])
    assert exit_info.value.code == 0
    assert f"flox-isa devcluster {action}" in capsys.readouterr().out


def test_status_and_down_without_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devcluster", "status", "--dir", str(tmp_path)]) == 1
    assert main(["devcluster", "down", "--dir", str(tmp_path)]) == 0
    assert "no devcluster" in capsys.readouterr().out


def test_missing_go_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOX_ISA_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no go, no npm
    assert main(["devcluster", "build"]) == 1
    err = capsys.readouterr().err
    assert "`go` command is not on PATH" in err
    assert "Traceback" not in err


def test_cache_dir_is_keyed_by_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOX_ISA_CACHE", str(tmp_path))
    assert build.bin_dir() == tmp_path / "bin" / load_versions().cache_key


def test_plan_builds_only_what_is_missing() -> None:
    steps = build.plan(load_versions(), ["kube-scheduler", "helm"])
    assert [s.names for s in steps] == [("kube-scheduler",), ("kubectl", "helm")]


def test_go_build_command_is_trimmed() -> None:
    command = build.go_build_command("k8s.io/x", Path("/o"), "-s -w")
    assert command[:3] == ["go", "build", "-trimpath"]
    assert "-ldflags=-s -w" in command


def test_unknown_fleet_fails_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "dc"
    assert main(["devcluster", "up", "--dir", str(directory), "--fleet", "no-such-fleet"]) == 2
    assert "no-such-fleet" in capsys.readouterr().err
    assert not directory.exists()


def test_a_malformed_fleet_file_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("\ufeffnodes: [{instanceType: m4.xlarge, labels: [a]}]\n", encoding="utf-8")
    directory = tmp_path / "dc"
    assert main(["devcluster", "up", "--dir", str(directory), "--fleet", str(fleet)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nodes[0].labels" in err and str(fleet) in err
    assert not directory.exists()

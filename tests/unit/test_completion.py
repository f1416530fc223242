"""Completion: kubectl's plugin protocol (cobra's) from the CLI's own parser, and shtab's."""

from __future__ import annotations

import pytest

from flox_isa.cli import build_parser, main
from flox_isa.completion import DIRECTIVE_DEFAULT, DIRECTIVE_NO_FILE, candidates, kubectl_complete


def test_commands_then_targets_then_aliases_once_begun() -> None:
    parser = build_parser()
    found, directive = candidates(parser, [""])
    assert {"explain", "report", "detect", "completion"} <= set(found)
    assert directive == DIRECTIVE_NO_FILE
    assert candidates(parser, ["explain", ""])[0] == [
        "cronjob", "daemonset", "deployment", "job", "nodes", "pod", "replicaset",
        "replicationcontroller", "statefulset",
    ]  # fmt: skip
    assert candidates(parser, ["explain", "de"])[0] == ["deploy", "deployment", "deployments"]


def test_options_and_their_values() -> None:
    parser = build_parser()
    assert candidates(parser, ["report", "--k"])[0] == ["--kubeconfig"]
    assert candidates(parser, ["report", "-n", "ns", "-o", ""]) == (
        ["text", "json", "yaml"], DIRECTIVE_NO_FILE,
    )  # fmt: skip
    # A file argument: the shell completes file names.
    assert candidates(parser, ["explain", "nodes", "--nodes", ""]) == ([], DIRECTIVE_DEFAULT)
    # A value already given does not count as a command.
    assert "--context" in candidates(parser, ["report", "--kubeconfig", "report", "--c"])[0]


def test_kubectl_complete_prints_candidates_then_the_directive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert kubectl_complete(["rep"], build_parser) == 0
    assert capsys.readouterr().out == "report\n:4\n"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shtab_scripts(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "explain" in script and "--kubeconfig" in script

"""`flox-isa selftest`'s check of the pod the API server returns for its dry run."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flox_isa.cli import EXIT_INPUT, main
from flox_isa.isa import names
from flox_isa.webhook.selftest import SELFTEST_ENVIRONMENT, check_patched, selftest_pod


def patched(variant: str = "avx2") -> dict[str, Any]:
    pod = selftest_pod("t")
    pod["metadata"]["labels"][names.VARIANT_LABEL] = variant
    pod["metadata"]["annotations"][names.BASE_ENVIRONMENT_ANNOTATION] = SELFTEST_ENVIRONMENT
    pod["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] = (
        f"{SELFTEST_ENVIRONMENT}-{variant}"
    )
    pod["metadata"]["annotations"][names.REASON_ANNOTATION] = "best variant"
    pod["spec"]["nodeSelector"] = {"feature.node.kubernetes.io/cpu-cpuid.AVX2": "true"}
    return pod


def test_the_selftest_pod_opts_in_by_its_own_label() -> None:
    pod = selftest_pod("t")
    assert pod["metadata"]["labels"] == {names.INJECT_LABEL: "true"}
    assert pod["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == SELFTEST_ENVIRONMENT


def test_a_patched_pod_passes() -> None:
    result = check_patched(patched())
    assert result.ok and result.variant == "avx2" and result.node_selector


def test_an_unpatched_pod_fails_and_says_what_is_missing() -> None:
    result = check_patched(selftest_pod("t"))
    assert not result.ok
    assert names.VARIANT_LABEL in result.message and "nodeSelector" in result.message
    partly = copy.deepcopy(patched())
    del partly["spec"]["nodeSelector"]
    assert not check_patched(partly).ok


def test_a_missing_kubeconfig_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", "--kubeconfig", "/nonexistent/kubeconfig"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert err.strip() == "flox-isa: error: --kubeconfig '/nonexistent/kubeconfig': no such file"

"""`flox-isa doctor` on saved cgroup/proc files (tests/data/doctor/SOURCES.md) and cited
cpuinfo texts, with a fake `python3` on PATH standing in for the environment's."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flox_isa.cli import main
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.doctor import (
    CgroupError,
    cgroup_paths,
    cgroup_v1,
    cgroup_v2,
    cpu_list_size,
    diagnose_pod,
    probe_result,
)

DATA = Path(__file__).parent.parent.parent / "data" / "doctor"
CPUINFO = Path(__file__).parents[3] / "flox_isa" / "devcluster" / "profiles" / "cpuinfo"
ICELAKE = CPUINFO / "icelake-8375c.txt"  # m6i: AVX-512 with VNNI
SKYLAKE = CPUINFO / "skylake-sp-8175m.txt"  # m5: AVX-512, no VNNI
GRAVITON3 = CPUINFO / "graviton3-neoverse-v1.txt"  # SVE, no SVE2

TORCH_OK = {"version": "2.5.1", "threads": 64, "interop": 64, "capability": "AVX512",
            "mkldnn": True, "env": {"ATEN_CPU_CAPABILITY": None}}  # fmt: skip


def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """A `python3` first on PATH running `script` (sh), instead of the environment's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python3"
    python.write_text("#!/bin/sh\n" + script + "\n")
    python.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return python


def prints(answer: dict[str, Any]) -> str:
    return f"cat <<'EOF'\n{json.dumps(answer)}\nEOF"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOX_ENV", "FLOX_PROMPT_ENVIRONMENTS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                 "OPENBLAS_NUM_THREADS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def doctor(
    capsys: pytest.CaptureFixture[str], root: str, cpuinfo: Path, *more: str
) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--root", str(DATA / root), "--cpuinfo", str(cpuinfo),
                 "--output", "json", *more])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    return code, {f["check"]: f for f in report["findings"]} | {"status": report["status"]}


# --- the pure readers ---------------------------------------------------------------------------


def test_cpu_lists_and_cgroup_files_read_as_the_kernel_writes_them() -> None:
    assert [cpu_list_size(t) for t in ("0-1", "16", "0-15,17-31\n", "0-3,8,10-11")] == [2, 1, 31, 7]
    v2 = cgroup_v2("150000 100000\n", "nr_periods 10\nnr_throttled 4\nthrottled_usec 9\n", "0-7")
    assert (v2.quota, v2.cpuset, v2.periods, v2.throttled, v2.throttled_us) == (
        Decimal("1.5"), 8, 10, 4, 9)  # fmt: skip
    assert cgroup_v2("max 100000", None, None).quota is None
    v1 = cgroup_v1("-1", "100000", "throttled_time 5000", "0-1")
    assert (v1.quota, v1.cpuset, v1.throttled_us) == (None, 2, 5)
    assert cgroup_paths("3:cpu,cpuacct:/kubepods/pod1\n0::/\n") == {
        "cpu": "/kubepods/pod1", "cpuacct": "/kubepods/pod1", "": "/"}  # fmt: skip


@pytest.mark.parametrize("cpu_max", ["150000", "abc 100000", "100 0", ""])
def test_a_malformed_cpu_max_is_an_error_naming_the_file(cpu_max: str) -> None:
    with pytest.raises(CgroupError, match=r"cpu\.max"):
        cgroup_v2(cpu_max, None, None)


def test_the_probe_result_tells_sigill_from_other_failures() -> None:
    assert probe_result("p", -4, "", "").status == "sigill"
    assert probe_result("p", 132, "", "Illegal instruction").status == "sigill"
    assert probe_result("p", 1, "", "Traceback\nImportError: x").detail == (
        "exit status 1: ImportError: x"
    )
    ok = probe_result("p", 0, json.dumps(TORCH_OK), "")
    assert (ok.status, ok.threads, ok.capability) == ("ok", 64, "AVX512")


# --- doctor on saved roots ----------------------------------------------------------------------


def test_an_unlimited_container_of_the_build_machine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path, monkeypatch, prints({**TORCH_OK, "threads": 2, "interop": 2}))
    monkeypatch.setenv("FLOX_PROMPT_ENVIRONMENTS", "acme/tickets-avx512vnni acme/tools")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "2")
    monkeypatch.setenv("FLOX_ENV", str(tmp_path / "no-such-env"))
    code, found = doctor(capsys, "v1-build-machine", ICELAKE, "--workload", "int8-inference")
    assert found["variant"]["status"] == "ok", found["variant"]
    assert "acme/tickets-avx512vnni is the avx512vnni build" in found["variant"]["message"]
    assert found["cpus"]["message"].startswith("usable CPUs 2 (")
    assert "cgroup v1 quota none, cpuset 2" in found["cpus"]["message"]
    assert (
        found["threads"]["status"] == "ok"
        and "(effective (after [vars]))" in (found["threads"]["message"])
    )
    assert (
        found["torch"]["status"] == "ok" and "ATen capability AVX512" in found["torch"]["message"]
    )
    assert (code, found["status"]) == (0, "ok")


def test_a_throttled_one_cpu_pod_with_torch_on_every_core(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path, monkeypatch, prints(TORCH_OK))
    code, found = doctor(capsys, "v1-k8s-1cpu-throttled", ICELAKE,
                         "--environment", "acme/tickets-avx512")  # fmt: skip
    assert code == 1 and found["status"] == "warn"
    assert "usable CPUs 1 (" in found["cpus"]["message"]
    assert found["throttling"]["status"] == "warn"
    assert found["throttling"]["message"] == "throttled in 675 of 8006 periods (8.4%, 1.9 s)"
    assert found["threads"]["status"] == "warn" and "set all three to 1" in found["threads"]["fix"]
    assert found["process"]["status"] == "warn"  # 33 threads on 1 CPU
    assert found["torch-threads"]["message"] == "torch.get_num_threads() is 64 on 1 usable CPUs"
    assert "set_num_interop_threads(1)" in found["torch-interop"]["fix"]
    # avx512 on a VNNI CPU for fp32: as good as it gets (equal scores, wider fit).
    assert found["variant"]["status"] == "ok"


def test_a_cgroup_v2_quota_of_1500m_is_one_usable_cpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path, monkeypatch, prints({**TORCH_OK, "threads": 1, "interop": 1}))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    code, found = doctor(capsys, "v2-1500m-limit", SKYLAKE, "--environment", "acme/t-avx512")
    assert "cgroup v2 quota 1.5, cpuset 8" in found["cpus"]["message"]
    assert "usable CPUs 1 (" in found["cpus"]["message"]
    assert found["throttling"]["message"].startswith("throttled in 397 of 1201 periods (33.1%")
    assert "more threads than 1 usable CPUs" in found["threads"]["message"]
    assert code == 1


def test_a_build_too_new_for_the_cpu_dies_with_sigill_and_that_is_the_finding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path, monkeypatch, "kill -ILL $$")
    monkeypatch.setenv("FLOX_PROMPT_ENVIRONMENTS", "acme/tickets-avx512vnni")
    code, found = doctor(capsys, "v1-build-machine", SKYLAKE, "--workload", "int8-inference")
    assert code == 1 and found["status"] == "fail"
    assert found["torch"]["status"] == "fail" and "SIGILL" in found["torch"]["message"]
    assert found["torch"]["fix"] == "use the avx512 build"
    variant = found["variant"]
    assert variant["status"] == "fail" and "lacks AVX512VNNI" in variant["message"]
    assert "Illegal instruction" in variant["message"]


def test_a_slower_build_than_the_cpu_runs_is_a_warning_with_the_better_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path, monkeypatch, prints({"env": {}, "error": "import torch: none"}))
    _, found = doctor(capsys, "v1-build-machine", ICELAKE, "--workload", "int8-inference",
                      "--environment", "acme/tickets-avx2")  # fmt: skip
    assert found["variant"]["status"] == "warn"
    assert found["variant"]["fix"] == "use acme/tickets-avx512vnni"
    assert found["torch"]["status"] == "info"  # no torch in this environment


def test_an_armv9_build_on_graviton3_lacks_sve2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_python(tmp_path, monkeypatch, "kill -ILL $$")
    _, found = doctor(capsys, "v1-build-machine", GRAVITON3, "--environment", "acme/t-armv9")
    assert "lacks" in found["variant"]["message"] and "SVE2" in found["variant"]["message"]
    assert found["torch"]["fix"] == "use the armv8.2 build"


def test_kernel_caps_and_missing_onednn_are_findings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = {**TORCH_OK, "threads": 1, "interop": 1, "mkldnn": False,
              "env": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": None}}  # fmt: skip
    fake_python(tmp_path, monkeypatch, prints(answer))
    code = main(["doctor", "--root", str(DATA / "v1-build-machine"), "--cpuinfo", str(ICELAKE)])
    text = capsys.readouterr().out
    assert code == 1
    assert "WARN  kernels       ATEN_CPU_CAPABILITY=default caps the kernels" in text
    assert "fix: unset ATEN_CPU_CAPABILITY" in text
    assert "torch.backends.mkldnn.is_available() is False" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--root", "/no/such/dir"], "--root '/no/such/dir': not a directory"),
        (["--pid", "4242"], "--pid 4242: no process 4242 under"),
        (["--pid", "x;y"], "--pid 'x;y': expected a process id or 'self'"),
        (["--pod", "justaname"], "--pod 'justaname': expected NAMESPACE/NAME"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    base = ["doctor", "--root", str(DATA / "v1-build-machine"), "--cpuinfo", str(ICELAKE)]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_malformed_saved_cgroup_file_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(DATA / "v2-1500m-limit", root)
    (root / "sys/fs/cgroup/cpu.max").write_text("lots\n")
    assert main(["doctor", "--root", str(root), "--cpuinfo", str(ICELAKE)]) == 2
    assert "cpu.max: 'lots' is not '<quota|max> <period>'" in capsys.readouterr().err


# --- doctor --pod: the static part (its I/O is tested in tests/e2e/test_webhook.py) -------------


def test_a_pods_static_findings() -> None:
    pod = {
        "metadata": {"annotations": {"flox.dev/environment": "acme/t-avx512vnni",
                                     "isa.flox.dev/workload": "int8-inference"}},
        "spec": {"nodeName": "n1", "containers": [
            {"name": "worker", "resources": {"limits": {"cpu": "2"}}},
            {"name": "tuned", "resources": {"limits": {"cpu": "2"}},
             "env": [{"name": v, "value": "2"} for v in
                     ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")]},
        ]},
    }  # fmt: skip
    avx2_node = {"metadata": {"name": "n1", "labels": {
        "kubernetes.io/arch": "amd64", "feature.node.kubernetes.io/cpu-cpuid.AVX2": "true",
        "feature.node.kubernetes.io/cpu-cpuid.FMA3": "true"}}}  # fmt: skip
    found = diagnose_pod(pod, avx2_node, default_catalog())
    by_check = [(f.check, f.status) for f in found]
    assert by_check == [("node", "ok"), ("variant", "fail"), ("container", "warn"),
                        ("container", "ok")]  # fmt: skip
    assert "best for int8-inference is avx2" in found[0].message
    assert "expected 2 (floor of CPU limit 2)" in found[2].message

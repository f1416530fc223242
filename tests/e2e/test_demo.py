"""`make demo`'s flow, end to end, on a control plane of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flox_isa.demo import scenario
from flox_isa.demo.run import Options, down, run
from flox_isa.devcluster import cluster
from flox_isa.devcluster.build import bin_dir
from flox_isa.devcluster.fleet import instance_profiles
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.features import features_from_labels
from flox_isa.isa.nfd import nfd_labels
from flox_isa.isa.report import ReportRow, speedup
from flox_isa.isa.selection import choose

RUNS_ON = {
    "avx2": {"m4", "m6i", "m7i"},
    "avx512": {"m6i", "m7i"},
    "avx512vnni": {"m6i", "m7i"},
    "armv8.2": {"c6g", "c7g", "c8g"},
    "armv9": {"c8g"},  # SVE2: Graviton4, not Graviton3
}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(os.environ.get("FLOX_ISA_E2E_KUBECONFIG")),
        reason="the demo starts its own local control plane",
    ),
]


def check_report_commands(kubeconfig: Path, lines: list[str], rows: list[ReportRow]) -> None:
    """`flox-isa report` and `kubectl flox-isa report` give the demo's figures."""
    as_json = subprocess.run(
        [sys.executable, "-m", "flox_isa", "report", "-n", scenario.NAMESPACE, "-o", "json",
         "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(as_json.stdout)
    assert [(r["instanceType"], r["workload"], r["variant"], r["pods"]) for r in report["rows"]
            ] == [(r.instance_type, r.workload, r.variant, r.pods) for r in rows]  # fmt: skip
    assert report["total"]["ratio"] == pytest.approx(speedup(rows), abs=0.001)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    plugin = subprocess.run(
        [str(bin_dir() / "kubectl"), "flox-isa", "report", "-n", scenario.NAMESPACE,
         "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=120, check=True, env={**os.environ, "PATH": path},
    )  # fmt: skip
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("INSTANCE-TYPE"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Expected throughput"))
    table = lines[start : end + 1]
    assert table[0].split() == ["INSTANCE-TYPE", "WORKLOAD", "VARIANT", "PODS", "TICKETS/S",
                                "BASELINE", "BASELINE-TICKETS/S", "RATIO"]  # fmt: skip
    printed = plugin.stdout.splitlines()
    for line in table:
        assert line in printed, (line, plugin.stdout)


def best_int8_variant(instance_type: str) -> str | None:
    """The variant `choose` picks for int8 on the CPU NFD labels an instance type with."""
    features = features_from_labels(nfd_labels(instance_profiles()[instance_type].features))
    best = choose(default_catalog(), features, "int8-inference").variant
    return best.name if best else None


def test_demo_places_every_pod_on_its_best_variant_and_cleans_up(tmp_path: Path) -> None:
    lines: list[str] = []
    options = Options(tmp_path / "demo", once=False, timeout=240)
    try:
        rows = run(options, default_catalog(), lines.append)
        check_report_commands(tmp_path / "demo" / cluster.KUBECONFIG_FILE, lines, rows)
    finally:
        down(options.directory, lambda _line: None)

    # The TicketWorker's pods prefer their variant's best nodes, and the fleet has
    # room: each lands on a node whose best int8 variant is the pod's own.
    misplaced = [
        (row.instance_type, row.variant, row.pods)
        for row in rows
        if row.workload == "int8-inference" and best_int8_variant(row.instance_type) != row.variant
    ]
    assert misplaced == [], misplaced

    pods_by_variant: dict[tuple[str, str], int] = {}
    for row in rows:
        family = row.instance_type.split(".")[0]
        # Every pod runs a build its node's CPU can execute.
        assert family in RUNS_ON[row.variant], row
        key = (row.workload, row.variant)
        pods_by_variant[key] = pods_by_variant.get(key, 0) + row.pods
    # fp32 summarization (16 x 2 CPUs, gated and placed by the placement controller): the
    # fleet's best fp32 build (avx512, the widest of the 52s) while its 4 nodes have room
    # (3 each beside the TicketWorker's pods), the other 4 spilled to the next variant.
    fp32 = {v: n for (w, v), n in pods_by_variant.items() if w == "fp32-inference"}
    assert fp32["avx512"] == 12 and sum(fp32.values()) == 16 and len(fp32) == 2, fp32
    (spilled_to,) = set(fp32) - {"avx512"}
    assert any(line.startswith(f"Spilled: 4 summarizer pods to {spilled_to}") for line in lines)
    # int8 embeddings, spread: each variant that is some node's best gets replicas,
    # in proportion to CPU (3 m4, 3 m6i + 1 m7i, 2 c6g, 2 c8g; 12 replicas).
    assert {v: n for (w, v), n in pods_by_variant.items() if w == "int8-inference"} == {
        "avx2": 3,
        "avx512vnni": 5,
        "armv8.2": 2,
        "armv9": 2,
    }
    assert speedup(rows) > 1.0
    # Each pod is compared with its own architecture's baseline: Graviton pods with armv8.2.
    assert {(r.variant, r.baseline) for r in rows} == {
        ("avx2", "avx2"), ("avx512", "avx2"), ("avx512vnni", "avx2"),
        ("armv8.2", "armv8.2"), ("armv9", "armv8.2"),
    }  # fmt: skip
    assert any("baseline build of each architecture (avx2 on amd64, armv8.2 on arm64)" in line
               for line in lines)  # fmt: skip
    # down leaves nothing running.
    state, _ = cluster.status(tmp_path / "demo")
    assert state is None or not state.running()

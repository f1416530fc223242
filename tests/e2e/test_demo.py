"""`make demo`'s flow, end to end, on a control plane of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flox_isa.demo.run import Options, run
from flox_isa.devcluster import cluster
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.report import speedup

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(os.environ.get("FLOX_ISA_E2E_KUBECONFIG")),
        reason="the demo starts its own local control plane",
    ),
]


def test_demo_places_every_pod_on_its_best_variant_and_cleans_up(tmp_path: Path) -> None:
    lines: list[str] = []
    rows = run(Options(tmp_path / "demo", once=True, timeout=240), default_catalog(), lines.append)

    by_type = {(r.instance_type.split(".")[0], r.workload): r.variant for r in rows}
    # int8 embeddings: VNNI where the fleet has it, the best build elsewhere.
    assert by_type[("m6i", "int8-inference")] == "avx512vnni"
    assert by_type.get(("m4", "int8-inference"), "avx2") == "avx2"
    # fp32 summarization goes to the fleet's best fp32 variant (avx512 on m6i/m7i).
    fp32_variants = {v for (_, w), v in by_type.items() if w == "fp32-inference"}
    assert fp32_variants == {"avx512"}
    assert sum(r.pods for r in rows) == 18
    assert speedup(rows) > 1.0
    assert any("avx2 build everywhere" in line for line in lines)
    # --once leaves nothing running.
    state, _ = cluster.status(tmp_path / "demo")
    assert state is None or not state.running()

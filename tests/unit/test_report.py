"""The demo's throughput summary against the avx2-everywhere baseline."""

from __future__ import annotations

import pytest

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.report import Placement, speedup, throughput_rows

CATALOG = default_catalog()


def test_rows_group_pods_and_compare_with_avx2_everywhere() -> None:
    placements = [
        Placement("m6i.xlarge", "avx512vnni", "int8-inference"),
        Placement("m6i.xlarge", "avx512vnni", "int8-inference"),
        Placement("m4.xlarge", "avx2", "int8-inference"),
        Placement("c7g.xlarge", "armv9", "fp32-inference"),
    ]
    rows = throughput_rows(placements, CATALOG)
    summary = [(r.instance_type, r.variant, r.pods, r.throughput, r.baseline_throughput)
               for r in rows]  # fmt: skip
    assert summary == [
        ("c7g.xlarge", "armv9", 1, 41, 35),
        ("m4.xlarge", "avx2", 1, 35, 35),
        ("m6i.xlarge", "avx512vnni", 2, 170, 70),
    ]
    assert speedup(rows) == pytest.approx((41 + 35 + 170) / (35 * 4))


def test_unknown_baseline_is_an_error() -> None:
    with pytest.raises(ValueError, match="baseline variant 'generic' is not in the catalog"):
        throughput_rows([], CATALOG, baseline="generic")


def test_no_pods_is_a_ratio_of_one() -> None:
    assert speedup([]) == 1.0

"""A fleet's offers and the largest-remainder replica split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.features import Features
from flox_isa.isa.fleet import (
    NodeInfo,
    feature_groups,
    fleet_offers,
    parse_cpu_quantity,
    split_replicas,
)

CATALOG = default_catalog()
AVX2 = Features("amd64", frozenset({"AVX2", "FMA3"}))
VNNI = Features(
    "amd64",
    frozenset({"AVX2", "FMA3", "AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL",
               "AVX512VNNI"}),
)  # fmt: skip
GRAVITON3 = Features("arm64", frozenset({"ASIMD", "FPHP", "ASIMDHP", "SVE", "BF16", "I8MM"}))
OLD = Features("amd64", frozenset({"AVX"}))


def test_each_node_counts_once_under_its_best_variant() -> None:
    nodes = [
        NodeInfo("m4-1", AVX2, 3.92),
        NodeInfo("m6i-1", VNNI, 7.91),
        NodeInfo("m6i-2", VNNI, 7.91),
        NodeInfo("c7g-1", GRAVITON3, 3.92),
        NodeInfo("ancient", OLD, 2.0),
    ]
    offers = fleet_offers(CATALOG, feature_groups(nodes), "int8-inference")
    summary = {o.variant.name: (o.node_count, round(o.allocatable_cpu, 2)) for o in offers}
    # Graviton3 has SVE but no SVE2, which armv9 builds need: it counts under armv8.2.
    assert summary == {"avx2": (1, 3.92), "avx512vnni": (2, 15.82), "armv8.2": (1, 3.92)}


def test_offers_respect_the_allowed_variants() -> None:
    groups = feature_groups([NodeInfo("m6i", VNNI, 8)])
    offers = fleet_offers(CATALOG, groups, "int8-inference", {"avx2"})
    assert [(o.variant.name, o.node_count) for o in offers] == [("avx2", 1)]


@pytest.mark.parametrize(
    ("quantity", "cores"), [("4", 4.0), ("3920m", 3.92), ("1.5", 1.5), ("0", 0.0)]
)
def test_cpu_quantities(quantity: str, cores: float) -> None:
    assert parse_cpu_quantity(quantity) == pytest.approx(cores)


def test_malformed_cpu_quantity_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a CPU quantity: '4 cores'"):
        parse_cpu_quantity("4 cores")


def test_split_is_proportional_with_largest_remainder() -> None:
    assert split_replicas({"a": 1.0, "b": 1.0, "c": 1.0}, 10) == {"a": 4, "b": 3, "c": 3}
    assert split_replicas({"avx2": 4.0, "vnni": 16.0}, 5) == {"avx2": 1, "vnni": 4}
    assert split_replicas({"a": 0.0, "b": 0.0}, 3) == {"a": 2, "b": 1}
    assert split_replicas({}, 3) == {}


@given(
    st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 1000), min_size=1),
    st.integers(0, 500),
)
def test_split_always_sums_to_total_and_stays_within_one_of_quota(
    weights: dict[str, float], total: int
) -> None:
    shares = split_replicas(weights, total)
    assert sum(shares.values()) == total
    weight_sum = sum(weights.values())
    if weight_sum > 0:
        for name, share in shares.items():
            assert abs(share - total * weights[name] / weight_sum) < 1 + 1e-9

"""The preferred node affinity that steers a variant's pods to its best nodes (pure)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flox_isa.devcluster.fleet import instance_profiles, node_manifests, parse_fleet
from flox_isa.isa import names
from flox_isa.isa.catalog import WORKLOADS, Variant, Workload, default_catalog
from flox_isa.isa.constraints import constraints_of
from flox_isa.isa.features import features_from_labels
from flox_isa.isa.nodes import node_state
from flox_isa.isa.planning import (
    BEST_NODE_WEIGHT,
    best_node_cubes,
    best_node_preference,
    outranking,
)
from flox_isa.isa.scheduling import matches_required_terms
from flox_isa.isa.selection import choose

CATALOG = default_catalog()


def variant(name: str) -> Variant:
    found = CATALOG.get(name)
    assert found is not None
    return found


def preference(
    name: str, workload: Workload, allowed: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    chosen = variant(name)
    return best_node_preference(chosen, outranking(CATALOG, chosen, workload, allowed))


def score(terms: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> int:
    """What kube-scheduler's NodeAffinity plugin sums for a node: weights of matched terms."""
    return sum(
        int(term["weight"])
        for term in terms
        if matches_required_terms(
            constraints_of(
                {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [term["preference"]]
                            }
                        }
                    }
                }
            ).required_terms,
            labels,
        )
    )


def instance_labels(instance_type: str) -> Mapping[str, str]:
    """A node's labels as the simulated fleet (NFD defaults) gives them."""
    (manifest,) = node_manifests(parse_fleet(f"nodes: [{{instanceType: {instance_type}}}]"))
    return node_state(manifest).labels


def keys_by_operator(term: Mapping[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for expression in term["preference"]["matchExpressions"]:
        flag = expression["key"].removeprefix(names.NFD_CPUID_PREFIX)
        found.setdefault(expression["operator"], set()).add(flag)
    return found


AVX512 = {"AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"}


def test_avx2_under_int8_prefers_nodes_without_avx512() -> None:
    terms = preference("avx2", "int8-inference")
    assert {t["weight"] for t in terms} == {BEST_NODE_WEIGHT}
    for term in terms:
        # Each term: one AVX512 flag missing (the ones before it present). Missing
        # any AVX512 flag rules out avx512, avx512bf16 and avx512vnni at once.
        by_operator = keys_by_operator(term)
        assert len(by_operator["NotIn"]) == 1
        assert by_operator["NotIn"] | by_operator.get("In", set()) <= AVX512
    assert {t["preference"]["matchExpressions"][0]["values"][0] for t in terms} == {"true"}
    assert score(terms, instance_labels("m4.xlarge")) == BEST_NODE_WEIGHT  # Broadwell
    for better in ("c5.xlarge", "m6i.xlarge", "m7i.xlarge"):  # avx512 / avx512vnni nodes
        assert score(terms, instance_labels(better)) == 0, better


def test_avx512_under_int8_prefers_nodes_without_vnni() -> None:
    terms = preference("avx512", "int8-inference")
    assert [keys_by_operator(t) for t in terms] == [{"NotIn": {"AVX512VNNI"}}]
    assert score(terms, instance_labels("c5.xlarge")) == BEST_NODE_WEIGHT  # Skylake
    assert score(terms, instance_labels("m6i.xlarge")) == 0  # Ice Lake: VNNI


def test_armv8_2_under_int8_prefers_nodes_without_sve_sve2_bf16_or_i8mm() -> None:
    terms = preference("armv8.2", "int8-inference")
    assert len(terms) == 4
    assert set().union(*(keys_by_operator(t)["NotIn"] for t in terms)) == {
        "SVE",
        "SVE2",
        "BF16",
        "I8MM",
    }
    assert score(terms, instance_labels("c6g.xlarge")) == BEST_NODE_WEIGHT  # Graviton2
    # Graviton3 has SVE but no SVE2: armv9 cannot run there, so it is armv8.2's too.
    assert score(terms, instance_labels("c7g.xlarge")) == BEST_NODE_WEIGHT
    assert score(terms, instance_labels("c8g.xlarge")) == 0  # Graviton4


@pytest.mark.parametrize(
    ("name", "workload"),
    [
        ("avx512vnni", "int8-inference"),
        ("armv9", "int8-inference"),
        ("avx512", "fp32-inference"),
        ("avx512bf16", "bf16-training"),
    ],
)
def test_the_best_variant_of_its_arch_needs_no_preference(name: str, workload: Workload) -> None:
    chosen = variant(name)
    assert outranking(CATALOG, chosen, workload, None) == ()
    assert best_node_cubes(chosen, ()) == ()
    assert preference(name, workload) == []


def test_a_variant_that_is_never_best_gets_no_preference() -> None:
    # int8: avx512 scores as avx512bf16 with fewer flags, so it wins wherever bf16 fits.
    chosen = variant("avx512bf16")
    assert best_node_cubes(chosen, outranking(CATALOG, chosen, "int8-inference", None)) is None
    assert preference("avx512bf16", "int8-inference") == []


def test_only_allowed_variants_outrank() -> None:
    assert preference("avx512", "int8-inference", ["avx2", "avx512"]) == []
    # Without avx512 on the list, avx2 is best on a Skylake node (no VNNI, no BF16).
    terms = preference("avx2", "int8-inference", ["avx2", "avx512bf16", "avx512vnni"])
    assert score(terms, instance_labels("c5.xlarge")) == BEST_NODE_WEIGHT
    assert score(terms, instance_labels("m4.xlarge")) == BEST_NODE_WEIGHT
    assert score(terms, instance_labels("m6i.xlarge")) == 0


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_simulated_instance_type_scores_100_exactly_where_the_variant_is_best(
    workload: Workload,
) -> None:
    for instance_type in instance_profiles():
        labels = instance_labels(instance_type)
        best = choose(CATALOG, features_from_labels(labels), workload).variant
        for candidate in CATALOG.variants:
            if not set(candidate.flags) <= features_from_labels(labels).flags:
                continue  # the nodeSelector keeps the variant's pods off this node
            terms = preference(candidate.name, workload)
            # A variant nothing outranks has no terms: every node it fits scores 0, evenly.
            expected = BEST_NODE_WEIGHT if best == candidate and terms else 0
            assert score(terms, labels) == expected, (instance_type, workload, candidate.name)


def all_flag_labels(arch: str, flags: frozenset[str]) -> dict[str, str]:
    return {names.ARCH_LABEL: arch, **{names.cpuid_label(f): "true" for f in flags}}


@given(
    workload=st.sampled_from(WORKLOADS),
    allowed=st.sets(st.sampled_from(CATALOG.names), min_size=1),
    data=st.data(),
)
def test_on_any_node_a_variant_fits_it_scores_100_iff_it_is_the_best(
    workload: Workload, allowed: set[str], data: st.DataObject
) -> None:
    """Matched terms are exclusive: best nodes all score the same, every other 0."""
    name = data.draw(st.sampled_from(sorted(allowed)))
    chosen = variant(name)
    same_arch = sorted(set().union(*(v.flags for v in CATALOG.variants if v.arch == chosen.arch)))
    extra = data.draw(st.sets(st.sampled_from(same_arch)))
    labels = all_flag_labels(chosen.arch, chosen.flags | frozenset(extra))
    cubes = best_node_cubes(chosen, outranking(CATALOG, chosen, workload, allowed))
    terms = preference(name, workload, sorted(allowed))
    best = choose(CATALOG, features_from_labels(labels), workload, allowed).variant
    assert best is not None  # `chosen` fits
    if cubes == ():  # nothing outranks it: it is the best wherever it fits
        assert (terms, best) == ([], chosen)
    elif cubes is None:  # never the best
        assert terms == []
        assert best != chosen
    else:
        assert score(terms, labels) == (BEST_NODE_WEIGHT if best == chosen else 0)


def test_terms_are_pairwise_exclusive_for_the_whole_default_catalog() -> None:
    """No two terms of one variant can match the same node (one literal contradicts)."""
    for workload, chosen in itertools.product(WORKLOADS, CATALOG.variants):
        cubes = best_node_cubes(chosen, outranking(CATALOG, chosen, workload, None)) or ()
        for a, b in itertools.combinations(cubes, 2):
            assert any((flag, not present) in b for flag, present in a), (workload, chosen)

"""The environment reference grammar and a variant's environment name (issue 15)."""

from __future__ import annotations

import re

import pytest

from flox_isa.isa import contract
from flox_isa.isa.catalog import default_catalog

CATALOG = default_catalog()
AVX2 = CATALOG.get("avx2")
assert AVX2 is not None


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        ("acme/ticket-processor", True),
        ("acme.io/tp_2", True),
        ("flox/quotes-app:2", True),
        ("acme/embedder-avx2:7", True),
        ("acme", False),
        ("acme/tp/extra", False),
        ("/tp", False),
        ("acme/", False),
        ("acme/tp ", False),
        ("acme/x\n", False),  # `$` would accept it
        ("acme/x:", False),
        ("acme/x:a", False),
        ("acme/x:3:4", False),
        ("acme/x:-3", False),
        ("acme:3/x", False),
        ("acme/x:1234567890", False),
    ],
)
def test_the_grammar_is_one_pattern_for_python_and_cel(reference: str, valid: bool) -> None:
    assert contract.is_environment(reference) == valid
    # CEL (RE2) anchors the same pattern; `re.fullmatch` is RE2's whole-string match.
    assert f"^(?:{contract.ENVIRONMENT_REGEX})$" == contract.ENVIRONMENT_CEL_REGEX
    assert bool(re.fullmatch(contract.ENVIRONMENT_CEL_REGEX, reference)) == valid
    assert "^" not in contract.ENVIRONMENT_REGEX and "$" not in contract.ENVIRONMENT_REGEX


def test_a_reference_parses_into_name_and_generation() -> None:
    assert contract.parse_environment("acme/x:3") == contract.Reference("acme/x", 3)
    assert contract.parse_environment("acme/x") == contract.Reference("acme/x", None)
    assert contract.parse_environment("acme/x:") is None
    assert str(contract.Reference("acme/x", 3)) == "acme/x:3"
    assert contract.is_pinned("acme/x:3") and not contract.is_pinned("acme/x")


def test_a_variants_environment_carries_its_own_generation() -> None:
    assert AVX2 is not None
    assert contract.variant_environment("acme/x", AVX2) == "acme/x-avx2"
    generations = {"avx2": 4, "avx512vnni": 6}
    # Not `acme/x:3-avx2`, and not generation 3: FloxHub counts per environment.
    assert contract.variant_environment("acme/x:3", AVX2, generations) == "acme/x-avx2:4"
    assert contract.variant_environment("acme/x", AVX2, generations) == "acme/x-avx2:4"
    with pytest.raises(contract.GenerationError, match="avx2's generation"):
        contract.variant_environment("acme/x:3", AVX2)
    with pytest.raises(contract.GenerationError):
        contract.variant_environment("acme/x:3", AVX2, {"armv9": 2})


def test_every_built_reference_is_a_valid_reference() -> None:
    for variant in CATALOG.variants:
        for base in ("acme/x", "acme/x:3"):
            built = contract.variant_environment(base, variant, {variant.name: 12})
            assert contract.is_environment(built), built
            assert CATALOG.variant_for_environment(built.partition(":")[0]) == variant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("avx2=4,avx512vnni=6", {"avx2": 4, "avx512vnni": 6}),
        (" avx2 = 4 , ", {"avx2": 4}),
    ],
)
def test_generations_parse(text: str, expected: dict[str, int]) -> None:
    assert contract.parse_generations(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        (" , ", "is empty"),
        ("avx2", "'avx2' is not variant=generation"),
        ("avx2=x", "'avx2=x' is not variant=generation"),
        ("avx2=-1", "is not variant=generation"),
        ("=4", "is not variant=generation"),
        ("avx2=٣", "is not variant=generation"),  # a non-ASCII digit
        ("avx2=1234567890", "is not variant=generation"),
        ("avx2=1,avx2=2", "'avx2' is given twice"),
    ],
)
def test_bad_generations_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        contract.parse_generations(text)

"""A TicketWorker with a pinned environment and spec.generations (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest

from flox_isa.isa import names
from flox_isa.operator.diff import Create
from flox_isa.operator.reconcile import decide
from tests.unit.isa.test_planning import fleet
from tests.unit.operator.test_reconcile import CATALOG, groups, ticketworker

NODES = fleet("m4.xlarge x1", "m6i.xlarge x2", "c8g.xlarge x1")


def environments(**spec: Any) -> dict[str, str]:
    decision = decide(ticketworker(**spec), CATALOG, groups(NODES), {})
    assert decision.problem is None, decision.problem
    return {
        action.name: action.body["spec"]["template"]["metadata"]["annotations"][
            names.ENVIRONMENT_ANNOTATION
        ]
        for action in decision.actions
        if isinstance(action, Create)
    }


def test_each_variant_runs_its_own_generation_and_only_those_named() -> None:
    found = environments(
        environment="acme/tp:3",
        workload="int8-inference",
        generations={"avx2": 4, "avx512vnni": 6},
    )
    assert found == {"tw-avx2": "acme/tp-avx2:4", "tw-avx512vnni": "acme/tp-avx512vnni:6"}


def test_generations_narrow_spec_variants() -> None:
    found = environments(variants=["avx2", "armv9"], generations={"armv9": 2, "avx512": 1})
    assert found == {"tw-armv9": "acme/tp-armv9:2"}


def test_without_generations_nothing_is_pinned() -> None:
    assert environments()["tw-avx2"] == "acme/tp-avx2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"environment": "acme/tp:3"}, "spec.environment pins a generation"),
        ({"environment": "acme/tp:3"}, "generations: {avx2: 4, avx512vnni: 6}"),
        ({"generations": {}}, "spec.generations: must name at least one variant"),
        ({"generations": {"avx1024": 1}}, "spec.generations: avx1024 is not in the variant"),
        ({"generations": {"avx2": -1}}, "spec.generations.avx2: Input should be greater"),
        ({"generations": {"avx2": 1}, "variants": ["armv9"]}, "names none of spec.variants"),
        ({"environment": "acme/tp\n"}, "spec.environment: must be a Flox environment"),
    ],
)
def test_bad_generations_are_an_invalid_spec(spec: dict[str, Any], message: str) -> None:
    decision = decide(ticketworker(**spec), CATALOG, groups(NODES), {})
    assert decision.problem is not None and decision.actions == ()
    assert decision.problem.reason == "InvalidSpec"
    assert message in decision.problem.message
    assert not decision.problem.message.startswith("spec: ")

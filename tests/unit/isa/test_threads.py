"""The thread-count rule (issue 18, item 3): pure, no cluster."""

from __future__ import annotations

from typing import Any

import pytest

from flox_isa.isa import names
from flox_isa.isa.inputs import InvalidInputError
from flox_isa.isa.threads import (
    THREAD_VARIABLES,
    carried_note,
    container_cpu,
    note_of,
    parse_override,
    plan,
    with_note,
)


def container(
    limits: dict[str, Any] | None = None,
    requests: dict[str, Any] | None = None,
    env: list[dict[str, str]] | None = None,
    name: str = "worker",
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, **more}
    resources = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    if resources:
        body["resources"] = resources
    if env is not None:
        body["env"] = env
    return body


def threads_of(*containers: dict[str, Any], override: str | None = None) -> list[int | None]:
    views = [container_cpu(c) for c in containers]
    return [s.threads for s in plan(views, override=parse_override(override))]


@pytest.mark.parametrize(
    ("limit", "threads"),
    [("2", 2), ("2500m", 2), ("1500m", 1), ("999m", 1), ("100m", 1), (4, 4), ("1.9", 1)],
)
def test_the_cpu_limit_is_floored_and_at_least_one(limit: object, threads: int) -> None:
    assert threads_of(container({"cpu": limit}, {"cpu": "100m"})) == [threads]


def test_without_a_limit_the_request_is_floored() -> None:
    assert threads_of(container(requests={"cpu": "3700m"})) == [3]
    assert threads_of(container(requests={"cpu": "250m"})) == [1]


def test_no_cpu_request_or_limit_sets_nothing() -> None:
    assert threads_of(container(), container(requests={"memory": "1Gi"})) == [None, None]


def test_a_guaranteed_integer_pod_gets_its_cpuset_size() -> None:
    guaranteed = container({"cpu": "4", "memory": "1Gi"}, {"cpu": "4", "memory": "1Gi"})
    [setting] = plan([container_cpu(guaranteed)])
    assert (setting.threads, setting.why) == (4, "exclusive CPUs: cpuset of 4")
    burstable = container({"cpu": "4", "memory": "1Gi"}, {"cpu": "2", "memory": "1Gi"})
    [setting] = plan([container_cpu(burstable)])
    assert (setting.threads, setting.why) == (4, "floor of CPU limit 4")
    # Guaranteed needs every container (init containers too) to qualify.
    no_memory_init = container_cpu(container({"cpu": "1"}, name="init"))
    [setting] = plan([container_cpu(guaranteed)], [no_memory_init])
    assert setting.why == "floor of CPU limit 4"


@pytest.mark.parametrize("variable", THREAD_VARIABLES)
def test_a_container_that_sets_any_variable_keeps_its_own(variable: str) -> None:
    own = container({"cpu": "2"}, env=[{"name": "A", "value": "x"}, {"name": variable}])
    assert threads_of(own, container({"cpu": "2"}, name="b")) == [None, 2]
    assert threads_of(own, override="8") == [None]


def test_env_from_is_left_alone_unless_a_count_is_given() -> None:
    from_config = container({"cpu": "2"}, envFrom=[{"configMapRef": {"name": "settings"}}])
    [setting] = plan([container_cpu(from_config)])
    assert setting.threads is None and "envFrom" in setting.why
    assert threads_of(from_config, override="3") == [3]


def test_the_annotation_turns_it_off_or_gives_the_count() -> None:
    assert threads_of(container({"cpu": "2"}), override="off") == []
    assert threads_of(container({"cpu": "2"}), container(name="b"), override="6") == [6, 6]


@pytest.mark.parametrize("value", ["0", "-1", "1025", "two", "", " 2", "2.5", "OFF"])
def test_a_bad_annotation_names_it_and_what_is_allowed(value: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_override(value)
    assert names.THREADS_ANNOTATION in str(caught.value)
    assert '"off" or a thread count from 1 to 1024' in str(caught.value)


@pytest.mark.parametrize("value", ["1", "64", "999", "1000", "1024"])
def test_counts_up_to_the_maximum_are_allowed(value: str) -> None:
    assert parse_override(value) == int(value)


def test_a_bad_cpu_quantity_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"container worker: resources.limits.cpu: 'lots'"):
        plan([container_cpu(container({"cpu": "lots"}))])


def test_the_note_says_what_was_set_and_survives_a_new_reason() -> None:
    settings = plan(
        [
            container_cpu(container({"cpu": "2500m"})),
            container_cpu(container(requests={"cpu": "1"}, name="sidecar")),
            container_cpu(container({"cpu": "1"}, env=[{"name": "OMP_NUM_THREADS"}], name="own")),
        ]
    )
    note = note_of(settings)
    assert note == (
        "threads: OMP/MKL/OPENBLAS_NUM_THREADS worker=2 (floor of CPU limit 2500m),"
        " sidecar=1 (floor of CPU request 1, no limit), own keeps its own"
    )
    assert note_of(plan([container_cpu(container())])) == ""  # nothing set: nothing said
    reason = with_note("gated: fp32-inference: ...", note)
    assert carried_note({"annotations": {names.REASON_ANNOTATION: reason}}) == note
    assert carried_note({"annotations": {names.REASON_ANNOTATION: "auto: x"}}) == ""
    assert carried_note({}) == ""
    assert with_note("placed", carried_note({"annotations": {"x": "y"}})) == "placed"

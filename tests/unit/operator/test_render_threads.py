"""Thread variables in the Deployments the operator renders (issue 18, item 3)."""

from __future__ import annotations

from typing import Any

from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.operator.models import TicketWorkerSpec
from flox_isa.operator.reconcile import INVALID_SPEC, parse_spec
from flox_isa.operator.render import render
from tests.unit.operator.test_render import OWNER, plan_of

VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def spec_with(containers: list[dict[str, Any]], annotations: dict[str, str] | None = None) -> Any:
    template: dict[str, Any] = {"spec": {"containers": containers}}
    if annotations:
        template["metadata"] = {"annotations": annotations}
    return TicketWorkerSpec.model_validate({"environment": "acme/t", "template": template})


def rendered_template(spec: TicketWorkerSpec) -> dict[str, Any]:
    template: dict[str, Any] = render(OWNER, spec, plan_of(avx2=2))["tickets-avx2"]["spec"][
        "template"
    ]
    return template


def test_each_container_gets_the_floor_of_its_cpu_and_the_users_own_are_kept() -> None:
    spec = spec_with(
        [
            {"name": "worker", "resources": {"limits": {"cpu": "3"}, "requests": {"cpu": "3"}}},
            {"name": "own", "env": [{"name": "OMP_NUM_THREADS", "value": "9"}]},
        ]
    )
    template = rendered_template(spec)
    worker, own = template["spec"]["containers"]
    assert worker["env"] == [{"name": v, "value": "3"} for v in VARS]
    assert own["env"] == [{"name": "OMP_NUM_THREADS", "value": "9"}]
    reason = template["metadata"]["annotations"][names.REASON_ANNOTATION]
    assert reason.startswith("threads: ") and "worker=3 (floor of CPU limit 3)" in reason
    assert spec.template.spec.containers[0].model_extra == {
        "resources": {"limits": {"cpu": "3"}, "requests": {"cpu": "3"}}
    }  # the spec itself is not changed by rendering


def test_off_sets_nothing_and_a_count_sets_it() -> None:
    off = rendered_template(spec_with([{"name": "w"}], {names.THREADS_ANNOTATION: "off"}))
    assert "env" not in off["spec"]["containers"][0]
    four = rendered_template(spec_with([{"name": "w"}], {names.THREADS_ANNOTATION: "4"}))
    assert four["spec"]["containers"][0]["env"] == [{"name": v, "value": "4"} for v in VARS]


def test_without_cpu_resources_nothing_is_set_or_said() -> None:
    template = rendered_template(spec_with([{"name": "w"}]))
    assert "env" not in template["spec"]["containers"][0]
    assert names.REASON_ANNOTATION not in template["metadata"]["annotations"]


def test_what_the_crd_cannot_check_is_an_invalid_spec_naming_the_field() -> None:
    raw = {
        "environment": "acme/t",
        "template": {
            "spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "x"}}}]}
        },
    }
    spec, problem = parse_spec(raw, default_catalog())
    assert spec is None and problem is not None and problem.reason == INVALID_SPEC
    assert problem.message == (
        "spec.template: container w: resources.limits.cpu: 'x' is not a Kubernetes quantity"
    )

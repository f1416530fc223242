"""The TicketWorker CRD: shipped file == generated, structural, and agreeing with the models."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from flox_isa.cli import main
from flox_isa.isa import contract
from flox_isa.isa.catalog import WORKLOADS
from flox_isa.isa.planning import PLACEMENTS
from flox_isa.operator import models
from flox_isa.operator.crd import CRD_FILENAME, crd, crd_yaml, iter_schemas

CHART_CRD = Path(__file__).parents[3] / "charts" / "flox-isa" / "crds" / CRD_FILENAME
VERSION = crd()["spec"]["versions"][0]
ROOT = VERSION["schema"]["openAPIV3Schema"]
SPEC = ROOT["properties"]["spec"]


def test_the_chart_ships_exactly_what_flox_isa_crd_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["crd"]) == 0
    printed = capsys.readouterr().out
    assert printed == crd_yaml()
    assert CHART_CRD.read_text(encoding="utf-8") == printed, (
        f"stale CRD: run `flox-isa crd > charts/flox-isa/crds/{CRD_FILENAME}`"
    )


def test_names_are_the_contract_of_the_design() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "ticketworkers.isa.flox.dev"
    assert (spec["group"], spec["scope"], VERSION["name"]) == (
        "isa.flox.dev",
        "Namespaced",
        "v1alpha1",
    )
    assert spec["names"]["kind"] == "TicketWorker"
    assert spec["names"]["plural"] == "ticketworkers"
    assert spec["names"]["shortNames"] == ["tw"]


def test_the_schema_is_structural() -> None:
    """Every node has a type (or keeps unknown fields); no unions, refs or nulls."""
    problems: list[str] = []

    def visit(path: str, node: Mapping[str, Any]) -> None:
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        problems.extend(
            f"{path}: {key}" for key in ("anyOf", "oneOf", "allOf", "$ref", "nullable", "title")
            if key in node
        )  # fmt: skip
        if node.get("default", ...) is None:
            problems.append(f"{path}: null default")

    iter_schemas(ROOT, visit)
    assert problems == []


def test_every_cel_rule_sits_on_a_bounded_value() -> None:
    """The API server refuses CEL rules whose cost it cannot bound."""
    unbounded: list[str] = []

    def visit(path: str, node: Mapping[str, Any]) -> None:
        if not node.get("x-kubernetes-validations") or path == "":
            return
        kind = node.get("type")
        if (kind == "string" and "maxLength" not in node) or (
            kind == "array" and "maxItems" not in node
        ):
            unbounded.append(path)

    iter_schemas(ROOT, visit)
    assert unbounded == []


def test_enums_are_the_models_literals() -> None:
    props = SPEC["properties"]
    assert props["workload"]["enum"] == list(WORKLOADS)
    assert props["placement"]["enum"] == list(PLACEMENTS)
    condition = ROOT["properties"]["status"]["properties"]["conditions"]["items"]
    assert condition["properties"]["type"]["enum"] == list(get_args(models.ConditionType))


def test_replicas_are_bounded_and_environment_required() -> None:
    replicas = SPEC["properties"]["replicas"]
    assert (replicas["minimum"], replicas["maximum"]) == (0, 10_000)
    # No default: a default would make spec.replicas always set, and so always clash
    # with spec.throughput (the operator treats "neither set" as 1).
    assert "default" not in replicas
    throughput = SPEC["properties"]["throughput"]
    assert throughput["type"] == "number"
    assert [r["rule"] for r in throughput["x-kubernetes-validations"]] == ["self > 0.0"]
    rules = [r["rule"] for r in SPEC["x-kubernetes-validations"]]
    assert "!has(self.replicas) || !has(self.throughput)" in rules
    assert SPEC["required"] == ["environment"]


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """The API server's structural defaulting: fill missing fields, then recurse."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, item in list(value.items()):
            if name in (schema.get("properties") or {}):
                value[name] = apply_defaults(item, schema["properties"][name])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(item, schema["items"]) for item in value]
    return value


@pytest.mark.parametrize(
    "spec",
    [
        {"environment": "acme/tp"},
        {"environment": "acme/tp", "template": {"spec": {"containers": [{"name": "a"}]}}},
        {
            "environment": "acme/tp",
            "replicas": 4,
            "template": {"metadata": {"labels": {"team": "x"}}, "spec": {"hostNetwork": False}},
        },
    ],
)
def test_api_server_defaults_equal_the_models_defaults(spec: dict[str, Any]) -> None:
    served = apply_defaults(spec, SPEC)
    parsed = models.TicketWorkerSpec.model_validate(spec)
    assert served == parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert served["template"]["spec"]["runtimeClassName"] == "flox"
    assert all(c["image"] == "flox/empty:1.0.0" for c in served["template"]["spec"]["containers"])


@pytest.mark.parametrize(
    ("environment", "valid"),
    [
        ("acme/ticket-processor", True),
        ("acme.io/tp_2", True),
        ("acme", False),
        ("acme/tp/extra", False),
        ("/tp", False),
        ("acme/", False),
        ("acme/tp-avx2 ", False),
        ("acme/tp\n", False),
        ("acme/tp:3", True),
        ("acme/tp:", False),
    ],
)
def test_the_environment_rule_is_the_same_regex_in_cel_and_python(
    environment: str, valid: bool
) -> None:
    (rule,) = SPEC["properties"]["environment"]["x-kubernetes-validations"]
    assert rule["rule"] == f"self.matches('^(?:{contract.ENVIRONMENT_REGEX})$')"
    assert bool(re.fullmatch(contract.ENVIRONMENT_REGEX, environment)) == valid
    assert contract.is_environment(environment) == valid


def test_subresources_and_columns_point_at_fields_that_exist() -> None:
    scale = VERSION["subresources"]["scale"]
    paths = [scale["specReplicasPath"], scale["statusReplicasPath"], scale["labelSelectorPath"]]
    paths += [c["jsonPath"] for c in VERSION["additionalPrinterColumns"]]
    for path in paths:
        if path.startswith(".metadata."):
            continue
        node: Mapping[str, Any] = ROOT
        for part in path.strip(".").split("[")[0].split("."):
            node = node["properties"][part]
    names = [c["name"] for c in VERSION["additionalPrinterColumns"]]
    assert {"Desired", "Ready", "Variants", "Age"} <= set(names)
    assert VERSION["subresources"]["status"] == {}


def test_the_file_is_plain_yaml_kubectl_can_apply() -> None:
    loaded = yaml.safe_load(crd_yaml())
    assert loaded == crd()

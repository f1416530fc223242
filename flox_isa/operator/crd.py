"""The TicketWorker CRD, generated from the pydantic models so the two cannot drift.

`flox-isa crd` prints it; charts/flox-isa/crds/ holds the same text (a unit test
compares them; regenerate with `flox-isa crd > charts/flox-isa/crds/<file>`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from flox_isa.operator import models

CRD_NAME: Final = f"{models.PLURAL}.{models.GROUP}"
CRD_FILENAME: Final = f"{CRD_NAME}.yaml"

# JSON-schema keywords a structural CRD schema accepts (and that we emit).
_KEPT: Final = frozenset(
    {
        "type", "description", "default", "enum", "format", "pattern",
        "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "maxProperties",
        "required", "x-kubernetes-validations", "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)  # fmt: skip


class _WithFactoryDefaults(GenerateJsonSchema):
    """Emit defaults that come from a default_factory, as the API server should apply them.

    A factory default is dumped without its own defaults: the API server
    defaults nested fields of a defaulted object itself, from their schemas.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().default_schema(schema)
        value = _dump_default(cast(Callable[[], object], factory)())
        inner = self.generate_inner(schema["schema"])
        return inner if value is None else {**inner, "default": value}


def _dump_default(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    if isinstance(value, list):
        return [_dump_default(item) for item in value]
    return value


def openapi_schema(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    """A structural OpenAPI v3 schema (refs inlined, nullables dropped) for `model`."""
    schema = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    defs = schema.pop("$defs", {})
    return _structural(schema, defs, defaults)


def _structural(
    schema: Mapping[str, Any], defs: Mapping[str, Any], defaults: bool
) -> dict[str, Any]:
    """One schema node, keys in a stable order: description, type, the rest sorted."""
    schema = _resolve(schema, defs)
    kept = {k: v for k, v in schema.items() if k in _KEPT}
    if kept.get("default", ...) is None or not defaults:
        kept.pop("default", None)  # an optional field is absent, never null
    out: dict[str, Any] = {k: kept.pop(k) for k in ("description", "type") if k in kept}
    out.update(sorted(kept.items()))
    if "properties" in schema:
        out["properties"] = {
            name: _structural(sub, defs, defaults) for name, sub in schema["properties"].items()
        }
    if "items" in schema:
        out["items"] = _structural(schema["items"], defs, defaults)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        out["additionalProperties"] = _structural(extra, defs, defaults)
    elif extra is True or (schema.get("type") == "object" and "properties" not in schema):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Inline `$ref`s and reduce `anyOf: [X, null]` (an Optional) to X, keeping siblings."""
    schema = dict(schema)
    if "anyOf" in schema:
        options = [o for o in schema.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
        schema = {**_resolve(options[0], defs), **schema}
    if "$ref" in schema:
        target = defs[schema.pop("$ref").rsplit("/", 1)[-1]]
        schema = {**_resolve(target, defs), **schema}
    return schema


def _printer_column(
    name: str, json_path: str, kind: str, description: str, priority: int = 0
) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name,
        "type": kind,
        "jsonPath": json_path,
        "description": description,
    }
    if priority:
        column["priority"] = priority
    return column


PRINTER_COLUMNS: Final = [
    _printer_column("Desired", ".spec.replicas", "integer", "Total replicas asked for"),
    _printer_column("Ready", ".status.readyReplicas", "integer", "Ready replicas, all variants"),
    _printer_column(
        "Variants", ".status.variantSummary", "string", "variant=ready/desired per Deployment"
    ),
    _printer_column(
        "Throughput",
        ".status.expectedThroughput",
        "number",
        "Expected tickets/s of the ready replicas (an estimate, score x CPUs, unless measured)",
        priority=1,
    ),
    _printer_column(
        "Degraded",
        '.status.conditions[?(@.type=="Degraded")].status',
        "string",
        "Whether the spec or the fleet keeps the TicketWorker from its goal",
        priority=1,
    ),
    _printer_column("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
]


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(models.TicketWorkerSpec),
            "status": openapi_schema(models.TicketWorkerStatus, defaults=False),
        },
        "x-kubernetes-validations": [
            models._cel(
                f"size(self.metadata.name) <= {models.MAX_NAME_LENGTH}",
                f"metadata.name must be at most {models.MAX_NAME_LENGTH} characters: it is"
                " the value of the isa.flox.dev/ticketworker label",
            )
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "flox-isa"},
        },
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.KIND.lower(),
                "shortNames": ["tw"],
                "categories": ["flox"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = (
        "# Generated by `flox-isa crd` from flox_isa/operator/models.py: do not edit by hand.\n"
    )
    # Round-trip through JSON: plain types only, stable key order as built.
    return header + yaml.safe_dump(json.loads(json.dumps(crd())), sort_keys=False, width=100)


def iter_schemas(
    schema: Mapping[str, Any], visit: Callable[[str, Mapping[str, Any]], None], path: str = ""
) -> None:
    """Call `visit(path, node)` for every node of a schema (tests and tooling use it)."""
    visit(path, schema)
    for name, sub in (schema.get("properties") or {}).items():
        iter_schemas(sub, visit, f"{path}.{name}")
    if "items" in schema:
        iter_schemas(schema["items"], visit, f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        iter_schemas(schema["additionalProperties"], visit, f"{path}{{}}")

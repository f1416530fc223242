"""AdmissionReview (admission.k8s.io/v1) and the parts of a Pod the webhook reads.

Only what a decision reads is modelled; everything else in the pod is skipped
while parsing (`extra="ignore"`), so one `model_validate_json` over the raw
body is the whole of the parsing. Types are checked, so the decision never
meets a list where it expects a map.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from flox_isa.isa.threads import THREAD_VARIABLES, ContainerCpu, quantity_text

THREAD_VARIABLES_SET = frozenset(THREAD_VARIABLES)

ADMISSION_API_VERSION = "admission.k8s.io/v1"


class _Model(BaseModel):
    # Parsing keeps only keys in its string cache: values (env, names, uids) rarely repeat.
    model_config = ConfigDict(extra="ignore", frozen=True, cache_strings="keys")


class OwnerReference(_Model):
    kind: str = ""
    name: str = ""
    controller: bool | None = None


class ObjectMeta(_Model):
    name: str | None = None
    generate_name: str | None = Field(None, alias="generateName")
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = Field(None, alias="ownerReferences")


class Requirement(_Model):
    key: str
    operator: str
    values: list[str] | None = None


class NodeSelectorTerm(_Model):
    match_expressions: list[Requirement] | None = Field(None, alias="matchExpressions")
    match_fields: list[Requirement] | None = Field(None, alias="matchFields")


class NodeSelector(_Model):
    node_selector_terms: list[NodeSelectorTerm] = Field(alias="nodeSelectorTerms")


class NodeAffinity(_Model):
    required: NodeSelector | None = Field(
        None, alias="requiredDuringSchedulingIgnoredDuringExecution"
    )


class Affinity(_Model):
    node_affinity: NodeAffinity | None = Field(None, alias="nodeAffinity")


class Toleration(_Model):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None


class SchedulingGate(_Model):
    name: str


class EnvVar(TypedDict):
    """An `env` entry: only its name is read (a TypedDict parses in half a model's time)."""

    name: NotRequired[str]


# The API server sends quantities as strings; files may hold numbers (`cpu: 2`).
Quantities = dict[str, str | int | float]


class Resources(_Model):
    limits: Quantities | None = None
    requests: Quantities | None = None


class Container(_Model):
    """What thread tuning reads of a container (`isa.threads`)."""

    name: str = ""
    env: list[EnvVar] | None = None
    env_from: list[dict[str, Any]] | None = Field(None, alias="envFrom")
    resources: Resources | None = None

    def cpu(self) -> ContainerCpu:
        resources = self.resources
        limits = (resources.limits if resources else None) or {}
        requests = (resources.requests if resources else None) or {}
        return ContainerCpu(
            name=self.name,
            sets_threads=not THREAD_VARIABLES_SET.isdisjoint(
                [e.get("name") for e in self.env or ()]
            ),
            env_from=bool(self.env_from),
            cpu_limit=quantity_text(limits.get("cpu")),
            cpu_request=quantity_text(requests.get("cpu")),
            memory_limit=quantity_text(limits.get("memory")),
            memory_request=quantity_text(requests.get("memory")),
            has_env=bool(self.env),
        )


class PodSpec(_Model):
    containers: list[Container] = []
    init_containers: list[Container] | None = Field(None, alias="initContainers")
    node_name: str | None = Field(None, alias="nodeName")
    scheduling_gates: list[SchedulingGate] | None = Field(None, alias="schedulingGates")
    node_selector: dict[str, str] | None = Field(None, alias="nodeSelector")
    affinity: Affinity | None = None
    tolerations: list[Toleration] | None = None


class Pod(_Model):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()

    def gates(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.spec.scheduling_gates or ())

    @functools.cached_property
    def threads_input(self) -> tuple[tuple[ContainerCpu, ...], tuple[ContainerCpu, ...]]:
        """(containers, init containers) as thread tuning reads them; hashable, computed
        once per pod (the decision key and the decision both read it)."""
        spec = self.spec
        return (
            tuple(c.cpu() for c in spec.containers),
            tuple(c.cpu() for c in spec.init_containers or ()),
        )

    def constraints_key(self) -> Hashable:
        """What eligibility depends on (nodeSelector, required node affinity, tolerations).

        Equal keys, equal eligibility: `OfferIndex.offer_keyed` remembers offers by it.
        Only required node affinity is modelled, so the affinity's JSON is exactly that.
        """
        spec = self.spec
        return (
            tuple(spec.node_selector.items()) if spec.node_selector else (),
            spec.affinity.model_dump_json() if spec.affinity is not None else None,
            tuple((t.key, t.operator, t.value, t.effect) for t in spec.tolerations or ()),
        )

    def scheduling_spec(self) -> dict[str, Any]:
        """The pod spec as `isa.scheduling` reads it: plain dicts, API field names."""
        spec: dict[str, Any] = {"nodeSelector": self.spec.node_selector or {}}
        if self.spec.affinity is not None:
            spec["affinity"] = self.spec.affinity.model_dump(by_alias=True, exclude_none=True)
        if self.spec.tolerations:
            spec["tolerations"] = [t.model_dump(exclude_none=True) for t in self.spec.tolerations]
        return spec


class GroupVersionKind(_Model):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Model):
    group: str = ""
    version: str = ""
    resource: str = ""


class AdmissionRequest(_Model):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind
    resource: GroupVersionResource | None = None
    sub_resource: str | None = Field(None, alias="subResource")
    operation: str
    namespace: str = ""
    name: str = ""
    # Read as a Pod whatever the kind: every Pod field is optional and the rest is
    # skipped, so another kind's object parses too and is then ignored (`is_pod_create`).
    # (A "before" validator would make pydantic build the whole body as Python objects.)
    object: Pod | None = None
    dry_run: bool = Field(False, alias="dryRun")

    @property
    def is_pod_create(self) -> bool:
        return (
            self.kind.kind == "Pod"
            and self.kind.group == ""
            and self.operation == "CREATE"
            and not self.sub_resource
            and self.object is not None
        )


class AdmissionReview(_Model):
    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest

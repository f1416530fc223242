"""The TicketWorker resource as pydantic models: the one source of the CRD schema.

`crd.py` turns these models into the CRD's OpenAPI schema (defaults, enums,
bounds and the CEL rules given here as `x-kubernetes-validations`), so the API
server and the operator validate the same spec. The operator validates again
on read: a CRD installed from an older chart, or a rule only Python can check
(a variant name the catalog lacks), must not reach the rendering.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from flox_isa.isa import names
from flox_isa.isa.capacity import Demand, demand_of
from flox_isa.isa.catalog import DEFAULT_WORKLOAD, VARIANT_NAME_PATTERN, Workload
from flox_isa.isa.constraints import Constraints, constraints_of
from flox_isa.isa.contract import (
    ENVIRONMENT_CEL_REGEX,
    ENVIRONMENT_GRAMMAR,
    GENERATIONS_EXAMPLE,
    is_environment,
    is_pinned,
)
from flox_isa.isa.placement import DEFAULT_WHEN_FULL, WHEN_FULL, WhenFull
from flox_isa.isa.planning import DEFAULT_PLACEMENT, Placement
from flox_isa.isa.replan import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_MAX_MOVE_PERCENT,
    DEFAULT_UNSCHEDULABLE_SECONDS,
    Calm,
)
from flox_isa.isa.threads import MAX_THREADS, THREADS_COUNT, THREADS_OFF, container_cpu
from flox_isa.isa.throughput import replica_cpus

GROUP: Final = names.GROUP
VERSION: Final = "v1alpha1"
KIND: Final = "TicketWorker"
PLURAL: Final = "ticketworkers"
API_VERSION: Final = f"{GROUP}/{VERSION}"

DEFAULT_RUNTIME_CLASS: Final = "flox"
DEFAULT_IMAGE: Final = "flox/empty:1.0.0"
DEFAULT_CONTAINER: Final = "worker"
MAX_REPLICAS: Final = 10_000
MAX_TICKETS_PER_REPLICA: Final = 1_000_000
MAX_TICKETS: Final = 100_000_000
REPLICAS_OR_THROUGHPUT: Final = (
    "spec.replicas and spec.throughput are mutually exclusive: a TicketWorker sized by"
    " throughput (tickets/s) has its replicas computed by the operator, so kubectl scale and"
    " HPAs cannot set spec.replicas; remove spec.throughput to scale it by hand"
)
MAX_NAME_LENGTH: Final = 63  # the name is a label value on every Deployment and pod

ENVIRONMENT_MESSAGE: Final = (
    f"must be a Flox environment {ENVIRONMENT_GRAMMAR}, e.g. acme/ticket-processor"
)
THREADS: Final = names.THREADS_ANNOTATION
RESERVED_LABELS: Final = (names.VARIANT_LABEL, names.TICKETWORKER_LABEL)
GENERATIONS_EXAMPLE_YAML: Final = (
    "{" + GENERATIONS_EXAMPLE.replace("=", ": ").replace(",", ", ") + "}"
)
PINNED_WITHOUT_GENERATIONS: Final = (
    "spec.environment pins a generation of the base environment, but FloxHub counts"
    " generations per variant build: set spec.generations to each variant's generation,"
    f" e.g. generations: {GENERATIONS_EXAMPLE_YAML}"
)
NO_COMMON_VARIANT: Final = "spec.generations names none of spec.variants"
MAX_GENERATION: Final = 999_999_999  # the reference grammar's 9 digits


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class _OpenModel(BaseModel):
    """A Kubernetes type we only partly describe: unknown fields are kept as written."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Container(_OpenModel):
    """A container of the pod template; every other core/v1 Container field is allowed."""

    name: str = Field(
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Container name (a DNS label).",
    )
    image: str = Field(
        DEFAULT_IMAGE,
        max_length=512,
        description="Flox's imageless pods run the empty image; the environment brings the"
        " software.",
    )


def _default_containers() -> list[Container]:
    return [Container(name=DEFAULT_CONTAINER)]


Labels = Annotated[dict[str, str], Field(json_schema_extra={"maxProperties": 64})]


class TemplateMetadata(_Model):
    labels: Labels | None = None
    annotations: Labels | None = None


class PodSpec(_OpenModel):
    """The pod spec; every other core/v1 PodSpec field is allowed and passed through."""

    runtime_class_name: str = Field(
        DEFAULT_RUNTIME_CLASS, max_length=253, description="Flox's runtime class by default."
    )
    containers: list[Container] = Field(
        default_factory=_default_containers,
        min_length=1,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(c, self.exists_one(d, d.name == c.name))",
                    "container names must be unique",
                )
            ]
        },
    )
    node_selector: Labels | None = Field(
        None, description="Merged with each variant's CPU-feature nodeSelector."
    )
    tolerations: list[dict[str, Any]] | None = Field(None, max_length=64)
    affinity: dict[str, Any] | None = None

    def constraints(self) -> Constraints:
        """Where the template's pods may be scheduled (`isa.constraints`), read once."""
        return constraints_of(
            {
                "nodeSelector": self.node_selector,
                "affinity": self.affinity,
                "tolerations": self.tolerations,
            }
        )

    def demand(self) -> Demand:
        """What each of the template's pods asks of a node (`isa.capacity`)."""
        return demand_of(self.model_dump(by_alias=True, exclude_none=True, mode="json"))


class PodTemplate(_Model):
    metadata: TemplateMetadata = Field(
        default_factory=TemplateMetadata,
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"!has(self.annotations) || !('{names.ENVIRONMENT_ANNOTATION}'"
                    " in self.annotations)",
                    f"annotation {names.ENVIRONMENT_ANNOTATION} is set by the operator"
                    " from spec.environment",
                    ".annotations",
                ),
                _cel(
                    "!has(self.labels) || ("
                    + " && ".join(f"!('{label}' in self.labels)" for label in RESERVED_LABELS)
                    + ")",
                    f"labels {', '.join(RESERVED_LABELS)} are set by the operator",
                    ".labels",
                ),
                _cel(
                    f"!has(self.annotations) || !('{THREADS}' in self.annotations)"
                    f" || self.annotations['{THREADS}'] == '{THREADS_OFF}'"
                    f" || self.annotations['{THREADS}'].matches('{THREADS_COUNT}')",
                    f'annotation {names.THREADS_ANNOTATION} must be "{THREADS_OFF}" or a thread'
                    f" count from 1 to {MAX_THREADS}",
                    ".annotations",
                ),
            ]
        },
    )
    spec: PodSpec = Field(default_factory=PodSpec)


MAX_REPLAN_SECONDS: Final = 86_400
WHEN_FULL_MESSAGE: Final = f"must be one of {', '.join(WHEN_FULL)}"


class ReplanSpec(_Model):
    """How calmly replicas move between variants when the room changes (`isa.replan`)."""

    unschedulable_seconds: int = Field(
        DEFAULT_UNSCHEDULABLE_SECONDS,
        ge=1,
        le=MAX_REPLAN_SECONDS,
        description="A replica moves off a variant only once its pods have been Unschedulable"
        " this long (long enough for a node to be provisioned), and back to a better variant"
        " only once the plan has seen room there this long.",
    )
    interval_seconds: int = Field(
        DEFAULT_INTERVAL_SECONDS,
        ge=1,
        le=MAX_REPLAN_SECONDS,
        description="At most one batch of moves per interval.",
    )
    max_move_percent: int = Field(
        DEFAULT_MAX_MOVE_PERCENT,
        ge=1,
        le=100,
        description="A batch moves at most this percentage of the replicas (at least 1).",
    )

    def calm(self) -> Calm:
        return Calm(self.unschedulable_seconds, self.interval_seconds, self.max_move_percent)


class TicketWorkerSpec(_Model):
    """What the user asks for: one workload, replicas spread over the best ISA builds."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!self.environment.matches(':[0-9]+$') || has(self.generations)",
                    PINNED_WITHOUT_GENERATIONS,
                    ".generations",
                ),
                _cel(
                    "!has(self.replicas) || !has(self.throughput)",
                    REPLICAS_OR_THROUGHPUT,
                    ".replicas",
                ),
                _cel(
                    "!has(self.generations) || !has(self.variants)"
                    " || self.variants.exists(v, v in self.generations)",
                    NO_COMMON_VARIANT,
                    ".generations",
                ),
            ]
        }
    )

    environment: str = Field(
        max_length=200,
        description="The base Flox environment, owner/name or owner/name:generation;"
        " variant builds are owner/name-<variant> (pinned through spec.generations).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(f"self.matches('{ENVIRONMENT_CEL_REGEX}')", ENVIRONMENT_MESSAGE)
            ]
        },
    )
    workload: Workload = Field(DEFAULT_WORKLOAD, description="What the pods run; ranks variants.")
    variants: (
        list[Annotated[str, Field(max_length=32, pattern=VARIANT_NAME_PATTERN.pattern)]] | None
    ) = Field(
        None,
        max_length=16,
        description="The variants this environment is published for (default: every catalog"
        " variant).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "size(self) > 0",
                    "must list at least one variant; omit it to allow every catalog variant",
                ),
                _cel("self.all(v, self.exists_one(w, w == v))", "variants must be unique"),
            ]
        },
    )
    generations: dict[str, Annotated[int, Field(ge=0, le=MAX_GENERATION)]] | None = Field(
        None,
        description="The FloxHub generation of each variant build (e.g."
        f" {GENERATIONS_EXAMPLE_YAML}): only the variants named run, each pinned to its"
        " generation. Required when spec.environment pins a generation.",
        json_schema_extra={
            "maxProperties": 16,
            "x-kubernetes-validations": [
                _cel(
                    "size(self) > 0",
                    "must name at least one variant; omit it to run unpinned builds",
                ),
                _cel(
                    f"self.all(v, size(v) <= 32 && v.matches('{VARIANT_NAME_PATTERN.pattern}'))",
                    "keys must be variant names",
                ),
            ],
        },
    )
    throughput_per_replica: (
        dict[str, Annotated[float, Field(gt=0, le=MAX_TICKETS_PER_REPLICA)]] | None
    ) = Field(
        None,
        description="Measured tickets/s of one replica per variant (e.g. {avx512vnni: 40}):"
        " overrides the estimate (the catalog score x the replica's CPUs) for those variants.",
        json_schema_extra={
            "maxProperties": 16,
            "x-kubernetes-validations": [
                _cel(
                    f"self.all(v, size(v) <= 32 && v.matches('{VARIANT_NAME_PATTERN.pattern}'))",
                    "keys must be variant names",
                ),
                _cel("self.all(v, self[v] > 0.0)", "figures must be more than 0 tickets/s"),
            ],
        },
    )
    replicas: int | None = Field(
        None,
        ge=0,
        le=MAX_REPLICAS,
        description="Total replicas, all variants (1 when neither this nor spec.throughput"
        " is set). kubectl scale and HPAs set it.",
    )
    throughput: float | None = Field(
        None,
        gt=0,
        le=MAX_TICKETS,
        description="Target tickets/s: the operator runs the fewest replicas that reach it"
        " (best tickets/s per replica first). Excludes spec.replicas, so kubectl scale and"
        " HPAs cannot drive such a TicketWorker.",
        json_schema_extra={
            "x-kubernetes-validations": [_cel("self > 0.0", "must be more than 0 tickets/s")]
        },
    )
    placement: Placement = Field(
        DEFAULT_PLACEMENT,
        description="spread: replicas in proportion to each variant's node CPU (its free CPU"
        " once a share would not fit), each share up to the room its nodes have; best: the"
        " best variant the fleet offers, up to the room its nodes have, then (spec.whenFull)"
        " the next in rank order.",
    )
    when_full: WhenFull = Field(
        DEFAULT_WHEN_FULL,
        description="When a variant's nodes have no room for its replicas: next-best moves"
        " them to the next variant in rank order with room; wait keeps them on the best"
        " growable variant, Unschedulable, for an autoscaler to grow its pool (as the pod"
        f" annotation {names.WHEN_FULL_ANNOTATION}).",
        json_schema_extra={
            "maxLength": 16,
            "x-kubernetes-validations": [
                _cel(" || ".join(f"self == '{value}'" for value in WHEN_FULL), WHEN_FULL_MESSAGE)
            ],
        },
    )
    replan: ReplanSpec = Field(
        default_factory=ReplanSpec,
        description="How calmly replicas move between variants when the room changes.",
    )
    template: PodTemplate = Field(
        default_factory=PodTemplate, description="The pod template (a core/v1 PodTemplateSpec)."
    )

    @field_validator("environment")
    @classmethod
    def _environment_is_owner_name(cls, value: str) -> str:
        if not is_environment(value):
            raise ValueError(ENVIRONMENT_MESSAGE)
        return value

    @field_validator("generations")
    @classmethod
    def _generations_name_variants(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and not value:
            raise ValueError("must name at least one variant; omit it to run unpinned builds")
        return value

    @model_validator(mode="after")
    def _replicas_or_throughput(self) -> TicketWorkerSpec:
        if self.replicas is not None and self.throughput is not None:
            raise ValueError(REPLICAS_OR_THROUGHPUT)
        return self

    def effective_replicas(self) -> int:
        """spec.replicas, 1 when neither it nor spec.throughput is set."""
        return 1 if self.replicas is None else self.replicas

    @model_validator(mode="after")
    def _pinned_environment_has_generations(self) -> TicketWorkerSpec:
        if self.generations is None and is_pinned(self.environment):
            raise ValueError(PINNED_WITHOUT_GENERATIONS)
        if self.generations and self.variants and not set(self.variants) & set(self.generations):
            raise ValueError(NO_COMMON_VARIANT)
        return self

    def replica_cpus(self) -> float:
        """The CPUs one replica can use (its containers' CPU limits, else requests)."""
        containers = self.template.spec.model_dump(by_alias=True, mode="json")["containers"]
        return replica_cpus([container_cpu(c) for c in containers])

    def allowed_variants(self) -> list[str] | None:
        """The variants that may run: spec.variants, narrowed to spec.generations."""
        if self.generations is None:
            return self.variants
        return [v for v in self.variants or self.generations if v in self.generations]

    @field_validator("variants")
    @classmethod
    def _variants_are_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError(
                "must list at least one variant; omit it to allow every catalog variant"
            )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("variants must be unique")
        return value


ConditionType = Literal["Ready", "Progressing", "Degraded", "TargetReachable", "CapacityLimited"]
ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Model):
    type: ConditionType
    status: ConditionStatus
    reason: str = Field(max_length=128)
    message: str = Field("", max_length=4096)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(None, ge=0)


class VariantStatus(_Model):
    variant: str
    deployment: str
    nodes: int = Field(description="Eligible nodes the share is planned for.")
    desired_replicas: int
    ready_replicas: int
    score: float = Field(description="Catalog score of the variant for the workload (tickets/s).")
    throughput_per_replica: float | None = Field(
        None,
        description="Tickets/s of one replica: spec.throughputPerReplica's figure, else the"
        " estimate score x the replica's CPUs (none for bf16-training: its scores are ranks).",
    )
    throughput_source: str = Field(
        "estimate", description="measured (spec.throughputPerReplica), estimate or rank."
    )
    expected_throughput: float | None = Field(
        None, description="throughputPerReplica x ready replicas (an estimate unless measured)."
    )
    unschedulable_replicas: int | None = Field(
        None,
        description="Pods of this variant the scheduler found no node for (while room is known).",
    )
    room: int | None = Field(
        None,
        description="Replicas of this TicketWorker the variant's eligible nodes have room for"
        " now (per node, its own pods not counted); none while room is unknown.",
    )


class TicketWorkerStatus(_Model):
    observed_generation: int | None = None
    replicas: int = Field(0, description="Pods of all variants (the scale subresource reads it).")
    ready_replicas: int = 0
    selector: str = Field(
        "", description="Label selector of every pod (for the scale subresource)."
    )
    variant_summary: str = Field("", description="variant=ready/desired, one per Deployment.")
    expected_throughput: float = Field(
        0.0, description="Tickets/s of the ready replicas (an estimate unless measured)."
    )
    throughput_target: float | None = Field(None, description="spec.throughput (tickets/s).")
    planned_throughput: float | None = Field(
        None, description="Tickets/s of the planned replicas once all are ready (spec.throughput)."
    )
    variants: list[VariantStatus] = Field(default_factory=list)
    plan_basis: str | None = Field(
        None,
        description="The fleet the replicas were last planned on (placement, eligible nodes"
        " per variant): a new operator leader applies a fleet change made during a handover.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )

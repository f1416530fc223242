"""AdmissionReview (admission.k8s.io/v1) and the parts of a Pod the webhook reads.

Only what a decision reads is modelled (msgspec Structs); everything else in the
pod is skipped while decoding, so one `decode_review` over the raw body is the
whole of the parsing (no dict of the body is ever built), but for the spec: kept as
its JSON text, each distinct one is decoded once (`spec_facts`). Types are checked
(the spec's too, before `decode_review` returns), so the decision never meets a list
where it expects a map. A pod given as data (a file, an API object)
becomes the same `Pod` through `pod_from`. Errors read `where: what` (`describe_error`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Generic, Literal, TypeVar, overload

import msgspec

from flox_isa.isa import constraints
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.threads import THREAD_VARIABLES, ContainerCpu, quantity_text
from flox_isa.webhook.memo import TextMemo

THREAD_VARIABLES_SET = frozenset(THREAD_VARIABLES)

_T = TypeVar("_T")
ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"


class _Struct(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, gc=False):
    """Immutable (each subclass says `frozen=True` too, for mypy); API (camelCase) field
    names; unset fields left out when dumped.

    Not tracked by the garbage collector (`gc=False`): the decoded objects form no
    reference cycles, and a request then adds nothing for the collector to scan.
    """


class OwnerReference(_Struct, frozen=True):
    kind: str = ""
    name: str = ""
    controller: bool | None = None


class ObjectMeta(_Struct, frozen=True):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None


class Requirement(_Struct, frozen=True):
    key: str
    operator: str
    values: list[str] | None = None

    def requirement(self) -> constraints.Requirement:
        return constraints.Requirement(self.key, self.operator, tuple(self.values or ()))


class NodeSelectorTerm(_Struct, frozen=True):
    match_expressions: list[Requirement] | None = None
    match_fields: list[Requirement] | None = None

    def term(self) -> constraints.Term:
        return constraints.Term(
            tuple(e.requirement() for e in self.match_expressions or ()),
            tuple(e.requirement() for e in self.match_fields or ()),
        )


class NodeSelector(_Struct, frozen=True):
    node_selector_terms: list[NodeSelectorTerm]


class NodeAffinity(_Struct, frozen=True):
    required: NodeSelector | None = msgspec.field(
        default=None, name="requiredDuringSchedulingIgnoredDuringExecution"
    )


class Affinity(_Struct, frozen=True):
    node_affinity: NodeAffinity | None = None


class Toleration(_Struct, frozen=True):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None

    def toleration(self) -> constraints.Toleration:
        return constraints.toleration(self.key, self.operator, self.value, self.effect)


class SchedulingGate(_Struct, frozen=True):
    name: str


class EnvVar(_Struct, frozen=True):
    """An `env` entry: only its name is read."""

    name: str = ""


# The API server sends quantities as strings; files may hold numbers (`cpu: 2`).
Quantities = dict[str, str | int | float]
_NO_QUANTITIES: Final[Quantities] = {}


class Resources(_Struct, frozen=True):
    limits: Quantities | None = None
    requests: Quantities | None = None


class Container(_Struct, frozen=True):
    """What thread tuning reads of a container (`isa.threads`)."""

    name: str = ""
    env: list[EnvVar] | None = None
    env_from: list[dict[str, Any]] | None = None
    resources: Resources | None = None

    def cpu(self) -> ContainerCpu:
        resources, env = self.resources, self.env
        limits = (resources.limits if resources else None) or _NO_QUANTITIES
        requests = (resources.requests if resources else None) or _NO_QUANTITIES
        return ContainerCpu(
            self.name,
            bool(env) and not THREAD_VARIABLES_SET.isdisjoint([e.name for e in env or ()]),
            bool(self.env_from),
            quantity_text(limits.get("cpu")),
            quantity_text(requests.get("cpu")),
            quantity_text(limits.get("memory")),
            quantity_text(requests.get("memory")),
            bool(env),
        )


class PodSpec(_Struct, frozen=True):
    # Their JSON texts, each decoded once (`CONTAINERS`).
    containers: list[msgspec.Raw] = msgspec.field(default_factory=list)
    init_containers: list[msgspec.Raw] | None = None
    node_name: str | None = None
    scheduling_gates: list[SchedulingGate] | None = None
    node_selector: dict[str, str] | None = None
    affinity: Affinity | None = None
    tolerations: list[Toleration] | None = None


@dataclass(frozen=True, slots=True)
class SpecFacts:
    """What a decision reads of a pod's spec, made once per distinct spec (`spec_facts`).

    A memo key part (`decision.decision_key`): its hash is computed once, and a spec seen
    before gives the same object, which dictionaries compare by identity first.
    """

    spec: PodSpec = field(compare=False)
    node_name: str | None
    gates: tuple[str, ...]
    # Where the pod may be scheduled (`isa.constraints`): the key both the decision memo
    # and the fleet's eligibility memo remember it by.
    constraints: Constraints
    # (containers, init containers) as thread tuning reads them.
    threads_input: tuple[tuple[ContainerCpu, ...], tuple[ContainerCpu, ...]]
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        value = (self.node_name, self.gates, self.constraints, self.threads_input)
        object.__setattr__(self, "_hash", hash(value))

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def of(cls, spec: PodSpec) -> SpecFacts:
        return cls(
            spec,
            spec.node_name,
            tuple(g.name for g in spec.scheduling_gates or ()),
            _read_constraints(spec),
            (
                _container_cpus("containers", spec.containers),
                _container_cpus("initContainers", spec.init_containers or ()),
            ),
        )


def _read_constraints(spec: PodSpec) -> Constraints:
    node_affinity = spec.affinity.node_affinity if spec.affinity is not None else None
    required = node_affinity.required if node_affinity is not None else None
    return Constraints.of(
        spec.node_selector,
        [t.term() for t in required.node_selector_terms] if required is not None else (),
        [t.toleration() for t in spec.tolerations] if spec.tolerations else (),
    )


# A workload's pods share their spec (they differ in metadata: names, labels): each
# distinct spec's JSON text is decoded once (`spec_facts`), so a pod's spec is kept as its
# text (a zero-copy slice of the body) until then; and specs that differ in one container
# (a new CPU request) share the others: each distinct container's text is decoded once.
# Decoding containers (their `env` lists most) was half of decoding a review.
# At most 512 specs of <= 32 KiB and 512 containers of <= 16 KiB: <= 24 MiB.
SPEC_MEMO_SIZE: Final = 512
SPEC_TEXT_LIMIT: Final = 32 * 1024
CONTAINER_MEMO_SIZE: Final = 512
CONTAINER_TEXT_LIMIT: Final = 16 * 1024
_SPEC_DECODER: Final = msgspec.json.Decoder(PodSpec)
_CONTAINER_DECODER: Final = msgspec.json.Decoder(Container)
_EMPTY_SPEC: Final = msgspec.Raw(b"{}")


def _read_container(text: bytes) -> ContainerCpu:
    return _CONTAINER_DECODER.decode(text).cpu()


def _read_spec(text: bytes) -> SpecFacts:
    return SpecFacts.of(_SPEC_DECODER.decode(text))


CONTAINERS: Final = TextMemo(_read_container, CONTAINER_MEMO_SIZE, CONTAINER_TEXT_LIMIT)
SPECS: Final = TextMemo(_read_spec, SPEC_MEMO_SIZE, SPEC_TEXT_LIMIT)


def spec_facts(raw: msgspec.Raw) -> SpecFacts:
    """What a decision reads of a spec given as its JSON text, decoded (and type-checked)
    once per distinct text; raises `msgspec.ValidationError` (at `$.spec...`)."""
    try:
        return SPECS.get(raw)
    except msgspec.ValidationError as exc:
        raise _inside(exc, ".spec") from None


def _container_cpus(field: str, raws: Sequence[msgspec.Raw]) -> tuple[ContainerCpu, ...]:
    cpus = []
    for at, raw in enumerate(raws):
        try:
            cpus.append(CONTAINERS.get(raw))
        except msgspec.ValidationError as exc:
            raise _inside(exc, f".{field}[{at}]") from None
    return tuple(cpus)


class _ComputedOnce(Generic[_T]):
    """`functools.cached_property` without its lock: Python 3.11's takes one on the first
    read, which cost ~1 us per pod on the admission path (and a pod is read by one
    thread). The value goes into the instance dict, which later reads find first."""

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self.compute, self.name, self.__doc__ = compute, compute.__name__, compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _ComputedOnce[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> _T: ...
    def __get__(self, instance: object, owner: type[Any]) -> _T | _ComputedOnce[_T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


class Pod(_Struct, frozen=True, dict=True, gc=True):  # dict: room for the facts, read once
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec_text: msgspec.Raw = msgspec.field(default=_EMPTY_SPEC, name="spec")

    @_ComputedOnce
    def facts(self) -> SpecFacts:
        """What a decision reads of the spec. Raises `msgspec.ValidationError` for a spec
        that is not one, at `$.spec....`."""
        return spec_facts(self.spec_text)

    @property
    def spec(self) -> PodSpec:
        return self.facts.spec

    @property
    def constraints(self) -> Constraints:
        return self.facts.constraints

    @property
    def threads_input(self) -> tuple[tuple[ContainerCpu, ...], tuple[ContainerCpu, ...]]:
        return self.facts.threads_input

    def gates(self) -> tuple[str, ...]:
        return self.facts.gates


class GroupVersionKind(_Struct, frozen=True):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Struct, frozen=True):
    group: str = ""
    version: str = ""
    resource: str = ""


class AdmissionRequest(_Struct, frozen=True):
    uid: Annotated[str, msgspec.Meta(min_length=1)]
    kind: GroupVersionKind
    operation: str
    resource: GroupVersionResource | None = None
    sub_resource: str | None = None
    namespace: str = ""
    name: str = ""
    # Read as a Pod whatever the kind: every Pod field is optional and the rest is
    # skipped, so another kind's object decodes too and is then ignored (`is_pod_create`).
    object: Pod | None = None
    dry_run: bool = False

    @property
    def is_pod_create(self) -> bool:
        return (
            self.kind.kind == "Pod"
            and self.kind.group == ""
            and self.operation == "CREATE"
            and not self.sub_resource
            and self.object is not None
        )


class ReviewEnvelope(_Struct, frozen=True):
    """What says a body is an AdmissionReview at all (checked first when one is not)."""

    api_version: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]


class AdmissionReview(ReviewEnvelope, frozen=True):
    request: AdmissionRequest


_REVIEW_DECODER: Final = msgspec.json.Decoder(AdmissionReview)


def decode_review(body: bytes) -> AdmissionReview:
    """The AdmissionReview in a request body; raises `msgspec.DecodeError` (not JSON) or
    its subclass `msgspec.ValidationError` (not a review), see `describe_error`."""
    review = _REVIEW_DECODER.decode(body)
    pod = review.request.object
    if pod is not None:
        try:
            pod.facts  # noqa: B018 - its spec is checked here, at the edge
        except msgspec.ValidationError as exc:
            raise _inside(exc, ".request.object") from None
    return review


_POD_DECODER: Final = msgspec.json.Decoder(Pod)


def pod_from(document: Mapping[str, Any]) -> Pod:
    """A pod given as data (a file, an API object); raises `msgspec.ValidationError`.

    Read as JSON text (as `kubectl` reads YAML: an unquoted date is its text), so that
    its spec is text as in a review."""
    try:
        text = msgspec.json.encode(document)
    except (TypeError, msgspec.EncodeError) as exc:
        raise msgspec.ValidationError(f"not JSON data: {exc}") from None
    pod = _POD_DECODER.decode(text)
    pod.facts  # noqa: B018 - its spec is checked now, not when first read
    return pod


# --- errors ---------------------------------------------------------------------------

# "Expected `str`, got `int` - at `$.spec.nodeSelector[...]`": what, then where.
_WHERE = re.compile(r"(?s)(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_GOT = re.compile(r"got `(?P<type>\w+)`")
_JSON_TYPES: Final[Mapping[type, str]] = {
    dict: "object",
    list: "array",
    str: "str",
    bool: "bool",
    int: "int",
    float: "float",
    type(None): "null",
}

# Where in a document: keys and list indices.
Location = tuple[str | int, ...]
# The review's literal fields: what an "Invalid enum value" error should have said.
_LITERALS: Final[Mapping[Location, str]] = {
    ("apiVersion",): ADMISSION_API_VERSION,
    ("kind",): ADMISSION_KIND,
}


def _inside(exc: msgspec.ValidationError, prefix: str) -> msgspec.ValidationError:
    """`exc`, raised for a part of a document, with its path inside the whole one."""
    found = _WHERE.fullmatch(str(exc))
    what, path = (found["what"], found["path"] or "") if found else (str(exc), "")
    return msgspec.ValidationError(f"{what} - at `${prefix}{path}`")


def describe_error(exc: msgspec.DecodeError, document: Any = None) -> tuple[Location, str]:
    """(where, what) for a decoding error, e.g. (("request", "uid"), "Field required").

    msgspec names a map's entry `[...]`; `document` (the data as plain JSON values, if
    the caller has it) turns that into the key whose value has the wrong type.
    """
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return (), f"Invalid JSON: {text.removeprefix('JSON is malformed: ')}"
    found = _WHERE.fullmatch(text)
    what, path = (found["what"], found["path"] or "") if found else (text, "")
    where: list[str | int] = []
    for step in _STEP.finditer(path):
        name, index = step.groups()
        if name is not None:
            where.append(name)
        elif index == "...":
            where.append(_wrong_key(document, where, what))
        else:
            where.append(int(index))
    missing = _MISSING.fullmatch(what)
    if missing:
        return (*where, missing["field"]), "Field required"
    expected = _LITERALS.get(tuple(where))
    if what.startswith("Invalid enum value") and expected is not None:
        return tuple(where), f"Input should be {expected!r} (got {what.split(' ', 3)[-1][:60]})"
    return tuple(where), what


def describe_review_error(exc: msgspec.DecodeError, body: bytes) -> tuple[Location, str]:
    """`describe_error` for a body `decode_review` refused, the envelope's error first.

    msgspec stops at the first error in the body's order (`request` may come before
    `apiVersion`); a body that is not an AdmissionReview at all is said to be that.
    """
    if not isinstance(exc, msgspec.ValidationError):
        return describe_error(exc)
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as not_json:  # the error came before the malformed part
        return describe_error(not_json)
    try:
        msgspec.convert(document, ReviewEnvelope)
    except msgspec.ValidationError as envelope:
        return describe_error(envelope, document)
    return describe_error(exc, document)


def _wrong_key(document: Any, where: list[str | int], what: str) -> str:
    """The first key of the map at `where` whose value has the type the error says it got."""
    value = document
    for part in where:
        if isinstance(value, list) and isinstance(part, int):
            value = value[part] if part < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return "*"
    got = _GOT.search(what)
    if not isinstance(value, dict) or got is None:
        return "*"
    for key, entry in value.items():
        if _JSON_TYPES.get(type(entry)) == got["type"]:
            return str(key)
    return "*"

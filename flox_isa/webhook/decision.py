"""The pure pod -> patch decision: the webhook and `flox-isa explain pod` both call `decide`.

Inputs are data (the pod, its namespace, whether that namespace opted in, a node
index, the catalog);
the output is a `Decision`: allowed or denied, a JSONPatch, warnings, why.
Rules (issue 4): scope, auto mode, guard mode, no eligible node, bad input,
idempotency. Nothing the user wrote is removed or changed, except that auto
mode turns `flox.dev/environment` from the base environment into its variant.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog, Variant, Workload
from flox_isa.isa.constraints import Constraints
from flox_isa.isa.contract import (
    ENVIRONMENT_EXAMPLE,
    ENVIRONMENT_GRAMMAR,
    contradictions,
    environment_annotations,
    is_environment,
    parse_environment,
    pinned_candidates,
    read_generations,
    required_labels,
    widest_allowed,
)
from flox_isa.isa.features import Features
from flox_isa.isa.inputs import ConflictError, InvalidInputError, parse_variants, parse_workload
from flox_isa.isa.offer import Offer, OfferIndex
from flox_isa.isa.placement import parse_when_full, ranked_candidates
from flox_isa.isa.selection import fits, rank_key
from flox_isa.isa.threads import (
    ContainerCpu,
    Override,
    Setting,
    env_entries,
    note_of,
    parse_override,
    with_note,
)
from flox_isa.isa.threads import plan as plan_threads
from flox_isa.webhook.models import Pod

Outcome = Literal["patched", "unchanged", "skipped", "denied"]
JsonPatchOp = dict[str, Any]

DAEMONSET_KIND: Final = "DaemonSet"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the webhook answers for one pod.

    `reason` is a short stable code (also a metric label); `message` is for people:
    the denial text, or the `isa.flox.dev/reason` annotation written on the pod.
    """

    allowed: bool
    outcome: Outcome
    reason: str
    message: str
    patch: tuple[JsonPatchOp, ...] = ()
    warnings: tuple[str, ...] = ()
    variant: str | None = None
    code: int = 200
    # The environment values the patch writes and what they are made of (auto mode),
    # so that they can be renamed (`renamed_patch`); None when it writes none.
    environment: EnvironmentNames | None = None

    def to_json(self) -> dict[str, Any]:
        """The shape `flox-isa explain pod --output json` prints."""
        return {
            "allowed": self.allowed,
            "patch": list(self.patch),
            "warnings": list(self.warnings),
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class EnvironmentNames:
    """The base environment an auto patch names, the variant build it pins, and the
    annotations it writes for them (`contract.environment_annotations`)."""

    base: str
    variant: Variant
    generations: Mapping[str, int] | None
    annotations: Mapping[str, str]

    @classmethod
    def of(
        cls, base: str, variant: Variant, generations: Mapping[str, int] | None
    ) -> EnvironmentNames:
        return cls(base, variant, generations, environment_annotations(base, variant, generations))


@dataclass(frozen=True, slots=True)
class Context:
    """What a decision needs besides the pod."""

    catalog: Catalog
    offers: OfferIndex | None  # None until the node inventory has been listed once
    own_namespace: str = ""
    # Late binding: gate auto-mode pods for the placement controller (only while it is
    # alive; see `kube.heartbeat`) instead of pinning them at admission.
    late_binding: bool = False


@dataclass(frozen=True, slots=True)
class Inputs:
    """The pod's validated flox-isa inputs."""

    environment: str | None
    workload: Workload
    allowed: tuple[Variant, ...]
    guard_variant: Variant | None
    guard_source: str = ""
    generations: Mapping[str, int] | None = None  # isa.flox.dev/generations
    threads: tuple[Setting, ...] = ()  # OMP/MKL/OPENBLAS_NUM_THREADS per container
    threads_note: str = ""  # what they say, for the reason annotation


# --- entry point -------------------------------------------------------------


def decide(pod: Pod, namespace: str, namespace_opted_in: bool, ctx: Context) -> Decision:
    """The webhook's answer for a pod being created in `namespace`.

    `namespace_opted_in`: the namespace is labelled `isa.flox.dev/inject: "true"`.
    The webhook knows it from the path the API server called, whose
    namespaceSelector checked the label (see `registration`); `explain pod` assumes it.
    """
    skip = skip_reason(pod, namespace, namespace_opted_in, ctx.own_namespace)
    if skip is not None:
        return Decision(True, "skipped", skip[0], skip[1])
    try:
        inputs = read_inputs(pod, ctx.catalog)
        if inputs is None:
            return Decision(
                True,
                "skipped",
                "no-environment",
                f"opted in, but has no {names.ENVIRONMENT_ANNOTATION} annotation"
                f" and no {names.VARIANT_LABEL} label: nothing to do",
            )
        if pod.spec.node_name:
            return on_assigned_node(pod, inputs, pod.spec.node_name, ctx)
        if inputs.guard_variant is not None:
            return guard(pod, inputs, inputs.guard_variant, ctx)
        return auto(pod, inputs, ctx)
    except InvalidInputError as exc:
        return _deny("invalid-input", str(exc))
    except ConflictError as exc:
        return _deny("conflict", str(exc))


DecisionKey = tuple[object, ...]

# The only labels and annotations `decide` reads (and, through `map_ops`, whether each
# map is empty); any other label or annotation cannot change a decision.
READ_LABELS: Final = (names.INJECT_LABEL, names.VARIANT_LABEL)
READ_ANNOTATIONS: Final = (
    names.ENVIRONMENT_ANNOTATION,
    names.WORKLOAD_ANNOTATION,
    names.VARIANTS_ANNOTATION,
    names.GENERATIONS_ANNOTATION,
    names.BASE_ENVIRONMENT_ANNOTATION,
    names.REASON_ANNOTATION,
    names.PLACEMENT_ANNOTATION,
    names.WHEN_FULL_ANNOTATION,
    names.THREADS_ANNOTATION,
)


def decision_key(
    pod: Pod, namespace: str, namespace_opted_in: bool, late_binding: bool = False
) -> DecisionKey:
    """Everything `decide` reads besides its Context, as one hashable value.

    Equal keys under the same Context get equal decisions: the pods of one
    ReplicaSet differ only in their names, and pods that differ only in labels
    and annotations flox-isa does not read (an app's own labels) decide alike.
    """
    meta = pod.metadata
    return (
        namespace,
        namespace_opted_in,
        _read_entries(meta.labels, READ_LABELS),
        _read_entries(meta.annotations, READ_ANNOTATIONS),
        tuple([(owner.kind, owner.controller) for owner in meta.owner_references or ()]),
        pod.facts,  # what it reads of the spec: node name, constraints, gates, containers
        late_binding,
    )


def _read_entries(entries: Mapping[str, str] | None, keys: Sequence[str]) -> tuple[object, ...]:
    """The values of `keys` in a map; () for an empty map, which is patched differently."""
    if not entries:
        return ()
    return tuple(map(entries.get, keys))


# Where `decision_key` holds the annotations it read, and where in those the two
# environment annotations are.
_KEY_ANNOTATIONS: Final = 3
_KEY_ENVIRONMENT: Final = READ_ANNOTATIONS.index(names.ENVIRONMENT_ANNOTATION)
_KEY_BASE: Final = READ_ANNOTATIONS.index(names.BASE_ENVIRONMENT_ANNOTATION)


def template_key(key: DecisionKey, catalog: Catalog) -> DecisionKey | None:
    """The key of every pod that `decide` treats as this one but for the owner/name of its
    environment (None when there is no such class: no or a malformed environment, or a
    base-environment annotation, which the patch compares with it).

    A decision reads of the reference only whether it is valid, its generation pin and
    which variant's build it names (guard mode); the name itself goes only into the
    patch's two environment values, which `renamed_patch` renames. So a stream of
    new environments (each team's own) is decided once per shape, not once per name.
    """
    annotations = key[_KEY_ANNOTATIONS]
    if not isinstance(annotations, tuple) or not annotations:
        return None
    environment, base = annotations[_KEY_ENVIRONMENT], annotations[_KEY_BASE]
    if not isinstance(environment, str) or base is not None:
        return None
    reference = parse_environment(environment)
    if reference is None:
        return None
    build = catalog.variant_for_environment(reference.name)
    shape = ("environment", reference.generation, build.name if build is not None else None)
    shaped = (*annotations[:_KEY_ENVIRONMENT], shape, *annotations[_KEY_ENVIRONMENT + 1 :])
    return (*key[:_KEY_ANNOTATIONS], shaped, *key[_KEY_ANNOTATIONS + 1 :])


def renamed_patch(decision: Decision, values: Mapping[str, str]) -> tuple[JsonPatchOp, ...]:
    """`decision.patch` with the environment values it writes (`decision.environment`)
    set to `values` (the same annotations' new values)."""
    named = decision.environment
    if named is None:
        return decision.patch
    old = named.annotations
    # Key by key: the pod has its environment annotation, so the map is never made whole.
    patch = list(decision.patch)
    for at, op in enumerate(patch):
        key = _ENVIRONMENT_PATHS.get(op["path"])
        if key is not None and op.get("value") == old[key]:
            patch[at] = {**op, "value": values[key]}
    return tuple(patch)


def _deny(reason: str, message: str, code: int = 400) -> Decision:
    return Decision(False, "denied", reason, message, code=code)


# --- rule 1: scope ------------------------------------------------------------


def skip_reason(
    pod: Pod,
    namespace: str,
    namespace_opted_in: bool,
    own_namespace: str,
) -> tuple[str, str] | None:
    """(code, message) when the pod is out of scope, else None."""
    if namespace.startswith("kube-"):
        return "system-namespace", f"namespace {namespace} is a kube-* system namespace"
    if own_namespace and namespace == own_namespace:
        return "own-namespace", f"namespace {namespace} is the webhook's own namespace"
    owners = pod.metadata.owner_references or []
    if any(o.kind == DAEMONSET_KIND and o.controller is not False for o in owners):
        return "daemonset", "DaemonSet pods run on every node they select; left alone"
    pod_says = (pod.metadata.labels or {}).get(names.INJECT_LABEL)
    if pod_says == "true":
        return None
    if pod_says == "false" and namespace_opted_in:
        return "opted-out", (
            f'the pod is labelled {names.INJECT_LABEL}: "false": it opts out of'
            f" namespace {namespace}'s opt-in"
        )
    if not namespace_opted_in:
        return "not-opted-in", (
            f"neither the pod nor namespace {namespace or '(none)'} is labelled"
            f' {names.INJECT_LABEL}: "true"'
        )
    return None


# --- rule 5: inputs -------------------------------------------------------------


def read_inputs(pod: Pod, catalog: Catalog) -> Inputs | None:
    """The validated inputs, None when the pod asks nothing of flox-isa."""
    annotations = pod.metadata.annotations or {}
    labels = pod.metadata.labels or {}
    environment = annotations.get(names.ENVIRONMENT_ANNOTATION)
    label_variant = labels.get(names.VARIANT_LABEL)
    if environment is None and label_variant is None:
        return None
    workload = parse_workload(annotations.get(names.WORKLOAD_ANNOTATION))
    allowed_text = annotations.get(names.VARIANTS_ANNOTATION)
    allowed = parse_variants(allowed_text, catalog)
    generations = read_generations(annotations.get(names.GENERATIONS_ANNOTATION), catalog)
    if environment is not None:
        check_environment(environment)
    guard_variant, source = guard_variant_of(environment, label_variant, catalog)
    if guard_variant is not None and allowed_text is not None and guard_variant not in allowed:
        raise ConflictError(
            f"variant {guard_variant.name} (from {source}) is not in"
            f" {names.VARIANTS_ANNOTATION}: {_names(allowed)}"
        )
    if guard_variant is not None:
        check_guard_generation(environment, guard_variant, generations)
    elif environment is not None:
        allowed = pinned_candidates(environment, allowed, generations)
    override = parse_override(annotations.get(names.THREADS_ANNOTATION))
    threads, note = thread_plan(*pod.threads_input, override)
    return Inputs(environment, workload, allowed, guard_variant, source, generations, threads, note)


@functools.lru_cache(maxsize=1024)
def thread_plan(
    containers: tuple[ContainerCpu, ...],
    init_containers: tuple[ContainerCpu, ...],
    override: Override,
) -> tuple[tuple[Setting, ...], str]:
    """The thread settings (`isa.threads.plan`) and their note, remembered: the pods of
    one workload share their containers' CPUs, and a fresh decision is mostly this."""
    threads = plan_threads(containers, init_containers, override=override)
    return threads, note_of(threads, override)


def check_guard_generation(
    environment: str | None, variant: Variant, generations: Mapping[str, int] | None
) -> None:
    """A pinned variant keeps its generation; a generations map must agree with it."""
    if generations is None:
        return
    if variant.name not in generations:
        raise ConflictError(
            f"variant {variant.name} is not in {names.GENERATIONS_ANNOTATION}:"
            f" {', '.join(generations)}"
        )
    reference = parse_environment(environment) if environment else None
    if reference and reference.generation not in (None, generations[variant.name]):
        raise ConflictError(
            f"{names.ENVIRONMENT_ANNOTATION} {environment} is generation"
            f" {reference.generation} but {names.GENERATIONS_ANNOTATION} says"
            f" {variant.name}={generations[variant.name]}"
        )


def check_environment(environment: str) -> None:
    if is_environment(environment):
        return
    where = f"annotation {names.ENVIRONMENT_ANNOTATION}"
    expected = f"expected {ENVIRONMENT_GRAMMAR}, e.g. {ENVIRONMENT_EXAMPLE}"
    if not environment.strip():
        raise InvalidInputError(f"{where} is empty; {expected}")
    raise InvalidInputError(f"{where}: {environment!r} is malformed; {expected}")


def guard_variant_of(
    environment: str | None, label_variant: str | None, catalog: Catalog
) -> tuple[Variant | None, str]:
    """The variant the pod is already bound to, and where that was said."""
    reference = parse_environment(environment) if environment else None
    from_env = catalog.variant_for_environment(reference.name) if reference else None
    if label_variant is None:
        return from_env, f"{names.ENVIRONMENT_ANNOTATION} {environment}"
    from_label = catalog.get(label_variant)
    if from_label is None:
        raise InvalidInputError(
            f"label {names.VARIANT_LABEL}: unknown variant {label_variant!r};"
            f" allowed: {', '.join(catalog.names)}"
        )
    if from_env is not None and from_env != from_label:
        raise ConflictError(
            f"{names.ENVIRONMENT_ANNOTATION} {environment} is the {from_env.name} build but"
            f" label {names.VARIANT_LABEL} says {from_label.name}"
        )
    return from_label, f"label {names.VARIANT_LABEL}"


# --- rule 3: guard mode ------------------------------------------------------------


def guard(pod: Pod, inputs: Inputs, variant: Variant, ctx: Context) -> Decision:
    """Pin an already-chosen variant to nodes that have its instructions."""
    conflicts = contradictions(variant, pod.constraints)
    if conflicts:
        raise ConflictError(
            f"{variant.name} (from {inputs.guard_source}) cannot run where this pod is"
            f" constrained to: {'; '.join(conflicts)}"
        )
    selector = missing_selector(variant, pod.spec.node_selector)
    ops = selector_ops(pod, selector)
    if (pod.metadata.labels or {}).get(names.VARIANT_LABEL) is None:
        ops += map_ops("/metadata/labels", pod.metadata.labels, {names.VARIANT_LABEL: variant.name})
    ops += thread_ops(inputs.threads)
    message = with_note(
        f"guard: {variant.name} needs {_requirement_text(variant)}", inputs.threads_note
    )
    annotations = pod.metadata.annotations or {}
    if ops and names.REASON_ANNOTATION not in annotations:
        ops += map_ops(
            "/metadata/annotations",
            pod.metadata.annotations,
            {names.REASON_ANNOTATION: message},
        )
    warnings: tuple[str, ...] = ()
    if ctx.offers is not None and not offer_of(pod, ctx.offers).offers(variant):
        warnings = (
            f"flox-isa: no eligible node offers {variant.name} now; the pod stays Pending"
            " until such a node joins",
        )
    outcome: Outcome = "patched" if ops else "unchanged"
    return Decision(True, outcome, "guard", message, tuple(ops), warnings, variant.name)


def missing_selector(variant: Variant, selector: Mapping[str, str] | None) -> dict[str, str]:
    have = selector or {}
    return {k: v for k, v in required_labels(variant).items() if k not in have}


# --- a pod whose spec.nodeName is already set (the scheduler is not asked) ---------------


def on_assigned_node(pod: Pod, inputs: Inputs, node: str, ctx: Context) -> Decision:
    """The node is chosen: pick its best variant, or check that it runs the pinned one."""
    features = ctx.offers.fleet.features_of(node) if ctx.offers is not None else None
    if inputs.guard_variant is not None:
        variant = inputs.guard_variant
        decision = guard(pod, inputs, variant, ctx)
        if features is None:
            return _with_warnings(decision, _unknown_node(node, ctx, f"has {variant.name}'s flags"))
        if not fits(variant, features):
            raise ConflictError(
                f"spec.nodeName {node} cannot run {variant.name} (from {inputs.guard_source}):"
                f" {_lacks(variant, features)}"
            )
        return _with_warnings(decision, ())
    if ctx.offers is None:
        return auto(pod, inputs, ctx)  # the inventory-not-ready answer
    environment = inputs.environment or ""
    if features is None:
        return Decision(
            True,
            "unchanged",
            "node-unknown",
            f"spec.nodeName {node} is not among the nodes flox-isa knows; left unchanged",
            warnings=_unknown_node(node, ctx, "runs a variant"),
        )
    candidates = sorted(
        (v for v in inputs.allowed if fits(v, features)), key=lambda v: rank_key(v, inputs.workload)
    )
    if not candidates:
        details = "; ".join(f"{v.name}: {_lacks(v, features)}" for v in inputs.allowed)
        raise ConflictError(f"spec.nodeName {node} runs none of the allowed variants ({details})")
    variant = candidates[0]
    message = f"auto: {inputs.workload}: {variant.name} is the best variant node {node} runs"
    message = with_note(message, inputs.threads_note)
    named = EnvironmentNames.of(environment, variant, inputs.generations)
    ops = auto_ops(pod, named, message, inputs)
    return Decision(
        True, "patched", "auto", message, tuple(ops), (), variant.name, environment=named
    )


def _unknown_node(node: str, ctx: Context, what: str) -> tuple[str, ...]:
    if ctx.offers is None:
        return ()
    return (f"flox-isa: node {node} is not in the inventory: cannot check that it {what}",)


def _lacks(variant: Variant, features: Features) -> str:
    if variant.arch != features.arch:
        return f"it is {features.arch}, {variant.name} needs {variant.arch}"
    return f"it lacks {', '.join(sorted(variant.flags - features.flags))}"


def _with_warnings(decision: Decision, warnings: tuple[str, ...]) -> Decision:
    """The decision with `warnings` instead of its fleet-wide ones (the node is chosen)."""
    return dataclasses.replace(decision, warnings=warnings)


# --- rules 2 and 4: auto mode ---------------------------------------------------------


def auto(pod: Pod, inputs: Inputs, ctx: Context) -> Decision:
    """Pick the best allowed variant some eligible node offers, and patch the pod to it
    (or, with late binding, gate it for the placement controller)."""
    annotations = pod.metadata.annotations or {}
    parse_when_full(annotations.get(names.WHEN_FULL_ANNOTATION))  # a bad value is denied
    if names.PLACEMENT_GATE in pod.gates():  # reinvoked, or gated at creation: ours to place
        return Decision(True, "unchanged", "gated", "gated: the placement controller places it")
    if ctx.offers is None:
        return _deny(
            "inventory-not-ready",
            "flox-isa has not listed the cluster's nodes yet; retry in a few seconds",
            code=503,
        )
    environment = inputs.environment
    if environment is None:  # unreachable: without an environment the pod is in guard mode
        raise InvalidInputError(f"annotation {names.ENVIRONMENT_ANNOTATION} is missing")
    offer = offer_of(pod, ctx.offers)
    ranked = ranked_candidates(inputs.allowed, offer, inputs.workload)
    warnings: tuple[str, ...] = ()
    if ranked and late_binding_applies(pod, ctx):
        return gate(pod, ranked, inputs)
    if ranked:
        variant, reason = ranked[0], "auto"
        message = auto_message(ranked, inputs.workload, offer)
    else:
        variant = widest_fit(pod.constraints, inputs)
        reason = "no-eligible-node"
        message = (
            f"auto: no eligible node ({offer.eligible_nodes} match the pod's constraints)"
            f" offers any of {_names(inputs.allowed)}; pinned {variant.name}, the widest fit"
        )
        warnings = (
            f"flox-isa: no eligible node offers an allowed variant; pinned {variant.name}"
            " (widest fit): Pending until one joins",
        )
    message = with_note(message, inputs.threads_note)
    named = EnvironmentNames.of(environment, variant, inputs.generations)
    ops = auto_ops(pod, named, message, inputs)
    return Decision(
        True, "patched", reason, message, tuple(ops), warnings, variant.name, environment=named
    )


def late_binding_applies(pod: Pod, ctx: Context) -> bool:
    """Gate unless late binding is off or the pod opts out (`isa.flox.dev/placement`)."""
    annotations = pod.metadata.annotations or {}
    opt_out = annotations.get(names.PLACEMENT_ANNOTATION) == names.PLACEMENT_ADMISSION
    return ctx.late_binding and not opt_out


def gate(pod: Pod, ranked: Sequence[Variant], inputs: Inputs) -> Decision:
    """Add the placement gate: the controller picks the variant with room before scheduling."""
    gate_entry = {"name": names.PLACEMENT_GATE}
    if pod.spec.scheduling_gates:
        ops: list[JsonPatchOp] = [
            {"op": "add", "path": "/spec/schedulingGates/-", "value": gate_entry}
        ]
    else:
        ops = [{"op": "add", "path": "/spec/schedulingGates", "value": [gate_entry]}]
    message = (
        f"gated: {inputs.workload}: the placement controller pins the best of"
        f" {_names(ranked)} with room just before scheduling ({ranked[0].name} if it has room)"
    )
    message = with_note(message, inputs.threads_note)  # the controller carries it over
    ops += thread_ops(inputs.threads)  # env is immutable once the pod exists
    ops += map_ops("/metadata/annotations", pod.metadata.annotations,
                   {names.REASON_ANNOTATION: message})  # fmt: skip
    return Decision(True, "patched", "gated", message, tuple(ops))


def offer_of(pod: Pod, offers: OfferIndex) -> Offer:
    """What the nodes this pod could run on offer (remembered per distinct constraints)."""
    return offers.offer(pod.constraints)


def widest_fit(constraints: Constraints, inputs: Inputs) -> Variant:
    """The allowed variant with the fewest requirements that the pod's constraints allow."""
    return widest_allowed(constraints, inputs.allowed, inputs.workload)


def auto_message(ranked: Sequence[Variant], workload: Workload, offer: Offer) -> str:
    best = ranked[0]
    score = f"{best.score(workload):g}"
    if len(ranked) == 1:
        versus = "the only allowed variant eligible nodes offer"
    else:
        other = ranked[1]
        relation = ">" if best.score(workload) > other.score(workload) else "= (wider fit)"
        versus = f"{relation} {other.name} {other.score(workload):g}"
    return (
        f"auto: {workload}: {best.name} {score} {versus};"
        f" {offer.offers(best)} of {offer.eligible_nodes} eligible nodes offer {best.name}"
    )


def auto_ops(pod: Pod, named: EnvironmentNames, message: str, inputs: Inputs) -> list[JsonPatchOp]:
    variant = named.variant
    ops = selector_ops(pod, missing_selector(variant, pod.spec.node_selector))
    ops += map_ops(
        "/metadata/annotations",
        pod.metadata.annotations,
        {**named.annotations, names.REASON_ANNOTATION: message},
    )
    ops += map_ops("/metadata/labels", pod.metadata.labels, {names.VARIANT_LABEL: variant.name})
    return ops + thread_ops(inputs.threads)


def thread_ops(settings: Sequence[Setting]) -> list[JsonPatchOp]:
    """Add the thread variables to each container the settings give a count (`isa.threads`)."""
    ops: list[JsonPatchOp] = []
    for setting in settings:
        if setting.threads is None:
            continue
        entries = env_entries(setting.threads)
        path = f"/spec/containers/{setting.index}/env"
        if setting.has_env:
            ops += [{"op": "add", "path": path + "/-", "value": entry} for entry in entries]
        else:
            ops.append({"op": "add", "path": path, "value": entries})
    return ops


# --- JSONPatch ---------------------------------------------------------------------------


def selector_ops(pod: Pod, entries: Mapping[str, str]) -> list[JsonPatchOp]:
    return map_ops("/spec/nodeSelector", pod.spec.node_selector, entries)


def map_ops(
    path: str, existing: Mapping[str, str] | None, entries: Mapping[str, str]
) -> list[JsonPatchOp]:
    """Set `entries` in the string map at `path` (created when absent)."""
    if not entries:
        return []
    if not existing:
        return [{"op": "add", "path": path, "value": dict(entries)}]
    return [
        {
            "op": "replace" if key in existing else "add",
            "path": f"{path}/{escape(key)}",
            "value": value,
        }
        for key, value in entries.items()
        if existing.get(key) != value
    ]


@functools.lru_cache(maxsize=4096)
def escape(key: str) -> str:
    """A map key as a JSON Pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


# The paths of the patch's environment values (`renamed_patch`) -> their annotation.
_ENVIRONMENT_PATHS: Final = {
    f"/metadata/annotations/{escape(key)}": key
    for key in (names.ENVIRONMENT_ANNOTATION, names.BASE_ENVIRONMENT_ANNOTATION)
}


def _requirement_text(variant: Variant) -> str:
    return f"{variant.arch} with {', '.join(sorted(variant.flags)) or 'no extra flags'}"


def _names(variants: Sequence[Variant]) -> str:
    return ", ".join(v.name for v in variants)

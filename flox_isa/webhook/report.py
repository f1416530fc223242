"""`flox-isa report`: what flox-isa did on a cluster, from its pods and nodes. Pure.

Per instance type (or NFD CPU model) x workload x variant: the pods placed (by their
`isa.flox.dev/variant` label), their expected tickets/s next to the baseline build of
their own architecture; Pending pods and why; opted-in pods left unpatched and why; and
Flox pods that are not opted in but would gain, with the gain. `make demo` prints its
table through `render_text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from flox_isa.isa import names
from flox_isa.isa.catalog import DEFAULT_WORKLOAD, WORKLOADS, Catalog, Workload
from flox_isa.isa.fleet_index import index_nodes
from flox_isa.isa.nodes import node_state
from flox_isa.isa.offer import OfferIndex
from flox_isa.isa.placement import placement_gates
from flox_isa.isa.report import Placement, ReportRow, speedup, throughput_rows
from flox_isa.isa.threads import container_cpu
from flox_isa.isa.throughput import replica_cpus
from flox_isa.webhook.decision import Context, decide
from flox_isa.webhook.models import Pod, pod_from

FLOX_RUNTIME_CLASS: Final = "flox"
NFD_CPU_MODEL: Final = "feature.node.kubernetes.io/cpu-model."
DONE_PHASES: Final = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class PodNote:
    """A pod (or a group of alike pods) and what to say about it."""

    namespace: str
    name: str
    why: str
    variant: str | None = None
    pods: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "pods": self.pods,
            "variant": self.variant,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class Hint:
    """Flox pods of one owner that are not opted in, and what opting in would give them."""

    namespace: str
    owner: str
    pods: int
    workload: Workload
    runs: str  # the build they run now (their own variant, else the arch's baseline)
    would_get: str
    gain: float

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "owner": self.owner,
            "pods": self.pods,
            "workload": self.workload,
            "runs": self.runs,
            "wouldGet": self.would_get,
            "gain": round(self.gain, 3),
        }


@dataclass(frozen=True, slots=True)
class Report:
    rows: list[ReportRow]
    baselines: dict[str, str]
    pending: list[PodNote] = field(default_factory=list)
    skipped: list[PodNote] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "baselines": self.baselines,
            "rows": [
                {
                    "instanceType": r.instance_type,
                    "workload": r.workload,
                    "variant": r.variant,
                    "pods": r.pods,
                    "ticketsPerSecond": r.throughput,
                    "baseline": r.baseline,
                    "baselineTicketsPerSecond": r.baseline_throughput,
                    "ratio": round(r.ratio, 3),
                }
                for r in self.rows
            ],
            "total": {
                "ticketsPerSecond": sum(r.throughput for r in self.rows),
                "baselineTicketsPerSecond": sum(r.baseline_throughput for r in self.rows),
                "ratio": round(speedup(self.rows), 3),
            },
            "pending": [p.to_json() for p in self.pending],
            "skipped": [p.to_json() for p in self.skipped],
            "hints": [h.to_json() for h in self.hints],
            "notes": self.notes,
        }


def build_report(
    pods: Sequence[Mapping[str, Any]],
    nodes: Sequence[Mapping[str, Any]],
    catalog: Catalog,
    baselines: Mapping[str, str],
    *,
    opted_in_namespaces: set[str] | None = None,
    ticketworkers: Sequence[Mapping[str, Any]] = (),
    notes: Sequence[str] = (),
) -> Report:
    """The report for a cluster's `pods` on its `nodes` (dicts as the API serves them).

    `opted_in_namespaces`: those labelled `isa.flox.dev/inject=true` (None: unknown, so
    only pods labelled so count as opted in). `ticketworkers` give their pods' workload.
    """
    where = {_name(n): _node_kind(n) for n in nodes}
    tw_workloads = {
        (_meta(t).get("namespace"), _meta(t).get("name")): (t.get("spec") or {}).get("workload")
        for t in ticketworkers
    }
    fleet = index_nodes(node_state(n) for n in nodes)
    ctx = Context(catalog, OfferIndex(fleet, catalog))
    placements: list[Placement] = []
    pending: dict[tuple[str, str, str | None, str], int] = {}
    skipped: dict[tuple[str, str, str | None, str], int] = {}
    hint_pods: dict[tuple[str, str, Workload, str, str], int] = {}
    for pod in pods:
        meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in DONE_PHASES:
            continue
        namespace, labels = str(meta.get("namespace") or ""), meta.get("labels") or {}
        variant = labels.get(names.VARIANT_LABEL)
        workload = _workload(pod, tw_workloads)
        if spec.get("nodeName") and variant:
            cpus = replica_cpus([container_cpu(c) for c in spec.get("containers") or []])
            placements.append(Placement(where.get(spec["nodeName"], "?"), variant, workload, cpus))
            continue
        if not _opted_in(labels, namespace, opted_in_namespaces):
            if variant is None and _is_flox(pod):
                hint = _hint(pod, namespace, workload, catalog, baselines, ctx=ctx)
                if hint is not None:
                    hint_pods[hint] = hint_pods.get(hint, 0) + 1
            continue
        if not spec.get("nodeName"):
            key = (namespace, _owner(pod), variant, _pending_why(pod))
            pending[key] = pending.get(key, 0) + 1
        elif variant is None:
            key = (namespace, _owner(pod), None, _skipped_why(pod, namespace, ctx))
            skipped[key] = skipped.get(key, 0) + 1
    hints = [
        Hint(ns, owner, count, workload, runs, gets, _gain(catalog, workload, gets, runs))
        for (ns, owner, workload, runs, gets), count in sorted(hint_pods.items())
    ]
    return Report(
        throughput_rows(placements, catalog, baselines),
        dict(baselines),
        _grouped(pending),
        _grouped(skipped),
        hints,
        list(notes),
    )


def _grouped(counts: Mapping[tuple[str, str, str | None, str], int]) -> list[PodNote]:
    return [
        PodNote(namespace, owner, why, variant, pods)
        for (namespace, owner, variant, why), pods in sorted(
            counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][3])
        )
    ]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "?")


def _node_kind(node: Mapping[str, Any]) -> str:
    """The instance type, else the NFD CPU model (vendor/family/model), else "?"."""
    labels = _meta(node).get("labels") or {}
    instance_type = labels.get(names.INSTANCE_TYPE_LABEL)
    if instance_type:
        return str(instance_type)
    model = [labels.get(NFD_CPU_MODEL + k) for k in ("vendor_id", "family", "id")]
    if any(model):
        return "cpu-model:" + "/".join(str(m or "?") for m in model)
    return "?"


def _workload(pod: Mapping[str, Any], tw_workloads: Mapping[Any, Any]) -> Workload:
    meta = _meta(pod)
    value = (meta.get("annotations") or {}).get(names.WORKLOAD_ANNOTATION)
    owner = (meta.get("labels") or {}).get(names.TICKETWORKER_LABEL)
    if value is None and owner:
        value = tw_workloads.get((meta.get("namespace"), owner))
    for workload in WORKLOADS:
        if workload == value:
            return workload
    return DEFAULT_WORKLOAD


def _opted_in(labels: Mapping[str, Any], namespace: str, namespaces: set[str] | None) -> bool:
    says = labels.get(names.INJECT_LABEL)
    return says == "true" or (says != "false" and namespace in (namespaces or set()))


def _is_flox(pod: Mapping[str, Any]) -> bool:
    annotations = _meta(pod).get("annotations") or {}
    runtime = (pod.get("spec") or {}).get("runtimeClassName")
    return runtime == FLOX_RUNTIME_CLASS or names.ENVIRONMENT_ANNOTATION in annotations


def _pending_why(pod: Mapping[str, Any]) -> str:
    """Why a pod is not bound: its scheduling gates, else the scheduler's condition."""
    annotations = _meta(pod).get("annotations") or {}
    reason = annotations.get(names.REASON_ANNOTATION)
    gates = placement_gates(pod)
    parts = []
    if names.PLACEMENT_GATE in gates:
        parts.append("gated: waiting for flox-isa's placement controller")
    others = [str(g) for g in gates if g != names.PLACEMENT_GATE]
    if others:
        parts.append(f"scheduling gate {', '.join(others)}")
    conditions = (pod.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            if condition.get("reason") == "SchedulingGated" and gates:
                continue
            message = " ".join(str(condition.get("message") or "").split())
            parts.append(f"{condition.get('reason') or 'not scheduled'}: {message}".rstrip(": "))
    if reason:
        parts.append(f"placement: {reason}")
    return "; ".join(parts) or "not scheduled yet"


def _as_new(pod: Mapping[str, Any]) -> Pod | None:
    """The pod as a new pod like it would be admitted (no node), None if it does not parse."""
    spec = {k: v for k, v in (pod.get("spec") or {}).items() if k != "nodeName"}
    try:
        return pod_from({**pod, "spec": spec})
    except msgspec.ValidationError:
        return None


def _skipped_why(pod: Mapping[str, Any], namespace: str, ctx: Context) -> str:
    """Why an opted-in, running pod has no variant: the webhook's answer for it, today."""
    model = _as_new(pod)
    if model is None:
        return "its spec does not parse as a pod"
    decision = decide(model, namespace, True, ctx)
    if decision.outcome == "skipped":
        return f"{decision.reason}: {decision.message}"
    if not decision.allowed:
        return f"the webhook would deny it now ({decision.reason}): {decision.message}"
    return (
        f"admitted without flox-isa's patch (webhook not called: created before opting in,"
        f" or failurePolicy Ignore while it was down); today it would get"
        f" {decision.variant or 'no variant'}"
    )


def _hint(
    pod: Mapping[str, Any],
    namespace: str,
    workload: Workload,
    catalog: Catalog,
    baselines: Mapping[str, str],
    *,
    ctx: Context,
) -> tuple[str, str, Workload, str, str] | None:
    """(namespace, owner, workload, runs, would get) when opting in would pick a better build."""
    if namespace.startswith("kube-"):
        return None
    model = _as_new(pod)
    if model is None:
        return None
    decision = decide(model, namespace, True, ctx)
    gets = catalog.get(decision.variant) if decision.variant else None
    if gets is None:
        return None
    runs = decision.variant if decision.reason == "guard" else baselines.get(gets.arch)
    if runs is None or _gain(catalog, workload, gets.name, runs) <= 1.0:
        return None
    return namespace, _owner(pod), workload, runs, gets.name


def _owner(pod: Mapping[str, Any]) -> str:
    meta = _meta(pod)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return f"Pod/{_name(pod)}"


def _gain(catalog: Catalog, workload: Workload, gets: str, runs: str) -> float:
    new, old = catalog.get(gets), catalog.get(runs)
    if new is None or old is None or not old.score(workload):
        return 1.0
    return new.score(workload) / old.score(workload)


# --- output ----------------------------------------------------------------------------


def baseline_text(baselines: Mapping[str, str]) -> str:
    return ", ".join(f"{v} on {a}" for a, v in sorted(baselines.items())) or "none"


def render_text(report: Report) -> list[str]:
    """The lines `flox-isa report` prints (and `make demo` ends with)."""
    header = ("INSTANCE-TYPE", "WORKLOAD", "VARIANT", "PODS", "TICKETS/S", "BASELINE",
              "BASELINE-TICKETS/S", "RATIO")  # fmt: skip
    table = [header] + [
        (r.instance_type, r.workload, r.variant, str(r.pods), f"{r.throughput:g}",
         r.baseline or "-", f"{r.baseline_throughput:g}", f"{r.ratio:.2f}x")
        for r in report.rows
    ]  # fmt: skip
    lines = _table(table) if report.rows else ["  no pod placed by flox-isa"]
    total = sum(r.throughput for r in report.rows)
    baseline = sum(r.baseline_throughput for r in report.rows)
    lines.append(
        f"Expected throughput {total:g} tickets/s vs {baseline:g} with the baseline build of"
        f" each architecture ({baseline_text(report.baselines)}): {speedup(report.rows):.2f}x"
        " (estimates: the guide's single-core score x each pod's CPUs)"
    )
    lines += _notes("Pending", report.pending)
    lines += _notes("Opted in but not placed", report.skipped)
    for hint in report.hints:
        lines.append(
            f"Hint: {hint.pods} Flox pod{'s' if hint.pods != 1 else ''} of {hint.owner} in"
            f" {hint.namespace} not opted in: {hint.workload} on {hint.would_get} instead of"
            f" {hint.runs} would be {hint.gain:.2f}x (label the pods or the namespace"
            f" {names.INJECT_LABEL}=true)"
        )
    lines += [f"Note: {note}" for note in report.notes]
    return lines


def _notes(title: str, notes: Iterable[PodNote]) -> list[str]:
    notes = list(notes)
    if not notes:
        return []
    count = sum(n.pods for n in notes)
    lines = [f"{title}: {count} pod{'s' if count != 1 else ''}"]
    lines += [
        f"  {n.pods} x {n.namespace} {n.name}{f' ({n.variant})' if n.variant else ''}: {n.why}"
        for n in notes
    ]
    return lines


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]

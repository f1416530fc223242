"""The pure pod -> patch decision: every rule of issue 4, on the devcluster's default fleet.

The fleet (tests/data/pods/nodes-default-fleet.yaml): two nodes each of m4 (avx2),
c5/m5 (avx512), m5n/m6i (avx512vnni), m7i (avx512bf16), c6g/c7g (armv8.2), c8g (armv9).
Helpers here are shared by the other webhook tests.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.fleet_index import FleetIndex, index_nodes
from flox_isa.isa.nodes import node_objects, node_state
from flox_isa.isa.offer import OfferIndex
from flox_isa.isa.scheduling import NodeState
from flox_isa.webhook.decision import (
    Context,
    Decision,
    EnvironmentNames,
    decide,
    decision_key,
    renamed_patch,
    template_key,
)
from flox_isa.webhook.models import Pod, pod_from

DATA = Path(__file__).parent.parent.parent / "data" / "pods"
CATALOG = default_catalog()
OWN_NAMESPACE = "flox-isa"
ENV = "yourorg/ticket-processor"
AVX512 = ["AVX512BW", "AVX512CD", "AVX512DQ", "AVX512F", "AVX512VL"]


@functools.cache
def _fleet_document() -> Any:
    return yaml.safe_load((DATA / "nodes-default-fleet.yaml").read_text())


def fleet_nodes() -> list[dict[str, Any]]:
    """A fresh copy of the default fleet's Node objects."""
    return [copy.deepcopy(dict(n)) for n in node_objects(_fleet_document())]


def fleet_states(
    change: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda n: n,
) -> list[NodeState]:
    """The default fleet, each node passed through `change` (None drops it)."""
    changed = (change(n) for n in fleet_nodes())
    return [node_state(n) for n in changed if n is not None]


def context(fleet: FleetIndex | None = None, *, ready: bool = True) -> Context:
    index = fleet if fleet is not None else index_nodes(fleet_states())
    return Context(CATALOG, OfferIndex(index, CATALOG) if ready else None, OWN_NAMESPACE)


def one_arch(arch: str) -> Context:
    """The default fleet's nodes of `arch` (amd64 or arm64) only."""
    return context(index_nodes(fleet_states(
        lambda n: n if n["metadata"]["labels"][names.ARCH_LABEL] == arch else None
    )))  # fmt: skip


def required_affinity(*terms: Mapping[str, Any]) -> dict[str, Any]:
    """A pod's required node affinity: a node must match one of `terms`."""
    required = {"nodeSelectorTerms": list(terms)}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def pod(
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    spec: Mapping[str, Any] | None = None,
    *,
    inject: bool = True,
    env: str | None = ENV,
) -> dict[str, Any]:
    meta_labels = dict(labels or {})
    if inject:
        meta_labels[names.INJECT_LABEL] = "true"
    meta_annotations = dict(annotations or {})
    if env is not None:
        meta_annotations.setdefault(names.ENVIRONMENT_ANNOTATION, env)
    metadata: dict[str, Any] = {"name": "worker", "namespace": "tickets"}
    if meta_labels:
        metadata["labels"] = meta_labels
    if meta_annotations:
        metadata["annotations"] = meta_annotations
    body = {"containers": [{"name": "worker", "image": "ghcr.io/flox/flox:latest"}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {**body, **(spec or {})},
    }


def run(
    pod_dict: Mapping[str, Any],
    ctx: Context | None = None,
    namespace: str = "tickets",
    namespace_opted_in: bool = False,
) -> Decision:
    return decide(pod_from(pod_dict), namespace, namespace_opted_in, ctx or context())


def apply_patch(document: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """Apply the JSONPatch ops the webhook emits (add/replace on objects)."""
    result = copy.deepcopy(dict(document))
    for op in patch:
        assert op["op"] in ("add", "replace"), op
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):  # only appends ("/-") are emitted into lists
            assert (op["op"], last) == ("add", "-"), op
            target.append(op["value"])
            continue
        if op["op"] == "replace":
            assert last in target, f"replace of a missing key: {op}"
        target[last] = op["value"]
    return result


def patched(decision: Decision, pod_dict: Mapping[str, Any]) -> dict[str, Any]:
    return apply_patch(pod_dict, decision.patch)


def selector_for(variant: str) -> dict[str, str]:
    v = CATALOG.get(variant)
    assert v is not None
    return {**{names.cpuid_label(f): "true" for f in v.flags}, names.ARCH_LABEL: v.arch}


# --- rule 1: scope -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "change", "reason"),
    [
        ("kube-system", {}, "system-namespace"),
        ("kube-public", {}, "system-namespace"),
        (OWN_NAMESPACE, {}, "own-namespace"),
        (
            "tickets",
            {"ownerReferences": [{"kind": "DaemonSet", "name": "agent", "controller": True}]},
            "daemonset",
        ),
    ],
)
@pytest.mark.parametrize("namespace_opted_in", [False, True], ids=["pod-opt-in", "ns-opt-in"])
def test_out_of_scope_pods_are_allowed_untouched(
    namespace: str, change: dict[str, Any], reason: str, namespace_opted_in: bool
) -> None:
    body = pod(spec=change.get("spec"))
    if "ownerReferences" in change:
        body["metadata"]["ownerReferences"] = change["ownerReferences"]
    decision = run(body, namespace=namespace, namespace_opted_in=namespace_opted_in)
    assert (decision.allowed, decision.outcome, decision.reason) == (True, "skipped", reason)
    assert decision.patch == ()


def test_replicaset_pods_are_in_scope() -> None:
    body = pod()
    body["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": "w-1", "controller": True}
    ]
    assert run(body).outcome == "patched"


@pytest.mark.parametrize(
    ("pod_label", "namespace_opted_in", "reason"),
    [
        (None, False, "not-opted-in"),
        ("false", False, "not-opted-in"),
        ("yes", False, "not-opted-in"),  # only "true" opts in
        ("true", False, "auto"),
        (None, True, "auto"),
        ("true", True, "auto"),
        ("false", True, "opted-out"),  # the pod's own "false" beats its namespace's "true"
        ("yes", True, "auto"),  # neither "true" nor "false": the namespace decides
    ],
)
def test_opt_in_by_pod_label_or_namespace_label_only(
    pod_label: str | None, namespace_opted_in: bool, reason: str
) -> None:
    labels = {names.INJECT_LABEL: pod_label} if pod_label is not None else None
    decision = run(pod(inject=False, labels=labels), namespace_opted_in=namespace_opted_in)
    assert decision.reason == reason
    assert decision.allowed
    assert bool(decision.patch) == (reason == "auto")


def test_opted_in_pod_without_environment_is_left_alone() -> None:
    decision = run(pod(env=None))
    assert (decision.outcome, decision.reason, decision.patch) == ("skipped", "no-environment", ())


# --- rule 2: auto mode -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workload", "variant"),
    [
        (None, "avx512"),  # fp32: avx512 = avx512vnni = avx512bf16; fewest flags wins
        ("fp32-inference", "avx512"),
        ("int8-inference", "avx512vnni"),
        ("bf16-training", "avx512bf16"),
    ],
)
def test_auto_picks_the_best_variant_for_the_workload(workload: str | None, variant: str) -> None:
    annotations = {names.WORKLOAD_ANNOTATION: workload} if workload else {}
    body = pod(annotations)
    decision = run(body)
    assert (decision.allowed, decision.outcome, decision.variant) == (True, "patched", variant)
    out = patched(decision, body)
    assert out["spec"]["nodeSelector"] == selector_for(variant)
    meta = out["metadata"]
    assert meta["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-{variant}"
    assert meta["annotations"][names.BASE_ENVIRONMENT_ANNOTATION] == ENV
    assert variant in meta["annotations"][names.REASON_ANNOTATION]
    assert meta["labels"][names.VARIANT_LABEL] == variant


def test_auto_reason_says_why_and_how_many_nodes() -> None:
    decision = run(pod({names.WORKLOAD_ANNOTATION: "int8-inference"}))
    # m5n, m6i, m7i: 6 of the 18 nodes have VNNI.
    assert decision.message == (
        "auto: int8-inference: avx512vnni 85 > avx512 52; 6 of 18 eligible nodes offer avx512vnni"
    )


def test_auto_honours_the_allowed_variants() -> None:
    body = pod({names.VARIANTS_ANNOTATION: "avx2, armv8.2"})
    assert run(body).variant == "avx2"  # 35 > 28
    body = pod({names.VARIANTS_ANNOTATION: "armv8.2,armv9"})
    assert run(body).variant == "armv9"


def test_auto_only_counts_nodes_matching_the_pods_node_selector() -> None:
    body = pod(spec={"nodeSelector": {names.ARCH_LABEL: "arm64"}})
    decision = run(body)
    assert decision.variant == "armv9"
    out = patched(decision, body)
    # The user's entry stays; ours are added beside it.
    assert out["spec"]["nodeSelector"] == selector_for("armv9")
    assert [op["op"] for op in decision.patch if op["path"].startswith("/spec")] == ["add"] * 4


def test_auto_only_counts_nodes_matching_required_affinity() -> None:
    affinity = required_affinity({"matchExpressions": [
        {"key": names.INSTANCE_TYPE_LABEL, "operator": "In", "values": ["m4.xlarge", "c6g.xlarge"]}
    ]})  # fmt: skip
    assert run(pod(spec={"affinity": affinity})).variant == "avx2"  # 35 > armv8.2 28


def test_auto_skips_tainted_nodes_unless_tolerated() -> None:
    def taint_m7i(node: dict[str, Any]) -> dict[str, Any]:
        if node["metadata"]["labels"][names.INSTANCE_TYPE_LABEL] == "m7i.xlarge":
            node["spec"] = {
                "taints": [{"key": "training", "value": "only", "effect": "NoSchedule"}]
            }
        return node

    ctx = context(index_nodes(fleet_states(taint_m7i)))
    bf16 = {names.WORKLOAD_ANNOTATION: "bf16-training"}
    assert run(pod(bf16), ctx).variant == "avx512"  # bf16 score 4, fewer flags than vnni
    toleration = [{"key": "training", "operator": "Equal", "value": "only", "effect": "NoSchedule"}]
    assert run(pod(bf16, spec={"tolerations": toleration}), ctx).variant == "avx512bf16"


@pytest.mark.parametrize(
    "change",
    [
        lambda n: {**n, "spec": {"unschedulable": True}},
        lambda n: {
            **n,
            "status": {**n["status"], "conditions": [{"type": "Ready", "status": "False"}]},
        },
    ],
    ids=["cordoned", "not-ready"],
)
def test_auto_skips_unschedulable_and_not_ready_nodes(
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    def only_m7i(node: dict[str, Any]) -> dict[str, Any]:
        is_m7i = node["metadata"]["labels"][names.INSTANCE_TYPE_LABEL] == "m7i.xlarge"
        return change(node) if is_m7i else node

    ctx = context(index_nodes(fleet_states(only_m7i)))
    assert run(pod({names.WORKLOAD_ANNOTATION: "bf16-training"}), ctx).variant == "avx512"


def test_a_per_node_label_in_the_selector_is_checked_node_by_node() -> None:
    on_c6g = pod(spec={"nodeSelector": {"kubernetes.io/hostname": "c6g-xlarge-1"}})
    decision = run(on_c6g)
    assert decision.variant == "armv8.2"
    assert "1 of 1 eligible nodes" in decision.message


def test_match_fields_on_node_name_are_checked_node_by_node() -> None:
    affinity = required_affinity({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["m7i-xlarge-0"]}
    ]})  # fmt: skip
    decision = run(pod(spec={"affinity": affinity}))
    assert decision.variant == "avx512"  # fp32 on a Sapphire Rapids node: the tie rule
    assert "2 of 1" not in decision.message and "1 of 1 eligible nodes" in decision.message


def test_auto_waits_for_the_node_inventory() -> None:
    decision = run(pod(), context(ready=False))
    assert (decision.allowed, decision.reason, decision.code) == (False, "inventory-not-ready", 503)


# --- rule 3: guard mode --------------------------------------------------------------------


def test_guard_adds_the_missing_selector_entries_and_keeps_the_environment() -> None:
    body = pod(env=f"{ENV}-avx512vnni", spec={"nodeSelector": {names.ARCH_LABEL: "amd64"}})
    decision = run(body)
    assert (decision.outcome, decision.reason, decision.variant) == (
        "patched",
        "guard",
        "avx512vnni",
    )
    out = patched(decision, body)
    assert out["spec"]["nodeSelector"] == selector_for("avx512vnni")
    assert out["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-avx512vnni"
    assert names.BASE_ENVIRONMENT_ANNOTATION not in out["metadata"]["annotations"]
    assert out["metadata"]["labels"][names.VARIANT_LABEL] == "avx512vnni"
    assert not any(op["path"] == f"/spec/nodeSelector/{names.ARCH_LABEL}" for op in decision.patch)


def test_guard_from_the_variant_label_alone() -> None:
    body = pod(env=None, labels={names.VARIANT_LABEL: "armv9"})
    decision = run(body)
    assert decision.reason == "guard"
    assert patched(decision, body)["spec"]["nodeSelector"] == selector_for("armv9")


def test_guard_of_a_fully_pinned_pod_is_no_patch() -> None:
    body = pod(
        env=f"{ENV}-avx2",
        labels={names.VARIANT_LABEL: "avx2"},
        spec={"nodeSelector": selector_for("avx2")},
    )
    decision = run(body)
    assert (decision.allowed, decision.outcome, decision.patch) == (True, "unchanged", ())


def test_guard_denies_a_contradicting_node_selector() -> None:
    body = pod(env=f"{ENV}-avx512", spec={"nodeSelector": {names.ARCH_LABEL: "arm64"}})
    decision = run(body)
    assert (decision.allowed, decision.reason, decision.code) == (False, "conflict", 400)
    assert "kubernetes.io/arch=arm64" in decision.message
    assert "avx512 needs kubernetes.io/arch=amd64" in decision.message


def test_guard_denies_a_contradicting_required_affinity() -> None:
    affinity = required_affinity({"matchExpressions": [
        {"key": names.ARCH_LABEL, "operator": "NotIn", "values": ["amd64"]}
    ]})  # fmt: skip
    decision = run(pod(env=f"{ENV}-avx2", spec={"affinity": affinity}))
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert "node affinity" in decision.message and "kubernetes.io/arch=amd64" in decision.message


def test_guard_allows_affinity_with_one_compatible_term() -> None:
    affinity = required_affinity(
        {"matchExpressions": [{"key": names.ARCH_LABEL, "operator": "In", "values": ["arm64"]}]},
        {"matchExpressions": [{"key": names.ARCH_LABEL, "operator": "Exists"}]},
    )
    assert run(pod(env=f"{ENV}-avx2", spec={"affinity": affinity})).allowed


def test_guard_denies_label_and_environment_that_disagree() -> None:
    decision = run(pod(env=f"{ENV}-avx512", labels={names.VARIANT_LABEL: "avx2"}))
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert "avx512" in decision.message and "avx2" in decision.message


def test_guard_denies_a_variant_outside_the_allowed_list() -> None:
    decision = run(pod({names.VARIANTS_ANNOTATION: "avx2,armv9"}, env=f"{ENV}-avx512"))
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert "avx2, armv9" in decision.message


def test_guard_warns_when_no_eligible_node_has_the_variant() -> None:
    decision = run(pod(env=f"{ENV}-avx512"), one_arch("arm64"))
    assert decision.allowed and decision.outcome == "patched"
    assert len(decision.warnings) == 1 and "avx512" in decision.warnings[0]


def test_guard_works_before_the_inventory_is_listed() -> None:
    decision = run(pod(env=f"{ENV}-avx2"), context(ready=False))
    assert (decision.allowed, decision.reason, decision.warnings) == (True, "guard", ())


# --- rule 4: no eligible node offers an allowed variant ----------------------------------------


def test_nothing_offered_pins_the_widest_fit_and_warns() -> None:
    body = pod({names.VARIANTS_ANNOTATION: "armv9,armv8.2"})
    decision = run(body, one_arch("amd64"))
    assert (decision.allowed, decision.reason, decision.variant) == (
        True,
        "no-eligible-node",
        "armv8.2",
    )
    assert len(decision.warnings) == 1
    assert "armv8.2" in decision.warnings[0] and "widest fit" in decision.warnings[0]
    assert len(decision.warnings[0]) <= 120  # kubectl prints warnings on one line
    out = patched(decision, body)
    assert out["spec"]["nodeSelector"] == selector_for("armv8.2")
    assert out["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] == f"{ENV}-armv8.2"


def test_nothing_eligible_at_all_pins_avx2() -> None:
    body = pod(spec={"nodeSelector": {"pool": "does-not-exist"}})
    decision = run(body)
    assert (decision.reason, decision.variant) == ("no-eligible-node", "avx2")
    assert "0 match" in decision.message


def test_widest_fit_respects_the_users_constraints() -> None:
    body = pod(
        {names.VARIANTS_ANNOTATION: "avx2,armv9"},
        spec={"nodeSelector": {names.ARCH_LABEL: "arm64"}},
    )
    decision = run(body, one_arch("amd64"))
    assert decision.variant == "armv9"


def test_nothing_possible_is_denied_with_the_conflict() -> None:
    body = pod(
        {names.VARIANTS_ANNOTATION: "avx2,avx512"},
        spec={"nodeSelector": {names.ARCH_LABEL: "arm64"}},
    )
    decision = run(body)
    assert (decision.allowed, decision.reason) == (False, "conflict")
    assert "avx2, avx512" in decision.message and "kubernetes.io/arch=arm64" in decision.message


# --- rule 5: bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "labels", "env", "must_mention"),
    [
        (
            {names.WORKLOAD_ANNOTATION: "fp16-inference"},
            {},
            ENV,
            [
                "isa.flox.dev/workload",
                "'fp16-inference'",
                "fp32-inference, int8-inference, bf16-training",
            ],
        ),
        (
            {names.VARIANTS_ANNOTATION: "avx2,avx1024"},
            {},
            ENV,
            [
                "isa.flox.dev/variants",
                "'avx1024'",
                "avx2, avx512, avx512bf16, avx512vnni, armv8.2, armv9",
            ],
        ),
        ({names.VARIANTS_ANNOTATION: " , "}, {}, ENV, ["isa.flox.dev/variants is empty", "armv9"]),
        ({}, {}, "", ["flox.dev/environment is empty", "owner/name", "yourorg/ticket-processor"]),
        ({}, {}, "ticket-processor", ["'ticket-processor' is malformed", "owner/name"]),
        ({}, {}, "a/b/c", ["'a/b/c' is malformed"]),
        (
            {},
            {names.VARIANT_LABEL: "sse4"},
            ENV,
            ["isa.flox.dev/variant", "'sse4'", "allowed: avx2, avx512"],
        ),
    ],
)
def test_bad_input_is_denied_listing_what_is_allowed(
    annotations: dict[str, str], labels: dict[str, str], env: str, must_mention: list[str]
) -> None:
    decision = run(pod(annotations, labels, env=env))
    assert (decision.allowed, decision.outcome, decision.reason) == (
        False,
        "denied",
        "invalid-input",
    )
    for text in must_mention:
        assert text in decision.message


# --- rule 6: idempotency -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pod(),
        pod(
            {names.WORKLOAD_ANNOTATION: "int8-inference"},
            spec={"nodeSelector": {"kubernetes.io/os": "linux"}},
        ),
        pod({names.VARIANTS_ANNOTATION: "armv8.2,armv9"}),
        pod(spec={"nodeSelector": {"pool": "missing"}}),
        pod(env=f"{ENV}-avx512"),
        pod(env=None, labels={names.VARIANT_LABEL: "armv9"}),
    ],
)
def test_the_webhook_applied_to_its_own_output_returns_no_patch(body: dict[str, Any]) -> None:
    first = run(body)
    assert first.allowed and first.patch
    again = run(patched(first, body))
    assert (again.allowed, again.patch) == (True, ())
    assert again.variant == first.variant


def test_nothing_the_user_wrote_is_removed_or_changed() -> None:
    body = pod(
        {"team": "support", names.WORKLOAD_ANNOTATION: "int8-inference"},
        {"app": "worker"},
        {"nodeSelector": {"kubernetes.io/os": "linux"}},
    )
    out = patched(run(body), body)
    for section in ("labels", "annotations"):
        for key, value in body["metadata"][section].items():
            if key != names.ENVIRONMENT_ANNOTATION:
                assert out["metadata"][section][key] == value
    assert out["spec"]["nodeSelector"]["kubernetes.io/os"] == "linux"
    assert out["spec"]["containers"] == body["spec"]["containers"]


def test_keys_with_slashes_and_tildes_are_escaped_in_patch_paths() -> None:
    body = pod(annotations={"a~b": "1"})
    paths = [op["path"] for op in run(body).patch]
    assert "/metadata/annotations/flox.dev~1environment" in paths


# --- the decision key: what the webhook remembers answers by -----------------------------------

# Few values per key, so that draws often share a key; `other` stands for an app's own keys.
_FLOX_LABELS = {
    names.INJECT_LABEL: st.sampled_from(["true", "true", "false"]),
    names.VARIANT_LABEL: st.sampled_from(["avx512", "armv9", "nope"]),
}
_FLOX_ANNOTATIONS = {
    names.ENVIRONMENT_ANNOTATION: st.sampled_from(
        [ENV, ENV, f"{ENV}-avx2", f"{ENV}:3", f"{ENV}-avx2:4", "bad env", ""]
    ),
    names.WORKLOAD_ANNOTATION: st.sampled_from(["int8-inference", "fp32-training", "nope"]),
    names.VARIANTS_ANNOTATION: st.sampled_from(["armv8.2,armv9", "avx2", ""]),
    names.GENERATIONS_ANNOTATION: st.sampled_from(["avx2=4,armv9=2", "avx2=5", "nope"]),
    names.BASE_ENVIRONMENT_ANNOTATION: st.sampled_from([ENV]),
    names.REASON_ANNOTATION: st.sampled_from(["set by hand"]),
    names.THREADS_ANNOTATION: st.sampled_from(["off", "3", "0"]),
}
_OTHER = st.dictionaries(st.sampled_from(["app", "team", "a/b~c"]), st.sampled_from(["x", "y"]))


def _some_of(entries: Mapping[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional=dict(entries))


_POD_INPUTS = st.tuples(
    _some_of(_FLOX_LABELS),
    _some_of(_FLOX_ANNOTATIONS),
    _OTHER,
    _OTHER,
    st.sampled_from([{}, {"kubernetes.io/os": "linux"}, {names.ARCH_LABEL: "arm64"}]),
)


def _drawn_pod(inputs: tuple[Any, ...]) -> Pod:
    flox_labels, flox_annotations, other_labels, other_annotations, selector = inputs
    labels, annotations = {**other_labels, **flox_labels}, {**other_annotations, **flox_annotations}
    spec = {"nodeSelector": selector} if selector else {}
    return pod_from(pod(annotations, labels, spec, inject=False, env=None))


_KEY_CONTEXT = context()


def _one_change(inputs: tuple[Any, ...], data: st.DataObject) -> tuple[Any, ...]:
    """`inputs` with one thing changed: a flox-isa entry, an app's own entries, the selector."""
    changed = list(inputs)
    which = data.draw(st.sampled_from([0, 1, 1, 1, 2, 3, 4]))  # mostly what decide reads
    if which in (0, 1):
        choices = _FLOX_LABELS if which == 0 else _FLOX_ANNOTATIONS
        key = data.draw(st.sampled_from(sorted(choices)))
        value = data.draw(st.none() | choices[key])  # None: the entry is removed
        entries = {k: v for k, v in changed[which].items() if k != key}
        changed[which] = entries if value is None else {**entries, key: value}
    else:
        changed[which] = data.draw(_POD_INPUTS)[which]
    return tuple(changed)


@settings(max_examples=1000, deadline=None)
@given(_POD_INPUTS, st.data(), st.booleans())
def test_pods_with_equal_decision_keys_get_equal_decisions(
    inputs: tuple[Any, ...], data: st.DataObject, namespace_opted_in: bool
) -> None:
    # The webhook answers a pod from memory when its key was seen: a key that missed
    # an input `decide` reads would hand one pod another pod's patch.
    a, b = _drawn_pod(inputs), _drawn_pod(_one_change(inputs, data))
    if decision_key(a, "tickets", namespace_opted_in) == decision_key(
        b, "tickets", namespace_opted_in
    ):
        assert decide(a, "tickets", namespace_opted_in, _KEY_CONTEXT) == decide(
            b, "tickets", namespace_opted_in, _KEY_CONTEXT
        )


# References of every shape: plain, a variant's build, generation pins, malformed.
_ENVIRONMENTS = st.sampled_from(
    [ENV, "acme/other", f"{ENV}-avx2", "acme/x-avx2", "acme/x-armv9", f"{ENV}:3", "acme/y:3",
     "acme/y:4", "acme/z-avx2:4", "bad env", ""]
)  # fmt: skip


def _with_environment(decision: Decision, base: str) -> Decision:
    """`decision` renamed for base environment `base` (as the webhook's templates are)."""
    named = decision.environment
    if named is None or named.base == base:
        return decision
    renamed = EnvironmentNames.of(base, named.variant, named.generations)
    patch = renamed_patch(decision, renamed.annotations)
    return dataclasses.replace(decision, patch=patch, environment=renamed)


@settings(max_examples=1000, deadline=None)
@given(_POD_INPUTS, _ENVIRONMENTS, _ENVIRONMENTS, st.booleans())
def test_a_decision_renamed_for_another_environment_of_its_template_is_that_pods_decision(
    inputs: tuple[Any, ...], first: str, second: str, namespace_opted_in: bool
) -> None:
    # The webhook answers a pod new only in its environment's name by renaming the
    # decision made for another (`template_key`): it must be what `decide` says.
    flox_labels, flox_annotations, *rest = inputs
    a, b = (
        _drawn_pod((flox_labels, {**flox_annotations, names.ENVIRONMENT_ANNOTATION: env}, *rest))
        for env in (first, second)
    )
    keys = [decision_key(p, "tickets", namespace_opted_in) for p in (a, b)]
    template = template_key(keys[0], CATALOG)
    if template is None or template != template_key(keys[1], CATALOG):
        return
    made = decide(a, "tickets", namespace_opted_in, _KEY_CONTEXT)
    if made.allowed:
        assert _with_environment(made, second) == decide(
            b, "tickets", namespace_opted_in, _KEY_CONTEXT
        )


def test_environments_of_one_template_share_it_and_others_do_not() -> None:
    def key_of(environment: str, **annotations: str) -> Any:
        drawn = _drawn_pod(({}, {names.ENVIRONMENT_ANNOTATION: environment, **annotations},
                            {}, {}, {}))  # fmt: skip
        return template_key(decision_key(drawn, "tickets", True), CATALOG)

    assert key_of(ENV) == key_of("acme/other") is not None
    assert key_of("acme/x-avx2") == key_of("b/y-avx2") != key_of(ENV)  # guard mode
    assert key_of(f"{ENV}:3") == key_of("acme/y:3") != key_of("acme/y:4")  # the pin
    assert key_of("bad env") is None  # denied, quoting it
    assert key_of(ENV, **{names.BASE_ENVIRONMENT_ANNOTATION: ENV}) is None  # compared with it


@settings(max_examples=100, deadline=None)
@given(_POD_INPUTS, _OTHER, _OTHER)
def test_an_apps_own_labels_and_annotations_do_not_change_the_decision_key(
    inputs: tuple[Any, ...], more_labels: dict[str, str], more_annotations: dict[str, str]
) -> None:
    flox_labels, flox_annotations, other_labels, other_annotations, selector = inputs
    if not (flox_labels or other_labels) or not (flox_annotations or other_annotations):
        return  # adding to an empty map changes the patch (the map is created whole)
    relabelled = (
        flox_labels,
        flox_annotations,
        {**other_labels, **more_labels},
        {**other_annotations, **more_annotations},
        selector,
    )
    assert decision_key(_drawn_pod(inputs), "tickets", False) == decision_key(
        _drawn_pod(relabelled), "tickets", False
    )


@pytest.mark.parametrize(
    ("flox_labels", "flox_annotations", "app_labels", "app_annotations"),
    [
        ({}, {names.ENVIRONMENT_ANNOTATION: ENV}, {"app": "x"}, {}),  # auto adds the label
        ({names.VARIANT_LABEL: "avx512"}, {}, {}, {"team": "x"}),  # guard adds the reason
    ],
    ids=["labels", "annotations"],
)
def test_an_empty_map_and_one_with_only_an_apps_keys_are_keyed_apart(
    flox_labels: dict[str, str],
    flox_annotations: dict[str, str],
    app_labels: dict[str, str],
    app_annotations: dict[str, str],
) -> None:
    # JSONPatch creates an absent map whole but adds to an existing one key by key.
    empty = _drawn_pod((flox_labels, flox_annotations, {}, {}, {}))
    with_app = _drawn_pod((flox_labels, flox_annotations, app_labels, app_annotations, {}))
    keys = [decision_key(p, "tickets", True) for p in (empty, with_app)]
    patches = [decide(p, "tickets", True, _KEY_CONTEXT).patch for p in (empty, with_app)]
    assert keys[0] != keys[1] and patches[0] != patches[1]

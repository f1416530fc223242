"""`flox-isa report` built from a cluster's pods and nodes (plain dicts), without a cluster."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.report import DEFAULT_BASELINES
from flox_isa.webhook.report import build_report, render_text
from tests.unit.webhook.test_explain import NODES

CATALOG = default_catalog()
FLEET: list[dict[str, Any]] = yaml.safe_load(open(NODES).read())["items"]  # noqa: SIM115


def pod(
    name: str,
    namespace: str = "apps",
    *,
    labels: dict[str, str] | None = None,
    node: str | None = None,
    workload: str | None = "int8-inference",
    environment: str | None = "acme/embedder",
    **spec: Any,
) -> dict[str, Any]:
    annotations = {}
    if environment:
        annotations[names.ENVIRONMENT_ANNOTATION] = environment
    if workload:
        annotations[names.WORKLOAD_ANNOTATION] = workload
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                     "annotations": annotations},
        "spec": {"containers": [{"name": "w", "image": "x"}], **spec},
        "status": {"phase": "Running" if node else "Pending"},
    }  # fmt: skip
    if node:
        body["spec"]["nodeName"] = node
    return body


OPTED = {names.INJECT_LABEL: "true"}


def test_placed_pods_are_counted_per_instance_type_workload_and_variant() -> None:
    pods = [
        pod("a", labels={**OPTED, names.VARIANT_LABEL: "avx512vnni"}, node="m6i-xlarge-0"),
        pod("b", labels={**OPTED, names.VARIANT_LABEL: "avx512vnni"}, node="m6i-xlarge-1"),
        pod("c", labels={**OPTED, names.VARIANT_LABEL: "armv9"}, node="c8g-xlarge-0"),
        # Done or terminating pods do not count.
        {**pod("d", labels={names.VARIANT_LABEL: "avx2"}, node="m4-xlarge-0"),
         "status": {"phase": "Succeeded"}},
    ]  # fmt: skip
    report = build_report(pods, FLEET, CATALOG, DEFAULT_BASELINES)
    rows = [(r.instance_type, r.workload, r.variant, r.pods, r.throughput, r.baseline,
             r.baseline_throughput) for r in report.rows]  # fmt: skip
    assert rows == [
        ("c8g.xlarge", "int8-inference", "armv9", 1, 41, "armv8.2", 28),
        ("m6i.xlarge", "int8-inference", "avx512vnni", 2, 170, "avx2", 70),
    ]
    text = render_text(report)
    assert text[0].split() == ["INSTANCE-TYPE", "WORKLOAD", "VARIANT", "PODS", "TICKETS/S",
                               "BASELINE", "BASELINE-TICKETS/S", "RATIO"]  # fmt: skip
    assert text[3] == (
        "Expected throughput 211 tickets/s vs 98 with the baseline build of each architecture"
        " (avx2 on amd64, armv8.2 on arm64): 2.15x"
        " (estimates: the guide's single-core score x each pod's CPUs)"
    )
    assert (report.pending, report.skipped, report.hints) == ([], [], [])


def test_a_node_without_instance_type_is_named_by_its_nfd_cpu_model() -> None:
    node = copy.deepcopy(FLEET[0])
    labels = node["metadata"]["labels"]
    del labels[names.INSTANCE_TYPE_LABEL]
    labels.update({"feature.node.kubernetes.io/cpu-model.vendor_id": "Intel",
                   "feature.node.kubernetes.io/cpu-model.family": "6",
                   "feature.node.kubernetes.io/cpu-model.id": "79"})  # fmt: skip
    placed = pod("a", labels={**OPTED, names.VARIANT_LABEL: "avx2"}, node=node["metadata"]["name"])
    report = build_report([placed], [node], CATALOG, DEFAULT_BASELINES)
    assert report.rows[0].instance_type == "cpu-model:Intel/6/79"


def test_pending_pods_say_why_grouped_by_owner() -> None:
    owner = {"ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": True}]}
    gated = pod("g1", labels=OPTED, schedulingGates=[{"name": names.PLACEMENT_GATE}])
    gated["metadata"].update(owner)
    gated_too = copy.deepcopy(gated)
    gated_too["metadata"]["name"] = "g2"
    stuck = pod("s", labels={**OPTED, names.VARIANT_LABEL: "armv9"})
    message = "0/14 nodes are available:\n 2 Insufficient cpu."
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                      "reason": "Unschedulable", "message": message}]  # fmt: skip
    report = build_report([gated, gated_too, stuck], FLEET, CATALOG, DEFAULT_BASELINES)
    assert [(p.name, p.pods, p.variant, p.why) for p in report.pending] == [
        ("Pod/s", 1, "armv9", "Unschedulable: 0/14 nodes are available: 2 Insufficient cpu."),
        ("ReplicaSet/web-1", 2, None, "gated: waiting for flox-isa's placement controller"),
    ]
    assert "Pending: 3 pods" in render_text(report)


def test_opted_in_pods_left_unpatched_say_why() -> None:
    in_namespace = pod("n", "opted", node="m4-xlarge-0")
    daemon = pod("d", "opted", node="m4-xlarge-0")
    daemon["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "x", "controller": True}]
    no_environment = pod("e", labels=OPTED, node="m4-xlarge-0", environment=None)
    opted_out = pod("o", "opted", labels={names.INJECT_LABEL: "false"}, node="m4-xlarge-0")
    report = build_report(
        [in_namespace, daemon, no_environment, opted_out], FLEET, CATALOG, DEFAULT_BASELINES,
        opted_in_namespaces={"opted"},
    )  # fmt: skip
    whys = {p.name: p.why for p in report.skipped}
    assert set(whys) == {"Pod/n", "DaemonSet/x", "Pod/e"}  # the opted-out pod is not opted in
    assert whys["Pod/n"].endswith("today it would get avx512vnni")
    assert whys["DaemonSet/x"].startswith("daemonset: ")
    assert whys["Pod/e"].startswith("no-environment: ")
    # Without the namespaces list, only pods labelled so are opted in.
    report = build_report([in_namespace, no_environment], FLEET, CATALOG, DEFAULT_BASELINES)
    assert [p.name for p in report.skipped] == ["Pod/e"]


def test_flox_pods_not_opted_in_get_a_hint_with_their_gain() -> None:
    by_runtime = pod("r", node="m4-xlarge-0", environment="acme/embedder", runtimeClassName="flox")
    # Opting in keeps a pinned build (the webhook guards it): no gain, no hint.
    pinned = pod("p", node="m4-xlarge-0", environment="acme/embedder-avx512")
    fp32 = pod("f", node="c6g-xlarge-0", workload="fp32-inference")
    plain = pod("x", node="m4-xlarge-0", environment=None)  # not a Flox pod
    system = pod("k", "kube-system", node="m4-xlarge-0")
    report = build_report([by_runtime, pinned, fp32, plain, system], FLEET, CATALOG,
                          DEFAULT_BASELINES)  # fmt: skip
    hints = [(h.owner, h.workload, h.runs, h.would_get, round(h.gain, 3)) for h in report.hints]
    assert hints == [
        ("Pod/f", "fp32-inference", "avx2", "avx512", round(52 / 35, 3)),
        ("Pod/r", "int8-inference", "avx2", "avx512vnni", round(85 / 35, 3)),
    ]
    assert any(line.startswith("Hint: 1 Flox pod of Pod/r in apps not opted in: int8-inference"
                               " on avx512vnni instead of avx2 would be 2.43x")
               for line in render_text(report))  # fmt: skip


def test_json_totals() -> None:
    placed = pod("a", labels={**OPTED, names.VARIANT_LABEL: "armv9"}, node="c8g-xlarge-0")
    data = build_report([placed], FLEET, CATALOG, DEFAULT_BASELINES, notes=["n"]).to_json()
    assert data["total"] == {"ticketsPerSecond": 41, "baselineTicketsPerSecond": 28,
                             "ratio": pytest.approx(41 / 28, abs=0.001)}  # fmt: skip
    assert data["notes"] == ["n"]

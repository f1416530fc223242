"""TicketWorker + plan -> Deployments, and desired vs. live -> writes (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.planning import Plan, Share, outranking
from flox_isa.operator.diff import Create, Delete, Update, describe, diff, drift
from flox_isa.operator.models import TicketWorkerSpec
from flox_isa.operator.render import Owner, render

CATALOG = default_catalog()
OWNER = Owner("team-a", "tickets", "uid-1")


def variant(name: str) -> Any:
    found = CATALOG.get(name)
    assert found is not None
    return found


def plan_of(**replicas: int) -> Plan:
    """A plan for SPEC's workload, as `plan_replicas` makes it (outranking variants too)."""
    chosen = [variant(v.replace("_", ".")) for v in replicas]
    return Plan(
        tuple(
            Share(v, 2, 8.0, r, outranking(CATALOG, v, SPEC.workload, None))
            for v, r in zip(chosen, replicas.values(), strict=True)
        )
    )


SPEC = TicketWorkerSpec.model_validate(
    {
        "environment": "acme/ticket-processor",
        "template": {
            "metadata": {"labels": {"team": "a"}, "annotations": {"owner": "ops"}},
            "spec": {
                "nodeSelector": {"pool": "workers"},
                "containers": [
                    {
                        "name": "worker",
                        "command": ["flox", "activate", "--", "serve"],
                        "resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}},
                    }
                ],
            },
        },
    }
)


def test_one_deployment_per_planned_variant_named_after_it() -> None:
    rendered = render(OWNER, SPEC, plan_of(avx2=1, armv9=2))
    assert list(rendered) == ["tickets-avx2", "tickets-armv9"]
    assert rendered["tickets-armv9"]["spec"]["replicas"] == 2
    assert rendered["tickets-armv9"]["metadata"]["namespace"] == "team-a"


def test_deployments_are_owned_and_labelled() -> None:
    deployment = render(OWNER, SPEC, plan_of(avx512vnni=3))["tickets-avx512vnni"]
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "flox-isa",
        "isa.flox.dev/ticketworker": "tickets",
        "isa.flox.dev/variant": "avx512vnni",
    }
    (ref,) = deployment["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "isa.flox.dev/v1alpha1",
        "kind": "TicketWorker",
        "name": "tickets",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert deployment["spec"]["selector"] == {
        "matchLabels": {
            "isa.flox.dev/ticketworker": "tickets",
            "isa.flox.dev/variant": "avx512vnni",
        }
    }


def test_pods_carry_what_the_webhook_guard_accepts_unchanged() -> None:
    pod = render(OWNER, SPEC, plan_of(avx512vnni=3))["tickets-avx512vnni"]["spec"]["template"]
    assert pod["metadata"]["labels"]["isa.flox.dev/variant"] == "avx512vnni"
    assert pod["metadata"]["annotations"]["flox.dev/environment"] == (
        "acme/ticket-processor-avx512vnni"
    )
    assert pod["metadata"]["annotations"]["isa.flox.dev/base-environment"] == (
        "acme/ticket-processor"
    )
    selector = pod["spec"]["nodeSelector"]
    assert selector["kubernetes.io/arch"] == "amd64"
    for flag in variant("avx512vnni").flags:
        assert selector[names.cpuid_label(flag)] == "true"
    assert selector["pool"] == "workers"  # the user's own selector is kept


def test_the_users_template_passes_through_with_flox_defaults() -> None:
    pod = render(OWNER, SPEC, plan_of(avx2=1))["tickets-avx2"]["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["annotations"]["owner"] == "ops"
    assert pod["spec"]["runtimeClassName"] == "flox"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "flox/empty:1.0.0"
    assert container["command"] == ["flox", "activate", "--", "serve"]
    assert container["resources"] == {"requests": {"cpu": "1000m", "memory": "1Gi"}}


PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def node_affinity(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["spec"].get("affinity", {}).get("nodeAffinity", {}))


def test_pods_prefer_the_nodes_whose_best_variant_is_theirs() -> None:
    rendered = render(OWNER, SPEC, plan_of(avx2=1, avx512=1, armv8_2=1, armv9=1))
    pods = {name: d["spec"]["template"] for name, d in rendered.items()}
    # fp32: avx512 outranks avx2, armv9 outranks armv8.2; the best of each arch needs nothing.
    assert "affinity" not in pods["tickets-avx512"]["spec"]
    assert "affinity" not in pods["tickets-armv9"]["spec"]
    for name, notin in (("tickets-avx2", "AVX512"), ("tickets-armv8.2", "")):
        terms = node_affinity(pods[name])[PREFERRED]
        assert terms, name
        assert {t["weight"] for t in terms} == {100}
        assert "requiredDuringSchedulingIgnoredDuringExecution" not in node_affinity(pods[name])
        for term in terms:
            (missing,) = [
                e for e in term["preference"]["matchExpressions"] if e["operator"] == "NotIn"
            ]
            assert missing["key"].removeprefix(names.NFD_CPUID_PREFIX).startswith(notin)
    arm_missing = {
        t["preference"]["matchExpressions"][-1]["key"].removeprefix(names.NFD_CPUID_PREFIX)
        for t in node_affinity(pods["tickets-armv8.2"])[PREFERRED]
    }
    assert arm_missing == {"SVE", "SVE2", "BF16", "I8MM"}


def test_the_preference_merges_with_the_users_affinity_keeping_all_of_it() -> None:
    users_term = {"weight": 7, "preference": {"matchExpressions": [
        {"key": "pool", "operator": "In", "values": ["spot"]}]}}  # fmt: skip
    required = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}  # fmt: skip
    anti_term = {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {"a": "b"}},
    }
    anti = {PREFERRED: [{"weight": 1, "podAffinityTerm": anti_term}]}
    users_affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": required,
            PREFERRED: [users_term],
        },
        "podAntiAffinity": anti,
    }
    raw = SPEC.model_dump(by_alias=True, exclude_none=True)
    raw["template"]["spec"]["affinity"] = copy.deepcopy(users_affinity)
    spec = TicketWorkerSpec.model_validate(raw)
    rendered = render(OWNER, spec, plan_of(avx2=1, avx512=1))
    avx2 = rendered["tickets-avx2"]["spec"]["template"]["spec"]["affinity"]
    ours = render(OWNER, SPEC, plan_of(avx2=1))["tickets-avx2"]["spec"]["template"]["spec"]
    assert avx2 == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": required,
            PREFERRED: [users_term, *ours["affinity"]["nodeAffinity"][PREFERRED]],
        },
        "podAntiAffinity": anti,
    }
    # Nothing outranks avx512 (fp32): the user's affinity goes through untouched.
    assert rendered["tickets-avx512"]["spec"]["template"]["spec"]["affinity"] == users_affinity
    # And the template itself is not mutated by rendering.
    assert spec.template.spec.affinity == users_affinity


def as_served(deployment: dict[str, Any], uid: str = "d-uid") -> dict[str, Any]:
    """What the API server returns: defaults added, quantities canonical, status set."""
    live = copy.deepcopy(deployment)
    live["metadata"].update(uid=uid, generation=1, resourceVersion="7", managedFields=[{}])
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    spec = live["spec"]
    spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600)
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}
    pod = spec["template"]
    pod["metadata"]["creationTimestamp"] = None
    pod["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst", securityContext={})
    for container in pod["spec"]["containers"]:
        container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/x")
        requests = container.get("resources", {}).get("requests", {})
        if requests.get("cpu") == "1000m":
            requests["cpu"] = "1"
    live["status"] = {"replicas": spec["replicas"], "readyReplicas": spec["replicas"]}
    return live


def test_an_unchanged_world_needs_no_write() -> None:
    desired = render(OWNER, SPEC, plan_of(avx2=1, avx512=2, armv9=3))
    actual = {name: as_served(d) for name, d in desired.items()}
    assert diff(OWNER, desired, actual) == ()


def test_someone_elses_additions_are_not_drift() -> None:
    desired = render(OWNER, SPEC, plan_of(avx2=1))
    live = as_served(desired["tickets-avx2"])
    pod = live["spec"]["template"]
    pod["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = "now"
    pod["spec"]["containers"].append({"name": "sidecar", "image": "istio"})
    assert diff(OWNER, desired, {"tickets-avx2": live}) == ()


def test_a_scaled_deployment_is_scaled_back() -> None:
    desired = render(OWNER, SPEC, plan_of(avx2=3))
    live = as_served(desired["tickets-avx2"])
    live["spec"]["replicas"] = 7
    (action,) = diff(OWNER, desired, {"tickets-avx2": live})
    assert isinstance(action, Update)
    assert action.is_scale
    assert (action.replicas_before, action.replicas) == (7, 3)
    assert describe(action, "") == ("Scaled", "scaled Deployment tickets-avx2 from 7 to 3")


def test_an_edited_node_selector_is_restored() -> None:
    desired = render(OWNER, SPEC, plan_of(avx512=1))
    live = as_served(desired["tickets-avx512"])
    del live["spec"]["template"]["spec"]["nodeSelector"][names.cpuid_label("AVX512F")]
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/image"
    (action,) = diff(OWNER, desired, {"tickets-avx512": live})
    assert isinstance(action, Update)
    assert set(action.changed) == {
        "spec.template.spec.nodeSelector.feature.node.kubernetes.io/cpu-cpuid.AVX512F",
        "spec.template.spec.containers[worker].image",
    }
    assert describe(action, "")[0] == "Updated"


def test_a_deleted_deployment_is_created_again() -> None:
    desired = render(OWNER, SPEC, plan_of(avx2=1, armv9=1))
    actual = {"tickets-avx2": as_served(desired["tickets-avx2"])}
    (action,) = diff(OWNER, desired, actual)
    assert isinstance(action, Create)
    assert (action.name, action.variant, action.replicas) == ("tickets-armv9", "armv9", 1)


def test_a_variant_out_of_the_plan_is_deleted_only_if_we_own_it() -> None:
    old = render(OWNER, SPEC, plan_of(avx2=1, avx512vnni=2))
    mine = as_served(old["tickets-avx512vnni"], uid="mine")
    stranger = copy.deepcopy(mine)
    stranger["metadata"]["ownerReferences"][0]["uid"] = "older-ticketworker"
    desired = render(OWNER, SPEC, plan_of(avx2=3))
    actual = {"tickets-avx2": as_served(desired["tickets-avx2"]), "tickets-avx512vnni": mine}
    assert diff(OWNER, desired, actual) == (Delete("tickets-avx512vnni", "avx512vnni", "mine"),)
    actual["tickets-avx512vnni"] = stranger
    assert diff(OWNER, desired, actual) == ()


def test_a_terminating_deployment_is_left_to_finish() -> None:
    desired = render(OWNER, SPEC, plan_of(avx2=1))
    live = as_served(desired["tickets-avx2"])
    live["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    live["spec"]["replicas"] = 0
    assert diff(OWNER, desired, {"tickets-avx2": live}) == ()


@pytest.mark.parametrize(
    ("desired", "actual", "paths"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, []),
        ({"a": {}}, {}, []),
        ({"a": False}, {}, []),
        ({"a": 0}, {"a": 3}, ["a"]),
        ({"a": [1, 2]}, {"a": [1]}, ["a"]),
        ({"resources": {"cpu": "1024Mi"}}, {"resources": {"cpu": "1Gi"}}, []),
        ({"env": {"value": "1000m"}}, {"env": {"value": "1"}}, ["env.value"]),
    ],
)  # fmt: skip
def test_drift_is_semantic(desired: Any, actual: Any, paths: list[str]) -> None:
    assert drift(desired, actual) == paths

"""The MutatingWebhookConfiguration builder used outside Helm (demo, e2e tests, benchmark).

What users rely on: each opted-in pod is sent to the webhook exactly once, on the path
that tells the webhook why (the pod's label, or its namespace's label checked by the
API server); system namespaces and the webhook's own are never sent. That it renders
the chart's entries exactly is checked in test_chart.py (needs helm).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any
from urllib.parse import urlsplit

import pytest

from flox_isa.isa import names
from flox_isa.webhook.app import MUTATE_PATHS
from flox_isa.webhook.registration import (
    NAMESPACE_OPT_IN_PATH,
    NAMESPACE_OPT_IN_WEBHOOK,
    POD_OPT_IN_PATH,
    POD_OPT_IN_WEBHOOK,
    webhook_configuration,
)
from tests.unit.label_selectors import called_webhooks

BASE = "https://127.0.0.1:8443"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
OWN = "flox-isa-system"
INJECT = names.INJECT_LABEL


def build(**options: Any) -> dict[str, Any]:
    return webhook_configuration("flox-isa", BASE, CA, own_namespace=OWN, **options)


def namespace(name: str, inject: str | None = None, **labels: str) -> dict[str, str]:
    found = {"kubernetes.io/metadata.name": name, **labels}
    return found | ({INJECT: inject} if inject is not None else {})


def by_name(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {hook["name"]: hook for hook in config["webhooks"]}


def test_each_entry_calls_its_own_path_under_the_base_url() -> None:
    for base in (BASE, BASE + "/"):
        hooks = by_name(webhook_configuration("flox-isa", base, CA))
        assert hooks[POD_OPT_IN_WEBHOOK]["clientConfig"]["url"] == BASE + "/mutate"
        assert hooks[NAMESPACE_OPT_IN_WEBHOOK]["clientConfig"]["url"] == (
            BASE + "/mutate/namespace-opt-in"
        )
        for hook in hooks.values():
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == CA


def test_the_paths_are_the_ones_the_webhook_serves_with_the_right_meaning() -> None:
    hooks = by_name(build())
    served = {name: urlsplit(hook["clientConfig"]["url"]).path for name, hook in hooks.items()}
    assert served == {
        POD_OPT_IN_WEBHOOK: POD_OPT_IN_PATH,
        NAMESPACE_OPT_IN_WEBHOOK: NAMESPACE_OPT_IN_PATH,
    }
    # The app takes the namespace-opt-in path as "namespace opted in", the other not.
    assert MUTATE_PATHS == {POD_OPT_IN_PATH: False, NAMESPACE_OPT_IN_PATH: True}


def test_a_base_url_that_already_names_the_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="root URL"):
        webhook_configuration("flox-isa", BASE + "/mutate", CA)


@pytest.mark.parametrize(
    ("ns", "pod", "called"),
    [
        (namespace("shop"), {}, None),
        (namespace("shop"), {INJECT: "true"}, POD_OPT_IN_WEBHOOK),
        (namespace("shop", "true"), {}, NAMESPACE_OPT_IN_WEBHOOK),
        (namespace("shop", "true"), {INJECT: "true"}, POD_OPT_IN_WEBHOOK),
        (namespace("shop", "true"), {INJECT: "false"}, None),  # the pod opts out
        (namespace("shop", "yes"), {}, None),  # only "true" opts in
        (namespace("kube-system", "true"), {INJECT: "true"}, None),
        (namespace("kube-public", "true"), {INJECT: "true"}, None),
        (namespace("kube-node-lease", "true"), {}, None),
        (namespace(OWN, "true"), {INJECT: "true"}, None),
        (namespace("batch", "true"), {INJECT: "true"}, None),  # excluded_namespaces
    ],
)
def test_which_pods_are_sent_and_on_which_path(
    ns: dict[str, str], pod: dict[str, str], called: str | None
) -> None:
    config = build(excluded_namespaces=["batch"])
    assert called_webhooks(config, ns, pod) == ([called] if called else [])


def test_the_namespace_path_is_only_ever_called_for_opted_in_namespaces() -> None:
    """The premise the webhook trusts instead of reading Namespaces, over every combination."""
    config = build()
    values = (None, "true", "false", "True", "")
    for ns_value, pod_value in itertools.product(values, values):
        pod = {INJECT: pod_value} if pod_value is not None else {}
        called = called_webhooks(config, namespace("shop", ns_value), pod)
        assert len(called) <= 1, (ns_value, pod_value)
        if NAMESPACE_OPT_IN_WEBHOOK in called:  # and the pod neither opts in nor out itself
            assert ns_value == "true" and pod_value not in ("true", "false")
        if POD_OPT_IN_WEBHOOK in called:
            assert pod_value == "true"
        opted_in = pod_value == "true" or (ns_value == "true" and pod_value != "false")
        assert bool(called) == opted_in, (ns_value, pod_value)


def test_kube_prefixed_namespaces_and_daemonset_pods_are_skipped_by_match_conditions() -> None:
    for hook in build()["webhooks"]:
        conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
        assert conditions["not-a-kube-namespace"] == "!request.namespace.startsWith('kube-')"
        assert "r.kind == 'DaemonSet'" in conditions["not-a-daemonset-pod"]


def test_namespace_labels_confine_both_entries() -> None:
    config = build(namespace_labels={"e2e.flox.dev/run": "abc"})
    inside = namespace("shop", "true", **{"e2e.flox.dev/run": "abc"})
    assert called_webhooks(config, namespace("shop", "true"), {}) == []
    assert called_webhooks(config, namespace("shop"), {INJECT: "true"}) == []
    assert called_webhooks(config, inside, {}) == [NAMESPACE_OPT_IN_WEBHOOK]
    assert called_webhooks(config, inside, {INJECT: "true"}) == [POD_OPT_IN_WEBHOOK]


def test_admission_good_practices_and_options() -> None:
    config = build(failure_policy="Ignore", timeout_seconds=3)
    assert config["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert config["kind"] == "MutatingWebhookConfiguration"
    assert config["metadata"] == {"name": "flox-isa"}
    for hook in config["webhooks"]:
        assert hook["sideEffects"] == "None"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 3)
        assert hook["rules"] == [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
             "resources": ["pods"], "scope": "Namespaced"}
        ]  # fmt: skip
    defaults = webhook_configuration("flox-isa", BASE, CA)["webhooks"]
    assert {(h["failurePolicy"], h["timeoutSeconds"]) for h in defaults} == {("Fail", 5)}

"""How kube-apiserver calls this webhook: its two endpoints and the MutatingWebhookConfiguration.

Opt-in is "pod label OR namespace label". Selectors within one webhook entry are
ANDed, so the OR takes two entries, each calling its own path:

- `pod-opt-in.isa.flox.dev` -> POST /mutate: pods labelled `isa.flox.dev/inject:
  "true"`. The webhook checks the pod's label itself.
- `namespace-opt-in.isa.flox.dev` -> POST /mutate/namespace-opt-in: pods in
  namespaces labelled so, unless the pod carries the label itself ("true": the
  first entry has it; "false": the pod opts out). The API server checked the
  namespace's label (namespaceSelector) before calling, so the webhook trusts the
  path and needs no read access to namespaces: its RBAC is nodes only.

Both skip kube-system, kube-public, kube-node-lease and the webhook's own namespace
by name (namespaceSelector), every other kube-* namespace and DaemonSet pods by
matchConditions (CEL; selectors cannot match a prefix or owner references).

`webhook_configuration` is the one builder for every place that registers the
webhook outside Helm (the demo, e2e tests, the benchmark); the chart's template
(charts/flox-isa/templates/webhook/mutatingwebhookconfiguration.yaml) renders the
same entries, which tests/unit/chart/test_chart.py checks.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from flox_isa.isa import names

POD_OPT_IN_WEBHOOK: Final = "pod-opt-in.isa.flox.dev"
NAMESPACE_OPT_IN_WEBHOOK: Final = "namespace-opt-in.isa.flox.dev"
POD_OPT_IN_PATH: Final = "/mutate"
NAMESPACE_OPT_IN_PATH: Final = "/mutate/namespace-opt-in"
SYSTEM_NAMESPACES: Final = ("kube-system", "kube-public", "kube-node-lease")
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"  # set by the API server

MATCH_CONDITIONS: Final = (
    # Label selectors cannot match a prefix: skip every kube-* namespace here.
    {"name": "not-a-kube-namespace", "expression": "!request.namespace.startsWith('kube-')"},
    # A DaemonSet places its pods on nodes itself: a nodeSelector would strand them.
    {
        "name": "not-a-daemonset-pod",
        "expression": "!has(object.metadata.ownerReferences)"
        " || !object.metadata.ownerReferences.exists(r, r.kind == 'DaemonSet')",
    },
)


def webhook_configuration(
    name: str,
    base_url: str,
    ca_pem: bytes,
    *,
    own_namespace: str = "",
    excluded_namespaces: Sequence[str] = (),
    namespace_labels: Mapping[str, str] | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    """A MutatingWebhookConfiguration with the chart's two entries, called by URL.

    `base_url` is where the webhook serves, e.g. `https://127.0.0.1:8443`: the
    entries call `<base_url>/mutate` and `<base_url>/mutate/namespace-opt-in`.
    `own_namespace` and `excluded_namespaces` are never sent to the webhook, besides
    the kube-* namespaces. `namespace_labels`, when given, are labels every
    namespace must also carry to be in scope (e.g. to confine a test run).
    """
    root = base_url.rstrip("/")
    if urlsplit(root).path.endswith(POD_OPT_IN_PATH):
        raise ValueError(
            f"base_url {base_url!r} names an endpoint; give the server's root URL"
            f" (e.g. https://127.0.0.1:8443): the entries add {POD_OPT_IN_PATH}"
            f" and {NAMESPACE_OPT_IN_PATH}"
        )
    excluded = list(dict.fromkeys([*SYSTEM_NAMESPACES, own_namespace, *excluded_namespaces]))
    not_excluded = {
        "key": NAMESPACE_NAME_LABEL,
        "operator": "NotIn",
        "values": [n for n in excluded if n],
    }
    namespace_opted_in = {"key": names.INJECT_LABEL, "operator": "In", "values": ["true"]}
    pod_silent = {"key": names.INJECT_LABEL, "operator": "NotIn", "values": ["true", "false"]}
    entries = [
        (POD_OPT_IN_WEBHOOK, POD_OPT_IN_PATH, [not_excluded],
         {"matchLabels": {names.INJECT_LABEL: "true"}}),
        (NAMESPACE_OPT_IN_WEBHOOK, NAMESPACE_OPT_IN_PATH, [not_excluded, namespace_opted_in],
         {"matchExpressions": [pod_silent]}),
    ]  # fmt: skip
    ca_bundle = base64.b64encode(ca_pem).decode()
    webhooks = []
    for webhook_name, path, namespace_expressions, object_selector in entries:
        namespace_selector: dict[str, Any] = {"matchExpressions": namespace_expressions}
        if namespace_labels:
            namespace_selector["matchLabels"] = dict(namespace_labels)
        webhooks.append(
            {
                "name": webhook_name,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": timeout_seconds,
                "failurePolicy": failure_policy,
                # The pod may be changed by a later webhook; run again so the choice
                # still holds (the patch is idempotent).
                "reinvocationPolicy": "IfNeeded",
                "matchPolicy": "Equivalent",
                "clientConfig": {"url": root + path, "caBundle": ca_bundle},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": namespace_selector,
                "objectSelector": object_selector,
                "matchConditions": [dict(c) for c in MATCH_CONDITIONS],
            }
        )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    }

"""The MutatingWebhookConfiguration that points kube-apiserver at this webhook.

One builder for every place that registers the webhook outside Helm (the demo,
the e2e tests); the chart renders the same shape from its templates.
"""

from __future__ import annotations

import base64
from typing import Any

from flox_isa.isa import names

WEBHOOK_NAME = "pods.isa.flox.dev"


def webhook_configuration(
    name: str,
    url: str,
    ca_pem: bytes,
    *,
    namespace_selector: dict[str, Any] | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    """Pod CREATE only, `sideEffects: None`, safe to reinvoke (the webhook is idempotent).

    The default namespace selector is the opt-in label on the namespace.
    """
    selector = namespace_selector or {"matchLabels": {names.INJECT_LABEL: "true"}}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": failure_policy,
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": timeout_seconds,
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": selector,
            }
        ],
    }

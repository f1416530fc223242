"""`flox-isa selftest`: is the installed webhook called, and does it patch?

A dry-run pod CREATE (`dryRun=All`: nothing is stored, nothing runs) of an opted-in pod
goes through the API server's real admission chain, the registered webhook included;
the pod the API server sends back must carry the webhook's patch. The chart's
`helm test` hook runs this; so do the e2e tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from flox_isa.isa import names
from flox_isa.kube.rest import REQUEST_ERRORS, ApiError, Connection, Rest, load_connection

SELFTEST_ENVIRONMENT = "flox-isa/selftest"


def selftest_pod(name: str) -> dict[str, Any]:
    """An opted-in pod (label, not namespace: works in any namespace not excluded)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {names.INJECT_LABEL: "true"},
            "annotations": {names.ENVIRONMENT_ANNOTATION: SELFTEST_ENVIRONMENT},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "selftest", "image": "flox-isa-selftest:never-pulled"}],
        },
    }


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str
    variant: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    environment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "variant": self.variant,
            "nodeSelector": self.node_selector,
            "environment": self.environment,
        }


def check_patched(pod: dict[str, Any]) -> Result:
    """What the API server returned for the dry-run pod: was it patched by flox-isa? Pure."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    variant = labels.get(names.VARIANT_LABEL)
    environment = annotations.get(names.ENVIRONMENT_ANNOTATION)
    problems = []
    if not variant:
        problems.append(f"no {names.VARIANT_LABEL} label")
    if annotations.get(names.BASE_ENVIRONMENT_ANNOTATION) != SELFTEST_ENVIRONMENT:
        problems.append(f"no {names.BASE_ENVIRONMENT_ANNOTATION}: {SELFTEST_ENVIRONMENT}")
    if environment == SELFTEST_ENVIRONMENT:
        problems.append(f"{names.ENVIRONMENT_ANNOTATION} unchanged")
    if not selector:
        problems.append("no nodeSelector")
    if problems:
        return Result(
            False,
            "the pod was admitted but not patched by flox-isa (" + "; ".join(problems) + "):"
            " is the MutatingWebhookConfiguration registered, and the namespace not excluded?",
        )
    return Result(
        True,
        f"patched to variant {variant} ({annotations.get(names.REASON_ANNOTATION, '')})",
        variant,
        dict(selector),
        environment,
    )


def run_selftest(
    kubeconfig: str | None, namespace: str, name: str, context: str | None = None
) -> Result:
    """Dry-run create the selftest pod in `namespace` and check the answer."""
    return asyncio.run(_selftest(load_connection(kubeconfig, context), namespace, name))


async def _selftest(connection: Connection, namespace: str, name: str) -> Result:
    async with Rest(connection) as api:
        try:
            pod = await api.request(
                "POST", f"/api/v1/namespaces/{namespace}/pods", selftest_pod(name),
                params={"dryRun": "All"},
            )  # fmt: skip
        except ApiError as exc:
            return Result(False, f"pod CREATE (dry run) in namespace {namespace!r}: {exc.message}")
        except REQUEST_ERRORS as exc:
            return Result(False, f"cannot reach the API server: {exc}")
    return check_patched(pod)

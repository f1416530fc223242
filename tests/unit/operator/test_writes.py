"""The operator's writes as plain data: the exact requests, then their sending."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

import pytest

from flox_isa.isa import names
from flox_isa.kube.rest import ApiError, Request, Rest, api_error
from flox_isa.operator import writes
from flox_isa.operator.diff import Create, Delete, Update
from flox_isa.operator.render import Owner

OWNER = Owner("tickets", "embed", "u1")
DEPLOYMENTS = "/apis/apps/v1/namespaces/tickets/deployments"
BODY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "embed-avx2", "namespace": "tickets"},
    "spec": {"replicas": 2},
}
TERMINATING = json.dumps({
    "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
    "message": 'deployments.apps "embed-avx2" is forbidden: unable to create new content in'
               " namespace tickets because it is being terminated",
    "details": {"name": "embed-avx2", "group": "apps", "kind": "deployments", "causes": [
        {"reason": "NamespaceTerminating", "message": "namespace tickets is being terminated",
         "field": "metadata.namespace"}]},
})  # fmt: skip
RBAC = json.dumps({
    "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
    "message": 'deployments.apps "embed-avx2" is forbidden: User "x" cannot patch resource',
    "details": {"name": "embed-avx2", "group": "apps", "kind": "deployments"},
})  # fmt: skip


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# --- the requests ----------------------------------------------------------------------------


def test_apply_is_a_forced_server_side_apply_of_the_rendered_body() -> None:
    assert writes.apply_deployment("tickets", "embed-avx2", BODY) == Request(
        "PATCH",
        f"{DEPLOYMENTS}/embed-avx2",
        BODY,
        params={"fieldManager": "flox-isa-operator", "force": "true"},
        content_type="application/apply-patch+yaml",
    )


def test_delete_is_of_the_uid_seen_with_background_propagation() -> None:
    assert writes.delete_deployment("tickets", "embed-avx2", "d1") == Request(
        "DELETE",
        f"{DEPLOYMENTS}/embed-avx2",
        {"propagationPolicy": "Background", "preconditions": {"uid": "d1"}},
    )


def test_the_foreign_name_check_lists_metadata_from_the_watch_cache() -> None:
    assert writes.list_deployments("tickets") == Request(
        "GET",
        DEPLOYMENTS,
        params={"resourceVersion": "0"},
        accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )


POD = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "p1", "resourceVersion": "7"}}


def test_a_placement_replaces_the_pod_with_its_version_as_the_precondition() -> None:
    body = {**POD, "spec": {"nodeSelector": {"feature.node.kubernetes.io/cpu-cpuid.AVX2": "true"}}}
    path = "/api/v1/namespaces/shop/pods/web-1"
    assert writes.update_pod(POD, body) == Request("PUT", path, body)


def test_recovery_deletes_exactly_the_pod_it_saw() -> None:
    assert writes.delete_pod(POD) == Request(
        "DELETE",
        "/api/v1/namespaces/shop/pods/web-1",
        {"preconditions": {"uid": "p1", "resourceVersion": "7"}},
    )


def test_the_status_patch_nulls_what_the_new_status_dropped() -> None:
    previous = {"replicas": 4, "target": 600, "conditions": []}
    status = {"replicas": 6, "conditions": [{"type": "Degraded", "status": "False"}]}
    assert writes.status_patch(OWNER, status, previous) == Request(
        "PATCH",
        "/apis/isa.flox.dev/v1alpha1/namespaces/tickets/ticketworkers/embed/status",
        {"status": {"target": None, "replicas": 6,
                    "conditions": [{"type": "Degraded", "status": "False"}]}},
        content_type="application/merge-patch+json",
    )  # fmt: skip


def test_an_event_is_posted_about_the_ticketworker() -> None:
    stamp = "2030-01-01T00:00:00Z"
    request = writes.ticketworker_event(OWNER, "Normal", "Scaled", "avx2 2 → 3", "op-1",
                                        stamp=stamp)  # fmt: skip
    assert (request.method, request.path, request.params) == (
        "POST", "/api/v1/namespaces/tickets/events", None,
    )  # fmt: skip
    assert request.body == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "embed.", "namespace": "tickets"},
        "involvedObject": {"apiVersion": "isa.flox.dev/v1alpha1", "kind": "TicketWorker",
                           "name": "embed", "namespace": "tickets", "uid": "u1"},
        "type": "Normal",
        "reason": "Scaled",
        "message": "avx2 2 → 3",
        "source": {"component": "flox-isa-operator"},
        "reportingComponent": "isa.flox.dev/flox-isa-operator",
        "reportingInstance": "op-1",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("metadata", "refused"),
    [
        (None, False),  # no such Deployment: ours to create
        ({"name": "embed-avx2", "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
                                           names.TICKETWORKER_LABEL: "embed"}}, False),
        ({"name": "embed-avx2", "ownerReferences": [{"uid": "u1", "controller": True}]}, False),
        ({"name": "embed-avx2", "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
                                           names.TICKETWORKER_LABEL: "other"}}, True),
        ({"name": "embed-avx2", "ownerReferences": [{"uid": "u1", "controller": False}]}, True),
        ({"name": "embed-avx2", "labels": {"app": "x"}}, True),
    ],
    ids=["absent", "our-labels", "our-owner-reference", "another-ticketworker",
         "not-the-controller", "someone-elses"],
)  # fmt: skip
def test_a_deployment_is_ours_by_our_labels_or_our_controller_reference(
    metadata: dict[str, Any] | None, refused: bool
) -> None:
    why = writes.foreign(OWNER, "embed-avx2", metadata)
    assert bool(why) is refused
    if refused:
        assert why == (
            "Deployment embed-avx2 already exists and is not managed by TicketWorker embed:"
            " delete or rename it"
        )


# --- the errors ------------------------------------------------------------------------------


def test_a_create_in_a_namespace_being_deleted_is_told_from_an_rbac_refusal() -> None:
    terminating = api_error(403, "Forbidden", TERMINATING)
    assert terminating.causes == ("NamespaceTerminating",)
    assert terminating.namespace_terminating and writes.namespace_terminating(terminating)
    rbac = api_error(403, "Forbidden", RBAC)
    assert rbac.message.startswith('deployments.apps "embed-avx2" is forbidden: User')
    assert not rbac.namespace_terminating and not writes.namespace_terminating(rbac)
    assert not api_error(403, "Forbidden", "not json").namespace_terminating
    assert not writes.namespace_terminating(TimeoutError())


# --- sending them ----------------------------------------------------------------------------


class Api:
    """A stand-in for `kube.rest.Rest.send`: records each request, answers from a script."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.sent: list[Request] = []
        self.answers = answers or {}  # method -> a dict answer, or an exception to raise

    async def send(self, request: Request) -> dict[str, Any]:
        self.sent.append(request)
        answer = self.answers.get(request.method, {})
        if isinstance(answer, BaseException):
            raise answer
        return dict(answer)


def rest(api: Api) -> Rest:
    return cast(Rest, api)


def test_creates_share_one_list_and_our_writes_are_told_from_others_edits() -> None:
    api = Api({"GET": {"items": []}, "PATCH": {"metadata": {"resourceVersion": "7"}}})
    writer = writes.Writer(rest(api))
    second = {**BODY, "metadata": {"name": "embed-armv9", "namespace": "tickets"}}

    async def burst() -> None:
        await writer.deployment(OWNER, Create("embed-avx2", "avx2", BODY))
        await writer.deployment(OWNER, Create("embed-armv9", "armv9", second))

    run(burst())
    assert api.sent == [
        writes.list_deployments("tickets"),
        writes.apply_deployment("tickets", "embed-avx2", BODY),
        writes.apply_deployment("tickets", "embed-armv9", second),
    ]
    assert writer.echo("tickets", "embed-avx2", "7")
    assert not writer.echo("tickets", "embed-avx2", "8")
    # An update applies without a check; a delete forgets the version written.
    api.sent.clear()
    run(writer.deployment(OWNER, Update("embed-avx2", "avx2", BODY, ("spec.replicas",), 2)))
    assert api.sent == [writes.apply_deployment("tickets", "embed-avx2", BODY)]
    assert run(writer.deployment(OWNER, Delete("embed-avx2", "avx2", "d1"))) is None
    assert api.sent[-1] == writes.delete_deployment("tickets", "embed-avx2", "d1")
    assert not writer.echo("tickets", "embed-avx2", "7")


def test_a_foreign_deployment_is_refused_before_any_write() -> None:
    listed = {"items": [{"metadata": {"name": "embed-avx2", "labels": {"app": "x"}}}]}
    api = Api({"GET": listed})
    writer = writes.Writer(rest(api))
    with pytest.raises(writes.ForeignDeploymentError, match="not managed by TicketWorker embed"):
        run(writer.deployment(OWNER, Create("embed-avx2", "avx2", BODY)))
    assert [r.method for r in api.sent] == ["GET"]


@pytest.mark.parametrize(("status", "raised"), [(404, False), (409, False), (500, True)])
def test_a_delete_of_a_deployment_gone_or_replaced_is_fine(status: int, raised: bool) -> None:
    api = Api({"DELETE": ApiError(status, "x", "y")})
    writer = writes.Writer(rest(api))
    deleting = writer.deployment(OWNER, Delete("embed-avx2", "avx2", "d1"))
    if raised:
        with pytest.raises(ApiError):
            run(deleting)
    else:
        assert run(deleting) is None


def test_a_status_write_of_a_deleted_ticketworker_says_so() -> None:
    gone = writes.Writer(rest(Api({"PATCH": ApiError(404, "Not Found", "gone")})))
    assert run(gone.status(OWNER, {"replicas": 1}, {})) is False
    assert run(writes.Writer(rest(Api())).status(OWNER, {"replicas": 1}, {})) is True
    failing = writes.Writer(rest(Api({"PATCH": ApiError(500, "x", "y")})))
    with pytest.raises(ApiError):
        run(failing.status(OWNER, {}, {}))


def test_an_event_refused_in_a_namespace_being_deleted_is_an_info_skip(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = writes.ticketworker_event(OWNER, "Normal", "Scaled", "m", "op", stamp="t")
    caplog.set_level(logging.INFO, logger="flox_isa.operator")
    run(writes.send_event(rest(Api({"POST": api_error(403, "Forbidden", TERMINATING)})), request))
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == writes.NAMESPACE_TERMINATING_SKIP
    assert "forbidden" not in record.getMessage().lower()
    caplog.clear()
    run(writes.send_event(rest(Api({"POST": api_error(403, "Forbidden", RBAC)})), request))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "is forbidden: User" in record.getMessage()

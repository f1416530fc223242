"""The FastAPI app: POST /mutate and /mutate/namespace-opt-in, /healthz, /readyz, /metrics.

The API server calls /mutate for pods labelled `isa.flox.dev/inject: "true"` and
/mutate/namespace-opt-in for pods in namespaces so labelled: it checked the
namespace's label before calling, so the path is the namespace opt-in and the
webhook reads no Namespace (see `registration`). The hot path (`MutateEndpoint`)
reads the raw body, decodes it once into what a decision reads (`models.decode_review`,
msgspec), decides from in-memory data and writes JSON bytes. Every answer is
an AdmissionReview or, for a body that is not one, HTTP 400 with what was
wrong; an unexpected error becomes a denial, never an HTTP 500.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgspec
import xxhash
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from flox_isa import logs
from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog
from flox_isa.isa.contract import environment_annotations
from flox_isa.isa.fleet_index import FleetIndex
from flox_isa.isa.offer import OfferIndex
from flox_isa.webhook.decision import (
    Context,
    Decision,
    DecisionKey,
    decide,
    decision_key,
    renamed_patch,
    template_key,
)
from flox_isa.webhook.memo import bounded_put
from flox_isa.webhook.metrics import Metrics
from flox_isa.webhook.models import (
    ADMISSION_API_VERSION,
    AdmissionRequest,
    decode_review,
    describe_review_error,
)
from flox_isa.webhook.registration import NAMESPACE_OPT_IN_PATH, POD_OPT_IN_PATH

log = logging.getLogger("flox_isa.webhook")
JSON = "application/json"
MAX_BODY_BYTES = 8 * 1024 * 1024  # the API server's own request limit is 3 MiB
ANSWER_MEMO_SIZE = 4096
# Decisions kept to rename for new environments (`template_key`): one per kind of pod,
# so few; they hold their patch's maps, which the garbage collector walks.
TEMPLATE_MEMO_SIZE = 256
# A uid as API servers make them (a UUID): JSON needs no escaping for it.
PLAIN_UID_CHARS = "[0-9A-Za-z-]{1,128}"
# The request's uid in the first bytes of an AdmissionReview (as API servers write it).
LEADING_UID = re.compile(rb'"uid":\s*"(%s)"' % PLAIN_UID_CHARS.encode())
UID_SEARCH_BYTES = 512
# Bodies are keyed by an xxh3-128 digest seeded anew in each process (see `body_key`).
BODY_DIGEST_SEED = secrets.randbits(64)
CONTENT_TYPE_JSON = (b"content-type", JSON.encode())
# While draining: the client closes this connection and opens its next one elsewhere.
CONNECTION_CLOSE = (b"connection", b"close")
RESPONSE_HEAD = b'{"apiVersion":"%s","kind":"AdmissionReview","response":{"uid":' % (
    ADMISSION_API_VERSION.encode()
)
STATUS_REASONS = {400: "BadRequest", 500: "InternalError", 503: "ServiceUnavailable"}
# Answers' JSON (compact, UTF-8, keys in insertion order).
ENCODER = msgspec.json.Encoder()
# Path -> whether the API server has already found the pod's namespace opted in.
MUTATE_PATHS = {POD_OPT_IN_PATH: False, NAMESPACE_OPT_IN_PATH: True}


class FleetSource(Protocol):
    """The node inventory as the request path sees it."""

    def fleet(self) -> FleetIndex | None:
        """The current index; None until the first full list of nodes."""


class GateSignal(Protocol):
    """Whether the placement controller is alive (late binding on), see `kube.heartbeat`."""

    def alive(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class NoPlacement:
    """Late binding off: pods are pinned at admission."""

    def alive(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class StaticFleet:
    """A fixed inventory (tests, benchmarks)."""

    index: FleetIndex | None

    def fleet(self) -> FleetIndex | None:
        return self.index


class Subject(msgspec.Struct, frozen=True, gc=False):
    """What a decision's log line says of the request (besides its uid)."""

    namespace: str
    pod: str
    dry_run: bool
    environment: str | None


class Answer(msgspec.Struct, frozen=True, gc=False):
    """A decision as remembered: its log line's fields (encoded once: `logs.SharedFields`)
    and metric, and its encoded AdmissionReview (all but the uid); the JSONPatch is in
    those bytes only.

    `subject`: what the log line says of the request, when every request this answer is
    remembered for says the same (a body key, see `body_key`).

    Not tracked by the garbage collector (`gc=False`; it holds text, bytes, and a metric
    child that does not refer back): a fresh pod's request left ~40 tracked objects in
    the memo (the decision, its patch's maps), so collections came every ~20 requests
    and walked thousands of remembered answers each time (issue 12).
    """

    outcome: str
    allowed: bool
    code: int
    line: logs.SharedFields
    response_tail: bytes
    counter: Any
    subject: Subject | None = None

    def body(self, uid: str) -> bytes:
        return RESPONSE_HEAD + ENCODER.encode(uid) + self.response_tail


# Stands in for each environment value while a template's patch is encoded; random per
# process, so that no text a pod carries into its patch can be taken for it.
HOLE_MARK = f"\x00flox-isa-{secrets.token_hex(8)}-"
# The annotations whose values a template leaves open (`renamed_patch`), marked.
_MARKED = {
    key: HOLE_MARK + key
    for key in (names.ENVIRONMENT_ANNOTATION, names.BASE_ENVIRONMENT_ANNOTATION)
}
_MARKS = {ENCODER.encode(mark): key for key, mark in _MARKED.items()}
_HOLES = re.compile(b"(%s)" % b"|".join(map(re.escape, _MARKS)))


class SplitAnswer(NamedTuple):
    """An answer's bytes split where the environment values go, its patch's base64 text
    made once but for the part that holds them (base64 encodes 3 bytes at a time, so a
    part that starts at a multiple of 3 encodes alone): `before`, the answer up to that
    part; `pieces`, that part's JSON around the values (`holes`: the annotation whose
    value fills each gap); `after`, the rest of the answer."""

    before: bytes
    pieces: tuple[bytes, ...]
    holes: tuple[str, ...]
    after: bytes


class Template:
    """An allowed decision kept to answer the pods of its `template_key` (that differ from
    its own only in their environment's name): its answer, split where the environment
    values go, so that a new name costs a few hundred bytes of base64, not a decision, a
    patch and its encoding (issue 12: half of a fresh pod's time). Split when first
    renamed: most decisions made anew (a new CPU request each) never are.
    """

    __slots__ = ("_split", "answer", "decision")

    def __init__(self, decision: Decision, answer: Answer) -> None:
        self.decision, self.answer = decision, answer
        self._split: SplitAnswer | None = None

    def renamed(self, base: str) -> Answer:
        """The answer for a pod of this template whose base environment is `base`."""
        named = self.decision.environment
        if named is None:  # no environment value in the answer: the same for every name
            return self.answer
        split = self._split or self._split_answer()
        if not split.holes:
            return self.answer
        values = environment_annotations(base, named.variant, named.generations)
        parts: list[bytes] = []
        for piece, hole in zip(split.pieces, split.holes, strict=True):
            parts += (piece, ENCODER.encode(values[hole]))
        middle = b"".join(parts)
        # JSON whitespace after the last value, so that the rest starts at a multiple of 3.
        middle += b" " * (-len(middle) % 3)
        encoded = binascii.b2a_base64(middle, newline=False)
        return msgspec.structs.replace(
            self.answer, response_tail=split.before + encoded + split.after
        )

    def _split_answer(self) -> SplitAnswer:
        # [JSON, mark, JSON, mark, ..., JSON]: the patch around its environment values.
        parts = _HOLES.split(ENCODER.encode(renamed_patch(self.decision, _MARKED)))
        head, tail = patch_frame(self.decision)
        first, last = parts[0], parts[-1]
        aligned = len(first) - len(first) % 3
        split = SplitAnswer(
            head + binascii.b2a_base64(first[:aligned], newline=False),
            (first[aligned:], *parts[2:-1:2]),
            tuple(_MARKS[mark] for mark in parts[1::2]),
            binascii.b2a_base64(last, newline=False) + tail,
        )
        self._split = split
        return split


@dataclass
class WebhookState:
    catalog: Catalog
    nodes: FleetSource
    own_namespace: str = ""
    metrics: Metrics = field(default_factory=Metrics)
    placement: GateSignal = field(default_factory=NoPlacement)
    _offers: OfferIndex | None = None
    _gating: bool = False
    # Answers per decision or body key, and allowed decisions per `template_key`: valid
    # for `_offers` and `_gating` only, dropped when either changes.
    _answers: OrderedDict[Hashable, Answer] = field(default_factory=OrderedDict)
    _templates: OrderedDict[Hashable, Template] = field(default_factory=OrderedDict)
    # Set on SIGTERM (see `serve.DrainingServer`): not ready, and every answer closes its
    # connection, while the process still serves for the shutdown delay.
    draining: bool = False

    def offers(self) -> OfferIndex | None:
        """The catalog precomputed over the current fleet, rebuilt when the fleet changes."""
        fleet = self.nodes.fleet()
        if fleet is None:
            return None
        gating = self.placement.alive()
        if gating != self._gating:  # remembered answers gated, or pinned: both now wrong
            self._gating = gating
            self._forget()
            self.metrics.late_binding.set(int(gating))
        if self._offers is None or self._offers.fleet is not fleet:
            self._offers = OfferIndex(fleet, self.catalog)
            self._forget()
            self.metrics.inventory_nodes.set(fleet.node_count)
            self.metrics.inventory_groups.set(len(fleet.groups))
        return self._offers

    def remembered(self, key: Hashable | None) -> Answer | None:
        """The answer remembered under `key`, valid as of the last `offers()` (which each
        request calls first); none before the first node list."""
        if key is None or self._offers is None:
            return None
        return self._answers.get(key)

    def remember(self, key: Hashable | None, found: Answer) -> Answer:
        # Only a decision made over an inventory is kept (not the "not listed yet" denial).
        if key is not None and self._offers is not None and found.code < 500:
            bounded_put(self._answers, key, found, ANSWER_MEMO_SIZE)
        return found

    def template(self, key: Hashable | None) -> Template | None:
        if key is None or self._offers is None:  # as `remembered`
            return None
        return self._templates.get(key)

    def remember_template(self, key: Hashable | None, made: Decision, found: Answer) -> None:
        # Only allowed decisions: a denial's message may quote the environment's name.
        if key is not None and self._offers is not None and made.allowed and found.code < 500:
            bounded_put(self._templates, key, Template(made, found), TEMPLATE_MEMO_SIZE)

    def _forget(self) -> None:
        self._answers, self._templates = OrderedDict(), OrderedDict()

    def ready(self) -> bool:
        return not self.draining and self.nodes.fleet() is not None

    @property
    def gating(self) -> bool:
        """Late binding as of the last `offers()` (the answers in memory agree with it)."""
        return self._gating


def create_app(state: WebhookState) -> ASGIApp:
    """The webhook's ASGI app: the admission paths in front, FastAPI for the rest."""
    return MutateEndpoint(_rest_of_app(state), state)


def _rest_of_app(state: WebhookState) -> FastAPI:
    app = FastAPI(
        title="flox-isa webhook",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry probe costs every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.webhook = state

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz() -> Response:
        if state.ready():
            return Response(b'{"status":"ready"}', media_type=JSON)
        if state.draining:
            return Response(b'{"status":"shutting down"}', 503, media_type=JSON)
        return Response(b'{"status":"waiting for the first node list"}', 503, media_type=JSON)

    @app.get("/metrics")
    async def metrics() -> Response:
        state.offers()  # refresh the inventory gauges
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class MutateEndpoint:
    """POST /mutate[/namespace-opt-in] as a plain ASGI endpoint in front of the FastAPI app.

    The admission hot path needs none of the framework's per-request work
    (middleware stack, routing, dependency solving, response models): about half
    of the time of a request on this stack. Every other path goes on to FastAPI.
    """

    def __init__(self, app: ASGIApp, state: WebhookState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        namespace_opted_in = MUTATE_PATHS.get(scope["path"]) if scope["type"] == "http" else None
        if namespace_opted_in is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if scope["method"] != "POST":
            status, payload = 405, _error("use POST with an AdmissionReview body")
        else:
            body = await read_body(receive)
            if body is None:
                status, payload = 413, _error(f"body larger than {MAX_BODY_BYTES} bytes")
            else:
                status, payload = answer(self.state, body, namespace_opted_in)
        headers = [CONTENT_TYPE_JSON, (b"content-length", b"%d" % len(payload))]
        if self.state.draining:
            headers.append(CONNECTION_CLOSE)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.state.metrics.admissions.observe(time.perf_counter() - started)


async def read_body(receive: Receive) -> bytes | None:
    """The request body, None if it exceeds MAX_BODY_BYTES."""
    message = await receive()
    if not message.get("more_body", False):  # the usual case: the whole body at once
        body: bytes = message.get("body", b"")
        return body if len(body) <= MAX_BODY_BYTES else None
    chunks: list[bytes] = [message.get("body", b"")]
    size = len(chunks[0])
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def answer(state: WebhookState, body: bytes, namespace_opted_in: bool) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for one POST body; see MUTATE_PATHS for the flag."""
    state.offers()  # the memos as of the current inventory and late-binding state
    same = body_key(body, namespace_opted_in, state.gating)
    if same is not None:
        found = state.remembered(same.key)
        if found is not None and found.subject is not None:  # a body decoded before
            return reply(found, same.uid, found.subject, remembered=True)
    try:
        review = decode_review(body)
    except msgspec.DecodeError as exc:  # not JSON, or not an AdmissionReview
        state.metrics.request_counter("bad_request", "malformed-review", None).inc()
        message = describe_malformed(exc, body)
        log.warning("malformed AdmissionReview", extra={"fields": {"error": message}})
        return 400, _error(message)
    request = review.request
    key = request_key(request, namespace_opted_in, state.gating)
    found = state.remembered(key)
    remembered = found is not None
    if found is None:
        found = state.remember(key, answer_anew(state, request, key, namespace_opted_in))
    subject = _subject(request)
    if same is not None and key is not None and same.uid == request.uid:
        state.remember(same.key, msgspec.structs.replace(found, subject=subject))
    return reply(found, request.uid, subject, remembered=remembered)


class BodyKey(msgspec.Struct, frozen=True, gc=False):
    key: tuple[str, bool, bool, bytes, bytes]
    uid: str


def body_key(body: bytes, namespace_opted_in: bool, gating: bool = False) -> BodyKey | None:
    """The body without its first uid (the bytes before it, a digest of those after it),
    and that uid.

    The pods of one ReplicaSet reach admission before they are named, so their
    AdmissionReviews are equal bytes but for `request.uid`, which leads the request.
    An answer is remembered under a body key only once parsing has shown that the
    uid cut out is `request.uid`; bodies with equal keys are equal outside the uid's
    characters, which cannot change the JSON's structure (no quote, no backslash).
    The key holds a digest of the pod, not the pod: pods can be megabytes, and
    the memo would otherwise keep thousands of them. The digest is xxh3-128 (~1 us
    for a 7 KB review, SHA-256 6-9 us: on the replicas path, half the time of an
    answer) with a random seed per process: pods that collide cannot be prepared in advance.
    """
    match = LEADING_UID.search(body, 0, UID_SEARCH_BYTES)
    if match is None:
        return None
    start, end = match.span(1)
    # What comes before the uid (a few dozen bytes) as is, a digest of what follows it.
    digest = xxhash.xxh3_128_digest(memoryview(body)[end:], seed=BODY_DIGEST_SEED)
    key = ("body", namespace_opted_in, gating, body[:start], digest)
    return BodyKey(key, match.group(1).decode())


def reply(found: Answer, uid: str, subject: Subject, *, remembered: bool) -> tuple[int, bytes]:
    found.counter.inc()
    level = log_level(found, remembered)
    if log.isEnabledFor(level):
        logs.event(log, level, found.outcome, _log_fields(uid, subject), found.line)
    return 200, found.body(uid)


def log_level(decision: Decision | Answer, remembered: bool) -> int:
    """A line per decision, not per replica: a decision made now and every denial at
    INFO; an allowed answer given again from memory at DEBUG (the pod carries its
    reason annotation and the metrics count it); skips at DEBUG; failures at WARNING.
    """
    if decision.code >= 500:
        return logging.WARNING
    if decision.outcome == "skipped" or (remembered and decision.allowed):
        return logging.DEBUG
    return logging.INFO


def request_key(
    request: AdmissionRequest, namespace_opted_in: bool, gating: bool = False
) -> DecisionKey | None:
    """The decision key of a pod CREATE (None for anything else: not remembered)."""
    if not request.is_pod_create or request.object is None:
        return None
    pod = request.object
    namespace = request.namespace or pod.metadata.namespace or ""
    return decision_key(pod, namespace, namespace_opted_in, gating)


def answer_anew(
    state: WebhookState,
    request: AdmissionRequest,
    key: DecisionKey | None,
    namespace_opted_in: bool,
) -> Answer:
    """The answer for a pod whose key is not remembered: one made for a pod that differs
    only in its environment's name, renamed (`template_key`), or a new one."""
    template_at = template_key(key, state.catalog) if key is not None else None
    template = state.template(template_at)
    pod = request.object
    if template is not None and pod is not None:
        return template.renamed((pod.metadata.annotations or {})[names.ENVIRONMENT_ANNOTATION])
    decision = decide_request(state, request, namespace_opted_in)
    found = prepare(state, decision)
    state.remember_template(template_at, decision, found)
    return found


def decide_request(
    state: WebhookState, request: AdmissionRequest, namespace_opted_in: bool
) -> Decision:
    if not request.is_pod_create or request.object is None:
        return Decision(True, "skipped", "not-a-pod-create", "only pod CREATE is handled")
    pod = request.object
    namespace = request.namespace or pod.metadata.namespace or ""
    try:
        ctx = Context(state.catalog, state.offers(), state.own_namespace, state.gating)
        return decide(pod, namespace, namespace_opted_in, ctx)
    except Exception:  # a bug must not become an HTTP 500 nor let a pod through unguarded
        log.exception("decision failed", extra={"fields": {"uid": request.uid}})
        return Decision(
            False,
            "denied",
            "internal-error",
            "flox-isa could not decide for this pod (internal error, see its logs);"
            " denied so it cannot land on a node that lacks its instructions",
            code=500,
        )


def prepare(state: WebhookState, decision: Decision) -> Answer:
    counter = state.metrics.request_counter(decision.outcome, decision.reason, decision.variant)
    line = logs.SharedFields.of(
        {
            "outcome": decision.outcome,
            "reason": decision.reason,
            "variant": decision.variant,
            "message": decision.message,
            "warnings": list(decision.warnings),
        }
    )
    return Answer(
        decision.outcome, decision.allowed, decision.code, line, response_tail(decision), counter
    )


def response_tail(decision: Decision) -> bytes:
    """The AdmissionReview's bytes after `RESPONSE_HEAD` and the uid: the response's
    fields, then the closing braces of the response and of the review. The patch's
    base64 text needs no JSON escaping, so it goes in as bytes (encoded once)."""
    head, tail = patch_frame(decision)
    patch = ENCODER.encode(decision.patch) if decision.patch else b""
    return head + binascii.b2a_base64(patch, newline=False) + tail


def patch_frame(decision: Decision) -> tuple[bytes, bytes]:
    """`response_tail` around the patch's base64 text: (the bytes before it, the bytes
    after it); all in the first when there is no patch."""
    allowed = b',"allowed":true' if decision.allowed else b',"allowed":false'
    if not decision.patch:
        return allowed + _after_patch(decision), b""
    head = allowed + b',"patchType":"JSONPatch","patch":"'
    return head, b'"' + _after_patch(decision)


def _after_patch(decision: Decision) -> bytes:
    parts = []
    if decision.warnings:
        parts.append(b',"warnings":' + ENCODER.encode(decision.warnings))
    if not decision.allowed:
        status = {
            "code": decision.code,
            "reason": STATUS_REASONS.get(decision.code, "InternalError"),
            "message": f"flox-isa: {decision.message}",
        }
        parts.append(b',"status":' + ENCODER.encode(status))
    parts.append(b"}}")
    return b"".join(parts)


def _subject(request: AdmissionRequest) -> Subject:
    pod = request.object
    meta = pod.metadata if pod is not None else None
    return Subject(
        request.namespace,
        (meta.name or meta.generate_name or "") if meta else request.name,
        request.dry_run,
        ((meta.annotations or {}) if meta else {}).get(names.ENVIRONMENT_ANNOTATION),
    )


def _log_fields(uid: str, subject: Subject) -> dict[str, Any]:
    """The log line's fields of one request (then the answer's own: `Answer.line`)."""
    return {
        "uid": uid,
        "namespace": subject.namespace,
        "pod": subject.pod,
        "dryRun": subject.dry_run,
        "environment": subject.environment,
    }


def describe_malformed(exc: msgspec.DecodeError, body: bytes) -> str:
    """`not an admission.k8s.io/v1 AdmissionReview: request.uid: ...`: which field, what
    was wrong."""
    where, what = describe_review_error(exc, body)
    place = ".".join(str(part) for part in where) or "body"
    return f"not an {ADMISSION_API_VERSION} AdmissionReview: {place}: {what}"

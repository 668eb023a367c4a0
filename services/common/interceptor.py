"""The server-side call pipeline every service runs, in this order:

telemetry (JSON log line, trace id) -> auth (verify JWT, policy, tenant check) ->
validation (protovalidate rules from the proto; a type marked validated_by_handler is checked by
its handler with the same rules) -> servicer -> error mapping -> metering
(one api_calls event per completed tenant RPC).

It is one grpc.aio interceptor that wraps each handler once, so streaming and unary calls
go through the same steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import protovalidate
import structlog
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.common import deadline, metrics
from services.common.bearer import bearer_token
from services.common.errors import (
    LIFECYCLE_REFUSALS,
    InvalidArgument,
    MakotoError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    internal_status,
)
from services.common.identity import TENANT_HEADER, Principal, Role, reset_principal, set_principal
from services.common.jwt_verify import JwtVerifier
from services.common.limits.api_rates import ApiRateLimiter, RateLimited
from services.common.policy import PUBLIC_PREFIXES, REFLECTION_PREFIXES, TENANT_ROLES, MethodPolicy
from services.common.telemetry import otlp_requested
from services.common.tenant_wire import canonical, field_numbers
from services.common.token_state import TokenState
from services.common.usage import (
    API_CALLS,
    AUDIT,
    PLATFORM_AUDIT_CHAIN,
    PLATFORM_PAYER,
    DurabilityGate,
    UsageRecorder,
)
from services.common.user_check import UserCheck

log = structlog.get_logger("makoto.rpc")
_tracer = trace.get_tracer("makoto.rpc")


def _server_span(method: str, metadata: Any) -> Any:
    """The call's server span, continuing the caller's W3C trace context. Made here rather than
    by OpenTelemetry's gRPC interceptor: that one records every error answer (a 404, a rate-limit
    refusal) as an exception with a formatted traceback, which cost ~1.4 ms of CPU per refused
    call and made refusing a flood dearer than serving it."""
    carrier = {k: v for k, v in metadata or () if isinstance(v, str)}
    service, _, name = method.lstrip("/").partition("/")
    return _tracer.start_as_current_span(
        method.lstrip("/"),
        context=propagate.extract(carrier),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    )


def _caller_trace_id(metadata: Any) -> str | None:
    """The trace id of the caller's W3C `traceparent` (00-<trace id>-<span id>-<flags>), for logs
    when no span is made."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            parts = value.split("-")
            if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
                return parts[1]
            return None
    return None


def _end_span(state: CallState) -> None:
    span = trace.get_current_span()
    span.set_attribute("rpc.grpc.status_code", state.code.value[0])
    if state.tenant_id:
        span.set_attribute("tenant.id", state.tenant_id)
    if state.code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, state.code.name))


_validator = protovalidate.Validator()


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    values = [
        value.decode() if isinstance(value, bytes) else value
        for key, value in metadata or ()
        if key == "authorization"
    ]
    return bearer_token(values)


class _Ambiguous:
    """A request whose tenant field was encoded non-canonically (services/common/tenant_wire.py):
    handed to the pipeline instead of the message, which refuses it."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _refuse_ambiguous(request: Any) -> None:
    if isinstance(request, _Ambiguous):
        raise InvalidArgument(f"ambiguous tenant field: {request.problem}", reason="AMBIGUOUS_TENANT_FIELD")


def _canonical_tenant(
    deserializer: Callable[[bytes], Any], numbers: tuple[int, ...], names: tuple[str, ...]
) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        message = deserializer(raw)
        problem = canonical(message, raw, numbers, names)
        if problem is not None:
            return _Ambiguous(problem)
        return message

    return deserialize


def _field(message: Message, path: str) -> str | None:
    """Read a dotted string field; None when a sub-message on the way is unset."""
    current: Any = message
    parts = path.split(".")
    for i, part in enumerate(parts):
        if i < len(parts) - 1:
            if not current.HasField(part):
                return None
        current = getattr(current, part)
    return str(current)


def _path(field_path: Any) -> str:
    parts: list[str] = []
    for element in getattr(field_path, "elements", None) or ():
        name = str(element.field_name)
        sub = getattr(element, "subscript", None)
        if sub is not None and getattr(sub, "value", None) is not None:
            name += f"[{sub.value!r}]" if isinstance(sub.value, str) else f"[{sub.value}]"
        parts.append(name)
    return ".".join(parts) or "(message)"


# Request types whose handler checks the proto's rules itself, on a fast path that falls back to
# validate_message() for anything it does not accept (same rules, same errors). Only for hot
# paths where protovalidate's per-element cost matters: RecordUsage (issue 8 ingest).
_HANDLER_VALIDATES: set[str] = set()


def validated_by_handler(message_type: type[Message]) -> None:
    """Mark a request type as checked in its handler: the interceptor skips protovalidate."""
    _HANDLER_VALIDATES.add(message_type.DESCRIPTOR.full_name)


def _validate_request(message: Message) -> None:
    if message.DESCRIPTOR.full_name not in _HANDLER_VALIDATES:
        validate_message(message)


def validate_message(message: Message) -> None:
    try:
        _validator.validate(message)
    except protovalidate.ValidationError as exc:
        violations = [(_path(v.proto.field), v.proto.message) for v in exc.violations]
        summary = "; ".join(f"{f}: {m}" for f, m in violations[:5])
        raise InvalidArgument(f"invalid request: {summary}", field_violations=violations) from exc


# Request fields that name what a call touches inside its tenant (names and ids only: never
# contents, secrets or prompts), in the order they appear in the audit log's `resource`.
_RESOURCE_FIELDS = (
    "collection",
    "partition_key",
    "sort_key",
    "key",
    "prefix",
    "user_id",
    "key_id",
    "token_id",
    "plan_id",
    "month",
    "model",
)


def audit_resource(message: Message) -> str:
    parts: list[str] = []
    for holder in (message, getattr(message, "header", None), getattr(message, "plan", None)):
        if not isinstance(holder, Message):
            continue
        names = {f.name for f in holder.DESCRIPTOR.fields}
        for name in _RESOURCE_FIELDS:
            if name in names:
                value = getattr(holder, name)
                if isinstance(value, str) and value:
                    parts.append(f"{name}={value}")
    return ",".join(parts)[:256]


_TENANT_ID = re.compile(r"[a-z][a-z0-9-]{2,62}")


def _note_refused_target(state: CallState, request: Any) -> None:
    """A call refused before its message was checked (its role may not call the method): the
    audit log still files it under the tenant the request named, when that is a well-formed
    tenant id (an operator's attempt at a tenant's data is the tenant's to see)."""
    policy = state.policy
    if state.principal is None or policy is None or not isinstance(request, Message):
        return
    if policy.tenant_field:
        requested = _field(request, policy.tenant_field)
        if requested and _TENANT_ID.fullmatch(requested):
            state.requested_tenant = requested
    state.resource = audit_resource(request)


def _decided(state: CallState) -> tuple[tuple[str, str], ...]:
    """The tenant the service decided the call was for, once its tenant check passed. Metadata
    values must be printable ASCII: a request naming anything else (refused by validation
    anyway) states none."""
    tenant = state.tenant_id
    if not (state.authorized and tenant and tenant.isascii() and tenant.isprintable()):
        return ()
    return ((TENANT_HEADER, tenant[:128]),)


def _strict_tenant_handler(
    handler: grpc.RpcMethodHandler, method: str, policy: MethodPolicy | None
) -> grpc.RpcMethodHandler:
    """The handler with a request deserializer that first scans the tenant field path."""
    deserializer = handler.request_deserializer
    if policy is None or not policy.tenant_field or deserializer is None:
        return handler
    service, _, name = method.lstrip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return handler
    numbers = field_numbers(found.input_type, policy.tenant_field)
    names = tuple(policy.tenant_field.split("."))
    return handler._replace(request_deserializer=_canonical_tenant(deserializer, numbers, names))


class UsageNotRecorded(Unavailable):
    reason = "USAGE_SPOOL_UNAVAILABLE"
    default_retry_after = 5.0


class CallState:
    """What the pipeline learned about one call; read by metering when it ends."""

    __slots__ = (
        "audited",
        "authorized",
        "code",
        "ended",
        "metered",
        "method",
        "policy",
        "principal",
        "requested_tenant",
        "resource",
        "tenant_id",
    )

    def __init__(self, method: str, policy: MethodPolicy | None) -> None:
        self.method = method
        self.policy = policy
        self.principal: Principal | None = None
        self.tenant_id: str | None = None
        self.code = grpc.StatusCode.OK
        # How a call the servicer never finished ended ("shutdown": cut at the grace deadline).
        self.ended: str | None = None
        # Set once the tenant check passed: refused calls are not billed to anyone.
        self.authorized = False
        # Set once the api_calls record was attempted (it is attempted at most once).
        self.metered = False
        # Set once the audit event was recorded (with the api_calls event, see _meter_before_ok).
        self.audited = False
        # The tenant the request names (also when the call was refused for it), and what it
        # names inside the tenant: both go to the audit log.
        self.requested_tenant: str | None = None
        self.resource = ""


class MakotoInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(
        self,
        *,
        service_name: str,
        verifier: JwtVerifier,
        policies: dict[str, MethodPolicy],
        recorder: UsageRecorder | None,
        deadlines: deadline.DeadlinePolicy | None = None,
        rate_limiter: ApiRateLimiter | None = None,
        token_state: TokenState | None = None,
        user_check: UserCheck | None = None,
        tracing: bool | None = None,
        worker: int | None = None,
        reflection_needs_token: bool = False,
    ) -> None:
        self._service = service_name
        # Outside development, reflection (the whole API surface) is for token holders only.
        self._reflection_needs_token = reflection_needs_token
        # Revoked tokens, removed users, revoked API keys (None: not checked).
        self._token_state = token_state
        # User tokens' subjects against the tenant's current users (None: not checked).
        self._user_check = user_check
        # Every call runs under a deadline: the client's (capped) or the service default.
        self._deadlines = deadlines or deadline.DeadlinePolicy()
        self._verifier = verifier
        self._policies = policies
        self._recorder = recorder
        # Checked once here, not per call (a runtime Protocol check is not free).
        self._durability = recorder if isinstance(recorder, DurabilityGate) else None
        self._rates = rate_limiter
        # Spans cost ~20 µs a call: made only when they go somewhere (an OTLP exporter is
        # configured); otherwise logs carry the caller's trace id from its traceparent.
        self._spans = tracing if tracing is not None else otlp_requested()
        # A worker among several on one port says which it is (trailing metadata of OK answers).
        self._worker_md = (("x-makoto-worker", str(worker)),) if worker is not None else None
        # method -> (grpc's handler, our wrapped one), see _wrap.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        # Set by the server when SIGTERM's grace period starts: calls cut from then on were
        # ended by the platform, not by their client.
        self._shutting_down = False
        # Calls whose handler has not finished yet (their usage is recorded as they finish).
        self._inflight = 0
        self._idle: asyncio.Event | None = None

    def _enter(self) -> None:
        self._inflight += 1

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, limit_seconds: float) -> int:
        """After the server stopped: wait (bounded) until every cut call has run its finally
        blocks -- recorded its usage -- so the recorder closes after the last record. Returns
        how many calls were still running at the timeout."""
        if self._inflight:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), limit_seconds)
            except TimeoutError:
                log.error("calls still running after shutdown", count=self._inflight)
        return self._inflight

    def begin_shutdown(self) -> None:
        self._shutting_down = True

    def _cut(self, state: CallState) -> None:
        """The servicer was cancelled (or its stream closed) before it answered: record why,
        so api_calls carry the status the client really got, never OK."""
        if self._shutting_down:
            # The server stopped the call at the grace deadline: the platform went away.
            state.code, state.ended = grpc.StatusCode.UNAVAILABLE, "shutdown"
        elif deadline.expired():
            state.code = grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            state.code = grpc.StatusCode.CANCELLED

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return handler
        if method.startswith(PUBLIC_PREFIXES):
            if self._reflection_needs_token and method.startswith(REFLECTION_PREFIXES):
                return self._reflection_gate(handler, handler_call_details.invocation_metadata)
            return handler
        return self._wrap(handler, method)

    def _reflection_gate(self, handler: grpc.RpcMethodHandler, metadata: Any) -> grpc.RpcMethodHandler:
        """Reflection for callers with a valid token (any role); UNAUTHENTICATED otherwise."""
        token = _bearer(metadata)
        try:
            if token is None:
                raise Unauthenticated("reflection needs a bearer token outside development")
            self._verifier.verify(token)
        except MakotoError as exc:
            refusal = exc

            async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await context.abort_with_status(rpc_status.to_status(refusal.to_status()))
                yield  # pragma: no cover  (an async generator; abort raised above)

            return grpc.stream_stream_rpc_method_handler(
                refuse, handler.request_deserializer, handler.response_serializer
            )
        return handler

    # -- steps ---------------------------------------------------------------------------

    def _authenticate(self, state: CallState, metadata: Any) -> Principal | None:
        if state.policy is None:
            # Fail closed: a method nobody wrote a policy for is not callable.
            raise PermissionDenied("method not permitted")
        if state.policy.public:
            return None
        token = _bearer(metadata)
        if token is None:
            raise Unauthenticated("missing bearer token")
        principal = self._verifier.verify(token)
        state.principal = principal  # known from here on, so a refusal below is audited too
        if principal.role not in state.policy.roles:
            raise PermissionDenied(f"role {principal.role} may not call this method")
        if principal.methods and state.method.lstrip("/").replace("/", ".") not in principal.methods:
            # An API key scoped to some methods: its tokens call nothing else.
            raise PermissionDenied(
                "this token is not allowed to call this method", reason="METHOD_NOT_ALLOWED"
            )
        feature = state.policy.feature
        if feature and principal.features_claimed and feature not in principal.features:
            raise PermissionDenied(
                f"feature {feature!r} is not enabled for this token", reason="FEATURE_NOT_ENABLED"
            )
        state.principal = principal
        state.tenant_id = principal.tenant_id
        return principal

    def _check_message(self, state: CallState, message: Message) -> None:
        _refuse_ambiguous(message)
        policy = state.policy
        principal = state.principal
        assert policy is not None
        if policy.public:
            validate_message(message)
            return
        assert principal is not None
        if not state.resource:
            state.resource = audit_resource(message)
        if policy.tenant_field:
            requested = _field(message, policy.tenant_field)
            if requested is not None and requested != "":
                state.requested_tenant = requested
                if principal.role not in policy.cross_tenant_roles and requested != principal.tenant_id:
                    raise PermissionDenied("token is not valid for this tenant")
                state.tenant_id = requested
        state.authorized = True
        _validate_request(message)

    async def _limit(self, state: CallState, context: grpc.aio.ServicerContext, headers: bool) -> None:
        """The tenant's API rate limit (tenant principals only; operators and services are not
        limited by a tenant's plan). A refused call is not billed."""
        principal = state.principal
        if self._rates is None or principal is None or not state.tenant_id:
            return
        if principal.role not in TENANT_ROLES:
            return
        assert state.policy is not None
        try:
            rate_headers = await self._rates.check(state.tenant_id, state.policy.rate_class)
        except MakotoError as exc:
            state.authorized = False
            if isinstance(exc, RateLimited):
                metrics.rate_limited(self._service, state.tenant_id, state.policy.rate_class)
            raise
        if headers:
            # Unary answers only: on a server stream, early headers would commit a REST client's
            # HTTP status to 200 before the handler could still fail.
            await context.send_initial_metadata(rate_headers)

    def _meterable(self, state: CallState) -> bool:
        return (
            self._recorder is not None
            and state.policy is not None
            and state.policy.metered
            and bool(state.tenant_id)
            and state.authorized
        )

    @staticmethod
    def _by_service(state: CallState) -> bool:
        return state.principal is not None and state.principal.role == Role.SERVICE

    def _gated(self, state: CallState) -> bool:
        """Calls that must not answer OK without a durable record: all metered calls but the
        services' own. Those are the platform's cost (never invoiced), so a lost record costs
        no one money, while refusing them would turn one replica's spool trouble into refusals
        of other services' tenant calls whose own records are fine: recorded best effort."""
        return self._meterable(state) and not self._by_service(state)

    def _refused_quietly(self, state: CallState) -> bool:
        """A service's call while the spool refuses: its record is skipped without a log line
        per call (the recorder already logs the refusal, and these records are best effort)."""
        return (
            self._by_service(state)
            and self._durability is not None
            and self._durability.refusal() is not None
        )

    def _gate(self, state: CallState) -> None:
        """No service without a record: a metered call is refused before any work while the
        recorder says its usage could not be made durable (spool unwritable or full)."""
        if self._durability is None or not self._gated(state):
            return
        refusal = self._durability.refusal()
        if refusal is not None:
            state.authorized = False  # refused before work: nothing to bill, nowhere to write
            raise refusal

    async def _meter(self, state: CallState) -> None:
        """Record the call's api_calls event (raises when it could not be made durable)."""
        state.metered = True
        assert self._recorder is not None and state.tenant_id
        principal = state.principal
        role = principal.role if principal else None
        await self._recorder.record(
            meter=API_CALLS,
            tenant_id=state.tenant_id,
            value=1,
            dimensions={
                "service": self._service,
                "method": state.method.rsplit("/", 1)[-1],
                "status": state.code.name,
                **({"ended": state.ended} if state.ended else {}),
                # Who pays: an operator's or a service's call about a tenant (reads,
                # CreateTenant, directory lookups, limits) is the platform's cost, recorded
                # under the tenant but never invoiced; a service's says which service asked.
                **({"payer": PLATFORM_PAYER} if role == Role.PLATFORM_ADMIN else {}),
                **(
                    {"payer": PLATFORM_PAYER, "caller": principal.subject[:256]}
                    if principal is not None and role == Role.SERVICE
                    else {}
                ),
            },
        )

    async def _meter_before_ok(self, state: CallState) -> None:
        """A call about to answer OK is metered first; if that fails the call answers
        UNAVAILABLE instead (it must not succeed without a durable record). Services' calls
        are recorded when they end instead (_finish), best effort."""
        if not self._gated(state):
            return
        # The audit event (outcome OK) is recorded alongside: both reach the spool in the same
        # turn of the loop, so they share one spool write and the answer waits for one commit,
        # not two in a row. If the api_calls record fails the call answers UNAVAILABLE and is
        # audited again with that outcome when it ends (an OK audit may then have been kept too).
        metered, audited = await asyncio.gather(
            self._meter(state), self._audit(state), return_exceptions=True
        )
        state.audited = audited is True
        if isinstance(metered, BaseException):
            if isinstance(metered, MakotoError) or not isinstance(metered, Exception):
                raise metered
            log.error("usage record failed", method=state.method, exc_info=metered)
            raise UsageNotRecorded("usage could not be recorded durably; try again later") from metered

    async def _finish(self, state: CallState, started: float) -> None:
        elapsed = time.perf_counter() - started
        metrics.observe_call(self._service, state.method, state.code, elapsed, state.tenant_id)
        # The per-call line: at INFO for calls that did not answer OK, at DEBUG for the rest
        # (rendering a JSON line for every OK call was a tenth of a GetItem's CPU; Envoy's
        # access log has every request).
        ok = state.code == grpc.StatusCode.OK
        if not ok or logging.root.isEnabledFor(logging.DEBUG):
            (log.debug if ok else log.info)(
                "rpc",
                service=self._service,
                method=state.method,
                code=state.code.name,
                tenant_id=state.tenant_id,
                role=str(state.principal.role) if state.principal else None,
                duration_ms=round(elapsed * 1000, 3),
            )
        if not state.metered and self._meterable(state) and not self._refused_quietly(state):
            try:
                await self._meter(state)
            except Exception:  # the call already failed; its record is best effort
                log.exception("usage record failed", method=state.method)
        if not state.audited or state.code != grpc.StatusCode.OK:
            await self._audit(state)

    async def _audit(self, state: CallState) -> bool:
        """One audit event per decision on a tenant's data or configuration, allowed or refused,
        under the tenant the request named (or, refused before it was read, the caller's own).
        A decision that names no tenant -- an operator's ListTenants or SetPricePlan -- goes to
        the platform's chain. Services' own calls are plumbing, not decisions."""
        principal = state.principal
        if self._recorder is None or principal is None or principal.role == Role.SERVICE:
            return False
        tenant = state.requested_tenant or state.tenant_id or principal.tenant_id or PLATFORM_AUDIT_CHAIN
        try:
            await self._recorder.record(
                meter=AUDIT,
                tenant_id=tenant,
                value=1,
                dimensions={
                    "principal": principal.subject[:256],
                    "role": str(principal.role),
                    "method": state.method.lstrip("/").replace("/", "."),
                    "resource": state.resource,
                    "outcome": state.code.name,
                    **({"api_key_id": principal.api_key_id} if principal.api_key_id else {}),
                },
            )
        except Exception:  # the answer is already decided; a lost audit event is logged loudly
            log.exception("audit record failed", method=state.method, tenant_id=tenant)
            return False
        return True

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, state: CallState, exc: BaseException) -> None:
        if isinstance(exc, MakotoError):
            state.code = exc.code
            if exc.reason in LIFECYCLE_REFUSALS:
                # A suspended or deleted tenant's refused call is not billed to it.
                state.authorized = False
            status = rpc_status.to_status(exc.to_status())
            extra = (*getattr(exc, "headers", ()), *_decided(state))
            if extra:
                # abort replaces trailing metadata set earlier: send ours with the status.
                status = status._replace(trailing_metadata=(*status.trailing_metadata, *extra))
            await context.abort_with_status(status)
        log.exception("unhandled error", method=state.method, exc_info=exc)
        state.code = grpc.StatusCode.INTERNAL
        await context.abort_with_status(rpc_status.to_status(internal_status()))

    def _trailers(self, state: CallState) -> tuple[tuple[str, str], ...]:
        return (*(self._worker_md or ()), *_decided(state))

    def _bind_log(self, state: CallState, metadata: Any) -> None:
        if self._spans:
            ctx = trace.get_current_span().get_span_context()
            trace_id = format(ctx.trace_id, "032x") if ctx.trace_id else None
        else:
            trace_id = _caller_trace_id(metadata)
        structlog.contextvars.bind_contextvars(method=state.method, trace_id=trace_id)

    # -- wrapping ------------------------------------------------------------------------

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The handler with the pipeline around it; built once per method (grpc hands the same
        handler object for a method on every call), so a call allocates no closures here."""
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._build(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _build(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        policy = self._policies.get(method)
        handler = _strict_tenant_handler(handler, method, policy)
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def uu(request: Any, context: grpc.aio.ServicerContext) -> Any:
                return await self._run_unary(method, policy, inner_uu, request, context, False)

            return grpc.unary_unary_rpc_method_handler(
                uu, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def su(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                return await self._run_unary(method, policy, inner_su, requests, context, True)

            return grpc.stream_unary_rpc_method_handler(
                su, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            # A partial of an async generator function: grpc.aio recognises it as one (a plain
            # function returning an async generator would be run as a sync generator).
            return grpc.unary_stream_rpc_method_handler(
                functools.partial(self._run_stream, method, policy, handler.unary_stream, streaming_in=False),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(self._run_stream, method, policy, handler.stream_stream, streaming_in=True),
            handler.request_deserializer,
            handler.response_serializer,
        )

    async def _checked_requests(
        self,
        state: CallState,
        requests: AsyncIterator[Message],
        context: grpc.aio.ServicerContext,
        headers: bool,
    ) -> AsyncIterator[Message]:
        first = True
        async for message in requests:
            self._check_message(state, message)
            if state.tenant_id:
                structlog.contextvars.bind_contextvars(tenant_id=state.tenant_id)
            if first:
                first = False
                await self._limit(state, context, headers)
                self._gate(state)
            yield message

    async def _run_unary(
        self,
        method: str,
        policy: MethodPolicy | None,
        behavior: Any,
        request_or_iter: Any,
        context: grpc.aio.ServicerContext,
        streaming_in: bool,
    ) -> Any:
        metadata = context.invocation_metadata()
        if not self._spans:
            return await self._run_unary_in_span(
                method, policy, metadata, behavior, request_or_iter, context, streaming_in
            )
        with _server_span(method, metadata):
            return await self._run_unary_in_span(
                method, policy, metadata, behavior, request_or_iter, context, streaming_in
            )

    async def _run_stream(
        self,
        method: str,
        policy: MethodPolicy | None,
        behavior: Any,
        request_or_iter: Any,
        context: grpc.aio.ServicerContext,
        streaming_in: bool,
    ) -> AsyncIterator[Any]:
        metadata = context.invocation_metadata()
        with _server_span(method, metadata) if self._spans else contextlib.nullcontext():
            # aclosing: a cancelled or abandoned stream closes the inner one at once, so its
            # finally (metering, deadline reset) runs now, not at garbage collection.
            async with contextlib.aclosing(
                self._run_stream_in_span(
                    method, policy, metadata, behavior, request_or_iter, context, streaming_in
                )
            ) as responses:
                async for response in responses:
                    yield response

    async def _run_unary_in_span(
        self,
        method: str,
        policy: MethodPolicy | None,
        metadata: Any,
        behavior: Any,
        request_or_iter: Any,
        context: grpc.aio.ServicerContext,
        streaming_in: bool,
    ) -> Any:
        state, started, deadline_token = self._begin(method, policy, metadata, context, streaming_in)
        token = None
        try:
            token, request_or_iter = await self._admit(
                state, metadata, request_or_iter, context, streaming_in, True
            )
            result = await deadline.run(behavior(request_or_iter, context))
            await self._meter_before_ok(state)
            context.set_trailing_metadata(self._trailers(state))
            return result
        except BaseException as exc:
            if self._propagates(context, state, exc):
                raise
            await self._abort(context, state, exc)
        finally:
            await self._settle(state, started, token, deadline_token)

    async def _run_stream_in_span(
        self,
        method: str,
        policy: MethodPolicy | None,
        metadata: Any,
        behavior: Any,
        request_or_iter: Any,
        context: grpc.aio.ServicerContext,
        streaming_in: bool,
    ) -> AsyncGenerator[Any, None]:
        state, started, deadline_token = self._begin(method, policy, metadata, context, True)
        token = None
        try:
            token, request_or_iter = await self._admit(
                state, metadata, request_or_iter, context, streaming_in, False
            )
            async for response in deadline.stream(behavior(request_or_iter, context)):
                yield response
            await self._meter_before_ok(state)
            context.set_trailing_metadata(self._trailers(state))
        except BaseException as exc:
            if self._propagates(context, state, exc):
                raise
            await self._abort(context, state, exc)
        finally:
            await self._settle(state, started, token, deadline_token)

    # -- the steps every call runs, unary or streaming -------------------------------------

    def _begin(
        self,
        method: str,
        policy: MethodPolicy | None,
        metadata: Any,
        context: grpc.aio.ServicerContext,
        streaming: bool,
    ) -> tuple[CallState, float, Any]:
        """(the call's state, its start time, the deadline's context token)."""
        state = CallState(method, policy)
        started = time.perf_counter()
        self._enter()
        self._bind_log(state, metadata)
        return (
            state,
            started,
            deadline.start(self._deadlines.effective(context.time_remaining(), streaming=streaming)),
        )

    async def _admit(
        self,
        state: CallState,
        metadata: Any,
        request_or_iter: Any,
        context: grpc.aio.ServicerContext,
        streaming_in: bool,
        unary_out: bool,
    ) -> tuple[Any, Any]:
        """Authenticate, check and limit the call: (the principal's context token, the
        requests, checked as they arrive when streamed in)."""
        try:
            principal = self._authenticate(state, metadata)
        except MakotoError:
            if not streaming_in:
                _note_refused_target(state, request_or_iter)
            raise
        if principal is not None and self._token_state is not None:
            await self._token_state.check(principal)
        if principal is not None and self._user_check is not None:
            await self._user_check.check(principal)
        token = set_principal(principal)
        try:
            if streaming_in:
                request_or_iter = self._checked_requests(state, request_or_iter, context, unary_out)
            else:
                self._check_message(state, request_or_iter)
                await self._limit(state, context, unary_out)
                self._gate(state)
        except BaseException:
            reset_principal(token)  # the caller only resets a principal it was handed
            raise
        structlog.contextvars.bind_contextvars(tenant_id=state.tenant_id)
        return token, request_or_iter

    def _propagates(self, context: grpc.aio.ServicerContext, state: CallState, exc: BaseException) -> bool:
        """True for what must leave the call as it is (already aborted, cancelled, closed),
        after recording it; False for an error the call answers with a status (_abort)."""
        if isinstance(exc, grpc.aio.AbortError):
            state.code = context.code() or grpc.StatusCode.UNKNOWN
            return True
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self._cut(state)
            return True
        return not isinstance(exc, Exception)

    async def _settle(self, state: CallState, started: float, token: Any, deadline_token: Any) -> None:
        if token is not None:
            reset_principal(token)
        deadline.reset(deadline_token)
        if self._spans:
            _end_span(state)
        try:
            await self._finish(state, started)
        finally:
            self._leave()

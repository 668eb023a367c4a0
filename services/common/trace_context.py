"""W3C trace context on the services' own gRPC calls (-> TenantDirectory, -> MeteringService).

A client interceptor opens a CLIENT span for the call and sends its `traceparent` in the call's
metadata, so the callee's server span (services/common/interceptor.py) joins the caller's trace.
Outside any trace (background work such as the usage spool's batched delivery, which serves many
calls at once) it adds nothing: no span, no header. Errors are recorded as a status, without a
formatted exception (a NOT_FOUND from the directory is an ordinary answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

_tracer = trace.get_tracer("makoto.rpc.client")


class TraceContextInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc is untyped
    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if not trace.get_current_span().get_span_context().is_valid:
            return await continuation(client_call_details, request)
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else str(method)
        service, _, rpc = name.lstrip("/").partition("/")
        with _tracer.start_as_current_span(
            name.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                _with(client_call_details.metadata, carrier),
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
            call = await continuation(details, request)
            code = await call.code()
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code != grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, code.name))
            return call


def _with(metadata: Sequence[tuple[str, Any]] | None, extra: dict[str, str]) -> grpc.aio.Metadata:
    out = grpc.aio.Metadata(*(metadata or ()))
    for key, value in extra.items():
        out[key] = value
    return out


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For grpc.aio.insecure_channel(..., interceptors=client_interceptors())."""
    return [TraceContextInterceptor()]

"""The services' client interceptor: inside a trace it sends traceparent (the callee continues the
caller's trace) under a CLIENT span; outside any trace it sends nothing and starts no span."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import trace_context
from services.common.trace_context import client_interceptors

METHOD = "/test.Echo/Call"


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A real grpc.aio server whose one method records the metadata it received."""
    seen: list[dict[str, str]] = []

    async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if request == b"fail":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return request

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        await server.stop(None)


async def test_traceparent_only_inside_a_trace(
    echo: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, seen = echo
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    # The process-wide provider belongs to whichever server a test started first: the client
    # spans go to this test's provider instead (the global one is left alone).
    monkeypatch.setattr(trace_context, "_tracer", provider.get_tracer("makoto.rpc.client"))
    async with grpc.aio.insecure_channel(address, interceptors=client_interceptors()) as channel:
        call = channel.unary_unary(METHOD)
        assert await call(b"plain") == b"plain"
        assert "traceparent" not in seen[-1]
        with tracer.start_as_current_span("caller") as caller:
            assert await call(b"traced", metadata=(("x-keep", "1"),)) == b"traced"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(b"fail")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    traced, failed = seen[-2], seen[-1]
    assert traced["x-keep"] == "1"  # the caller's metadata is kept
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert traced["traceparent"].split("-")[1] == trace_id
    spans = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    assert [s.name for s in spans] == ["test.Echo/Call", "test.Echo/Call"]
    # Each call's traceparent names its own client span as the parent.
    assert traced["traceparent"].split("-")[2] == format(spans[0].context.span_id, "016x")
    assert failed["traceparent"].split("-")[2] == format(spans[1].context.span_id, "016x")
    assert spans[1].status.status_code == trace.StatusCode.ERROR
    assert spans[1].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert not spans[1].events  # no exception recorded with a traceback

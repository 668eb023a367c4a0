"""JSON logs (structlog) carrying tenant_id and trace_id; OpenTelemetry tracing.

Spans are always created (so logs carry real trace ids); they are exported over OTLP/gRPC only
when a collector is configured: MAKOTO_OTLP_ENDPOINT (host:port, also where Envoy sends its spans)
or the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp).
"""

from __future__ import annotations

import logging
import os
import sys

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.common.config import MeshSettings
from services.common.identity import maybe_principal

TENANT_ATTRIBUTE = "tenant.id"

_configured = False


def configure_logging(service: str, level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def otlp_requested(settings: MeshSettings | None = None) -> bool:
    return bool(
        (settings is not None and settings.otlp_endpoint)
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "otlp"
    )


class TenantSpanProcessor(SpanProcessor):
    """Stamps `tenant.id` on every span started inside a tenant's call -- client spans to other
    services and the backends' spans (httpx, asyncpg, botocore) included -- so one attribute
    finds a tenant's spans in any backend. The tenant is the one the call was authorised for
    (bound by the interceptor), else the parent span's. Only sampled spans reach this."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        tenant = structlog.contextvars.get_contextvars().get("tenant_id")
        if not tenant:
            # Before the tenant is bound (the rate-limit step's limits lookup): the token's.
            principal = maybe_principal()
            tenant = principal.tenant_id if principal is not None else None
        if not tenant:
            parent = trace.get_current_span(parent_context)
            attributes = getattr(parent, "attributes", None)
            tenant = attributes.get(TENANT_ATTRIBUTE) if attributes else None
        if tenant:
            span.set_attribute(TENANT_ATTRIBUTE, str(tenant))


def instrument_backends() -> None:
    """Client spans (and W3C traceparent on the wire where the protocol carries headers) for the
    backends: HTTP (httpx2: the LLM SDKs; httpx), PostgreSQL (asyncpg) and AWS (aiobotocore,
    what the S3 and DynamoDB adapters use through aioboto3; botocore for synchronous clients)."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor, BotocoreInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

    # The OpenAI and Anthropic SDKs here speak httpx2; JWKS fetches and Azure's pipeline httpx.
    for instrumentor in (
        HTTPX2ClientInstrumentor(),
        HTTPXClientInstrumentor(),
        AioHttpClientInstrumentor(),  # the LLM adapters' chat path (adapters/openai_http.py)
        AsyncPGInstrumentor(),
        # aiobotocore overrides botocore's _make_api_call with a coroutine, so botocore's
        # instrumentor alone never sees the adapters' S3 / DynamoDB calls.
        AiobotocoreInstrumentor(),
        BotocoreInstrumentor(),
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


_provider: TracerProvider | None = None


def configure_tracing(service: str, settings: MeshSettings | None = None) -> TracerProvider:
    """Spans are always made (log lines carry their trace ids); they are exported, stamped with
    tenant.id and the backends instrumented only when a collector is configured
    (MAKOTO_OTLP_ENDPOINT or the standard OTEL_EXPORTER_OTLP_* variables)."""
    global _provider
    if _provider is not None:  # once per process (tests run several servers in one process)
        return _provider
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"makoto-{service}")})
    )
    if otlp_requested(settings):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint if settings is not None else ""
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True) if endpoint else OTLPSpanExporter()
        delay_ms = settings.otlp_flush_seconds * 1000 if settings is not None else None
        provider.add_span_processor(TenantSpanProcessor())
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
        instrument_backends()
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider

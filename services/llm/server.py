"""LLMService wiring: settings -> registry (tenant directory, secrets, provider adapters) ->
servicer -> ServerSpec. The one place that knows which adapter serves which provider kind."""

from __future__ import annotations

from makoto.llm.v1 import llm_pb2_grpc
from makoto.tenant.v1 import tenant_pb2

from services.common import metrics
from services.common.bindings.egress import EgressPolicy
from services.common.config import MeshSettings
from services.common.directory_client import TenantDirectory
from services.common.jwt_verify import JwtVerifier
from services.common.limits.wiring import LimitsParts, build_limits
from services.common.secrets import SecretResolver
from services.common.server import Registration, ServerSpec
from services.common.usage import UsageRecorder
from services.llm.adapters.anthropic_provider import build_anthropic
from services.llm.adapters.azure_openai_provider import build_azure_openai
from services.llm.adapters.openai_provider import build_openai
from services.llm.config import LlmSettings
from services.llm.limits import LlmLimits
from services.llm.metering import UsageMeter
from services.llm.openai_api import OpenAIApi
from services.llm.ports import TenantResolver
from services.llm.registry import ProviderFactory, ProviderRegistry
from services.llm.service import LlmServicer

SERVICE = "makoto.llm.v1.LLMService"

# Provider kind -> adapter. A kind missing here answers FAILED_PRECONDITION "not available".
FACTORIES: dict[int, ProviderFactory] = {
    tenant_pb2.LLM_PROVIDER_OPENAI: build_openai,
    tenant_pb2.LLM_PROVIDER_AZURE_OPENAI: build_azure_openai,
    tenant_pb2.LLM_PROVIDER_ANTHROPIC: build_anthropic,
}


def default_endpoints(settings: MeshSettings) -> dict[int, str]:
    """Endpoint "" in a binding means the mesh's own LLM simulator (dev default)."""
    root = settings.simulator_url.removesuffix("/v1")
    return {
        tenant_pb2.LLM_PROVIDER_OPENAI: settings.simulator_url,
        tenant_pb2.LLM_PROVIDER_AZURE_OPENAI: root,
        tenant_pb2.LLM_PROVIDER_ANTHROPIC: root,
    }


def loopback(host: str) -> str:
    # A wildcard bind is reached on loopback; a specific address is reached on itself.
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


async def build(
    settings: MeshSettings,
    *,
    recorder: UsageRecorder | None = None,
    tenants: TenantResolver | None = None,
    secrets: SecretResolver | None = None,
    options: LlmSettings | None = None,
    limits: LimitsParts | None = None,
) -> ServerSpec:
    """limits: else rate buckets and budgets in the shared store, limits from MeteringService."""
    options = options or LlmSettings()
    if recorder is None:
        # Imported here: tests inject their own recorder and need not load the spooling client.
        from services.common.usage_jetstream import usage_recorder

        recorder = usage_recorder(settings, "llm")
    registry_stops = []
    if tenants is None:
        directory = TenantDirectory.from_settings(settings, "llm")
        tenants = directory
        registry_stops.append(directory.close)
    registry = ProviderRegistry(
        tenants,
        secrets or SecretResolver.for_settings(settings),
        FACTORIES,
        default_endpoints=default_endpoints(settings),
        options=options,
        egress=EgressPolicy(settings.egress_allow),
    )
    metrics.watch_cache("llm_providers", registry.__len__)
    limits = limits or build_limits(settings, "llm")
    llm_limits = LlmLimits(limits.counters, limits.cache, recorder)
    servicer = LlmServicer(registry, UsageMeter(recorder), options, llm_limits)
    openai_api = OpenAIApi(
        host=settings.host,
        port=settings.llm_openai_port,
        grpc_target=f"{loopback(settings.host)}:{settings.llm_port}",
        verifier=JwtVerifier(settings.jwt_providers()),
        timeout_seconds=options.timeout_seconds,
        max_body_bytes=settings.max_message_bytes,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        settings=settings,
    )
    return ServerSpec(
        name="llm",
        port=settings.llm_port,
        registrations=[Registration(llm_pb2_grpc.add_LLMServiceServicer_to_server, servicer, SERVICE)],
        recorder=recorder,
        rate_limiter=limits.api,
        listeners=[openai_api],
        on_stop=[servicer.drain, llm_limits.close, registry.close, *registry_stops, *limits.closers],
    )

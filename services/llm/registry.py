"""Per-tenant provider clients, built from the tenant's LLM binding and cached in the shared
adapter cache (services/common/adapter_cache.py): bounded LRU + TTL, rebuilt when the
directory's etag or the binding changes or after the provider rejected its credentials (the
secret may have been rotated), single-flight builds, closed after the last call leasing it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from makoto.tenant.v1 import tenant_pb2

from services.common.adapter_cache import AdapterCache
from services.common.bindings.egress import EgressPolicy
from services.common.bindings.registry import LLM_PROVIDERS, check_connect, llm_spec_hosts
from services.common.errors import FailedPrecondition
from services.common.secrets import SecretResolver
from services.llm.config import LlmSettings
from services.llm.ports import ChatProvider, ProviderConfig, TenantResolver

log = structlog.get_logger("makoto.llm.registry")

ProviderFactory = Callable[[ProviderConfig], ChatProvider]

# Provider names (metering dimension, messages) come from the backend registry, written once.
PROVIDER_NAMES: dict[int, str] = {kind: spec.name for kind, spec in LLM_PROVIDERS.items()}


@dataclass(eq=False)
class TenantLlm:
    tenant_id: str
    binding: tenant_pb2.LlmBinding
    provider: ChatProvider

    async def close(self) -> None:
        await self.provider.close()


class ProviderRegistry:
    def __init__(
        self,
        tenants: TenantResolver,
        secrets: SecretResolver,
        factories: Mapping[int, ProviderFactory],
        *,
        default_endpoints: Mapping[int, str],
        options: LlmSettings,
        egress: EgressPolicy | None = None,
    ) -> None:
        # Where tenant endpoints may point (services/common/bindings/egress.py); none: loopback
        # and private endpoints are all refused.
        self._egress = egress or EgressPolicy()
        self._tenants = tenants
        self._secrets = secrets
        self._factories = dict(factories)
        self._default_endpoints = dict(default_endpoints)
        self._options = options
        self.cache: AdapterCache[TenantLlm, tenant_pb2.LlmBinding] = AdapterCache(
            "llm",
            self._build,
            lambda b: PROVIDER_NAMES.get(b.provider, "unspecified"),
            max_entries=options.max_tenants,
            ttl_seconds=options.client_ttl_seconds,
        )

    def __len__(self) -> int:
        return len(self.cache)

    @asynccontextmanager
    async def lease(self, tenant_id: str) -> AsyncIterator[TenantLlm]:
        """The tenant's client for one call (the tenant must be active: directory errors pass
        through); it stays open until the call ends."""
        answer = await self._tenants.require_active(tenant_id)
        async with self.cache.lease(tenant_id, answer.bindings.llm, answer.etag) as lease:
            yield lease.store

    async def require_active(self, tenant_id: str) -> None:
        await self._tenants.require_active(tenant_id)

    def invalidate(self, tenant: TenantLlm) -> None:
        """Forget the tenant's client if it is still this one (the next call re-reads the secret)."""
        self.cache.invalidate(tenant.tenant_id, tenant)

    async def _build(self, tenant_id: str, binding: tenant_pb2.LlmBinding) -> TenantLlm:
        kind = binding.provider
        if kind == tenant_pb2.LLM_PROVIDER_UNSPECIFIED:
            raise FailedPrecondition("the tenant has no LLM binding", reason="LLM_BINDING_MISSING")
        name = PROVIDER_NAMES.get(kind, tenant_pb2.LlmProvider.Name(kind))
        factory = self._factories.get(kind)
        if factory is None:
            raise FailedPrecondition(
                f"LLM provider {name} is not available in this deployment",
                reason="LLM_PROVIDER_NOT_AVAILABLE",
            )
        if not binding.api_key_secret_ref:
            raise FailedPrecondition(
                "the tenant's LLM binding has no API key reference", reason="LLM_BINDING_INVALID"
            )
        if binding.endpoint:  # the tenant's own endpoint; "" is the platform's (configuration)
            await check_connect(binding.endpoint, llm_spec_hosts(kind), self._egress, "llm")
        try:
            api_key = await self._secrets.get(binding.api_key_secret_ref)
        except FailedPrecondition as exc:
            # Chat calls come from members: they learn that the key failed, not its name.
            log.warning("llm key unreadable", tenant_id=tenant_id, error=str(exc))
            raise FailedPrecondition(
                f"the tenant's LLM API key secret cannot be read ({exc.reason})",
                reason=exc.reason,
                metadata={"binding": "llm"},
            ) from None
        config = ProviderConfig(
            endpoint=binding.endpoint or self._default_endpoints.get(kind, ""),
            api_key=api_key.get_secret_value(),
            api_version=binding.api_version or self._options.azure_default_api_version,
            max_retries=self._options.max_retries,
            timeout_seconds=self._options.timeout_seconds,
        )
        if not config.endpoint:
            raise FailedPrecondition(
                f"the tenant's {name} binding needs an endpoint", reason="LLM_BINDING_INVALID"
            )
        provider = factory(config)
        log.info("llm client built", tenant_id=tenant_id, provider=provider.name)
        return TenantLlm(tenant_id, binding, provider)

    async def close(self) -> None:
        await self.cache.close()

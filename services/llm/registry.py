"""Per-tenant provider clients, built from the tenant's LLM binding and cached.

A client is rebuilt when the directory's etag for the tenant changes (bindings or state
changed) or after the provider rejected its credentials (the secret may have been rotated).
A replaced client is closed after a grace period so calls still using it can finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition
from services.common.secrets import SecretResolver
from services.llm.config import LlmSettings
from services.llm.ports import ChatProvider, ProviderConfig, TenantResolver

log = structlog.get_logger("makoto.llm.registry")

ProviderFactory = Callable[[ProviderConfig], ChatProvider]

PROVIDER_NAMES: dict[int, str] = {
    tenant_pb2.LLM_PROVIDER_OPENAI: "openai",
    tenant_pb2.LLM_PROVIDER_AZURE_OPENAI: "azure_openai",
    tenant_pb2.LLM_PROVIDER_ANTHROPIC: "anthropic",
}


@dataclass
class TenantLlm:
    tenant_id: str
    etag: str
    binding: tenant_pb2.LlmBinding
    provider: ChatProvider


class ProviderRegistry:
    def __init__(
        self,
        tenants: TenantResolver,
        secrets: SecretResolver,
        factories: Mapping[int, ProviderFactory],
        *,
        default_endpoints: Mapping[int, str],
        options: LlmSettings,
    ) -> None:
        self._tenants = tenants
        self._secrets = secrets
        self._factories = dict(factories)
        self._default_endpoints = dict(default_endpoints)
        self._options = options
        self._entries: dict[str, TenantLlm] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Replaced clients waiting out their grace period.
        self._retiring: dict[asyncio.Task[None], ChatProvider] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, tenant_id: str) -> TenantLlm:
        """The tenant's provider (the tenant must be active: directory errors pass through)."""
        answer = await self._tenants.require_active(tenant_id)
        entry = self._entries.get(tenant_id)
        if entry is not None and entry.etag == answer.etag:
            return entry
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            entry = self._entries.get(tenant_id)
            if entry is not None and entry.etag == answer.etag:
                return entry
            fresh = await self._build(tenant_id, answer.etag, answer.bindings.llm, entry)
            self._entries[tenant_id] = fresh
            if entry is not None:
                self._retire(entry.provider)
            return fresh

    async def require_active(self, tenant_id: str) -> None:
        await self._tenants.require_active(tenant_id)

    def invalidate(self, tenant_id: str, provider: ChatProvider) -> None:
        """Forget the tenant's client if it is still `provider` (next call re-reads the secret)."""
        entry = self._entries.get(tenant_id)
        if entry is not None and entry.provider is provider:
            del self._entries[tenant_id]
            self._retire(provider)

    async def _build(
        self, tenant_id: str, etag: str, binding: tenant_pb2.LlmBinding, previous: TenantLlm | None
    ) -> TenantLlm:
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
        api_key = await self._secrets.get(binding.api_key_secret_ref)
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
        return TenantLlm(tenant_id, etag, binding, provider)

    def _retire(self, provider: ChatProvider) -> None:
        async def later() -> None:
            await asyncio.sleep(self._options.retired_client_grace_seconds)
            self._retiring.pop(task, None)
            with contextlib.suppress(Exception):
                await provider.close()

        task = asyncio.get_running_loop().create_task(later())
        self._retiring[task] = provider

    async def close(self) -> None:
        for task in self._retiring:
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        providers = [*self._retiring.values(), *(e.provider for e in self._entries.values())]
        self._retiring.clear()
        self._entries.clear()
        for provider in providers:
            with contextlib.suppress(Exception):
                await provider.close()

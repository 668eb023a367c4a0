"""Per-tenant provider clients: cached per directory etag, rebuilt on change, old ones closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.bindings.egress import EgressPolicy
from services.common.errors import FailedPrecondition, NotFound
from services.common.secrets import EnvSecretBackend, SecretResolver
from services.llm.adapters.openai_provider import OpenAIProvider, build_openai
from services.llm.config import LlmSettings
from services.llm.ports import ChatProvider, ProviderConfig
from services.llm.registry import ProviderRegistry, TenantLlm
from services.llm.server import FACTORIES, default_endpoints
from tests.support import make_settings
from tests.unit.llm.support import FixedTenants, llm_binding


class CountingFactory:
    def __init__(self) -> None:
        self.configs: list[ProviderConfig] = []
        self.built: list[OpenAIProvider] = []

    def __call__(self, config: ProviderConfig) -> ChatProvider:
        self.configs.append(config)
        provider = build_openai(config)
        self.built.append(provider)
        return provider


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> tuple[FixedTenants, CountingFactory, ProviderRegistry]:
    monkeypatch.setenv("MAKOTO_TEST_REGISTRY_KEY", "sk-registry-1")
    tenants = FixedTenants()
    factory = CountingFactory()
    registry = ProviderRegistry(
        tenants,
        SecretResolver({"env": EnvSecretBackend()}),
        {tenant_pb2.LLM_PROVIDER_OPENAI: factory},
        default_endpoints={tenant_pb2.LLM_PROVIDER_OPENAI: "http://127.0.0.1:9/v1"},
        options=LlmSettings(max_retries=3, timeout_seconds=7.0),
        egress=EgressPolicy(["h"]),  # a dev allow-list naming the test's one tenant endpoint host
    )
    tenants.put("acme", llm_binding(api_key_secret_ref="env://MAKOTO_TEST_REGISTRY_KEY", rpm_limit=5))
    return tenants, factory, registry


async def hold(registry: ProviderRegistry, tenant_id: str) -> TenantLlm:
    """One call's lease, returned after the call ended."""
    async with registry.lease(tenant_id) as tenant:
        await asyncio.sleep(0)
        return tenant


async def closed_soon(provider: Any) -> bool:
    for _ in range(50):
        if provider.is_closed():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_cached_until_the_etag_changes(
    parts: tuple[FixedTenants, CountingFactory, ProviderRegistry],
) -> None:
    tenants, factory, registry = parts
    first, second = await asyncio.gather(hold(registry, "acme"), hold(registry, "acme"))
    assert first is second and len(factory.built) == 1  # concurrent first calls build once
    config = factory.configs[0]
    assert (config.endpoint, config.api_key, config.max_retries, config.timeout_seconds) == (
        "http://127.0.0.1:9/v1",
        "sk-registry-1",
        3,
        7.0,
    )
    assert "sk-registry-1" not in repr(config) and "sk-registry-1" not in repr(first.provider)

    # New endpoint: a new client (limits live in the shared store, not in the client). The old
    # one stays open while a call still holds it, and closes after that call.
    async with registry.lease("acme") as running:
        tenants.put(
            "acme",
            llm_binding(
                api_key_secret_ref="env://MAKOTO_TEST_REGISTRY_KEY", rpm_limit=5, endpoint="http://h/v1"
            ),
        )
        rebuilt = await hold(registry, "acme")
        assert rebuilt.provider is not running.provider
        assert factory.configs[-1].endpoint == "http://h/v1"
        await asyncio.sleep(0.05)
        assert not running.provider.is_closed()  # a call still uses it
    assert await closed_soon(factory.built[0])  # closed after its last lease
    assert not factory.built[1].is_closed()

    # New limits: the binding the servicer reads them from is the new one.
    tenants.put("acme", llm_binding(api_key_secret_ref="env://MAKOTO_TEST_REGISTRY_KEY", rpm_limit=9))
    assert (await hold(registry, "acme")).binding.rpm_limit == 9
    await registry.close()
    assert all(p.is_closed() for p in factory.built)


async def test_invalidate_forces_a_rebuild(
    parts: tuple[FixedTenants, CountingFactory, ProviderRegistry],
) -> None:
    _, factory, registry = parts
    async with registry.lease("acme") as entry:
        registry.invalidate(entry)
    assert (await hold(registry, "acme")).provider is not entry.provider
    assert len(factory.built) == 2
    assert await closed_soon(entry.provider)
    await registry.close()


async def test_binding_problems_are_failed_preconditions(
    parts: tuple[FixedTenants, CountingFactory, ProviderRegistry],
) -> None:
    tenants, _, registry = parts
    cases = {
        "no-llm": (tenant_pb2.LlmBinding(), "no LLM binding"),
        # This registry wires only OpenAI: other kinds are "not available" (no silent fallback).
        "claude": (llm_binding(provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC), "anthropic is not available"),
        "no-ref": (llm_binding(api_key_secret_ref=""), "no API key reference"),
        # Secret failures reach members: the reason, never the reference's name.
        "bad-scheme": (llm_binding(api_key_secret_ref="vault://x"), "SECRET_SCHEME_UNSUPPORTED"),
        "unset-env": (llm_binding(api_key_secret_ref="env://MAKOTO_TEST_UNSET_VAR_X"), "SECRET_NOT_FOUND"),
        # Checked again when the client is built (DNS may have changed since bind time).
        "inside": (
            llm_binding(
                api_key_secret_ref="env://MAKOTO_TEST_REGISTRY_KEY", endpoint="http://127.0.0.1:9/v1"
            ),
            "points inside the platform",
        ),
        "elsewhere": (
            llm_binding(
                api_key_secret_ref="env://MAKOTO_TEST_REGISTRY_KEY", endpoint="https://evil.example/v1"
            ),
            "must be a host of api.openai.com",
        ),
    }
    for tenant, (binding, message) in cases.items():
        tenants.put(tenant, binding)
        with pytest.raises(FailedPrecondition, match=message) as caught:
            await hold(registry, tenant)
        assert "vault://x" not in caught.value.message and "UNSET_VAR" not in caught.value.message
    with pytest.raises(NotFound):
        await hold(registry, "nobody")
    await registry.close()


def test_default_endpoints_point_at_the_simulator(tmp_path: object) -> None:
    settings = make_settings(tmp_path, simulator_port=18090)  # type: ignore[arg-type]
    endpoints = default_endpoints(settings)
    assert endpoints[tenant_pb2.LLM_PROVIDER_OPENAI] == "http://127.0.0.1:18090/v1"
    assert endpoints[tenant_pb2.LLM_PROVIDER_AZURE_OPENAI] == "http://127.0.0.1:18090"
    assert endpoints[tenant_pb2.LLM_PROVIDER_ANTHROPIC] == "http://127.0.0.1:18090"
    assert set(FACTORIES) == {
        tenant_pb2.LLM_PROVIDER_OPENAI,
        tenant_pb2.LLM_PROVIDER_AZURE_OPENAI,
        tenant_pb2.LLM_PROVIDER_ANTHROPIC,
    }

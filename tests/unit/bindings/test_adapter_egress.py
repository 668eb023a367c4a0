"""The adapters check endpoints again when they build a client (DNS may answer differently
than at bind time): a stored binding pointing inside answers FAILED_PRECONDITION and is never
contacted, including an endpoint that only the resolved secret names (Azure connection string)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from makoto.tenant.v1 import tenant_pb2
from pydantic import SecretStr

from services.common.bindings.egress import EgressPolicy
from services.common.errors import FailedPrecondition
from services.llm.config import LlmSettings
from services.llm.registry import ProviderRegistry
from services.llm.server import FACTORIES
from services.storage.registry import AdapterContext, default_registry
from tests.support import make_settings
from tests.unit.bindings.trap import Trap, listening
from tests.unit.llm.support import FixedTenants, llm_binding

B = tenant_pb2
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Secrets:
    """A secret source (the port AdapterContext reads) holding fixed values."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    async def get(self, ref: str) -> SecretStr:
        return SecretStr(self.values[ref])


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with listening() as t:
        yield t


def ctx(tmp_path: Path, allow: list[str], secrets: dict[str, str] | None = None) -> AdapterContext:
    settings = make_settings(tmp_path / "home", egress_allow=allow)
    return AdapterContext("acme", settings, Secrets(secrets or {}))


async def test_object_endpoints_inside_are_refused_at_build(tmp_path: Path, trap: Trap) -> None:
    registry = default_registry()
    c = ctx(
        tmp_path,
        [],
        {
            "local://tenants/acme/s3": '{"access_key_id": "a", "secret_access_key": "b"}',
            "local://tenants/acme/blob": (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                f"BlobEndpoint=http://127.0.0.1:{trap.port}/devstoreaccount1;"
            ),
        },
    )
    s3 = B.ObjectStoreBinding(
        backend=B.OBJECT_BACKEND_S3,
        endpoint=f"http://localhost:{trap.port}",
        credentials_secret_ref="local://tenants/acme/s3",
        options={"auto_provision": "true"},  # would contact the endpoint at once if built
    )
    # The Blob endpoint comes from the secret's connection string only.
    blob = B.ObjectStoreBinding(
        backend=B.OBJECT_BACKEND_AZURE_BLOB,
        credentials_secret_ref="local://tenants/acme/blob",
        options={"auto_provision": "true"},
    )
    for binding in (s3, blob):
        with pytest.raises(FailedPrecondition) as caught:
            await registry.build_objects(c, binding)
        assert caught.value.reason == "BINDING_EGRESS_REFUSED"
        assert caught.value.metadata == {"binding": "object_store"}
        assert "a2V5" not in caught.value.message
    assert trap.connections == []


async def test_item_endpoints_inside_are_refused_at_build(tmp_path: Path, trap: Trap) -> None:
    registry = default_registry()
    c = ctx(tmp_path, [])
    for binding in (
        B.ItemStoreBinding(
            backend=B.ITEM_BACKEND_DYNAMODB,
            endpoint=f"http://[::1]:{trap.port}",
            options={"auto_provision": "true"},
        ),
        B.ItemStoreBinding(
            backend=B.ITEM_BACKEND_POSTGRES,
            endpoint=f"postgresql://app@localhost:{trap.port}/db",
            options={"auto_provision": "true"},
        ),
    ):
        with pytest.raises(FailedPrecondition) as caught:
            await registry.build_items(c, binding)
        assert caught.value.reason == "BINDING_EGRESS_REFUSED"
    assert trap.connections == []


async def test_the_allow_list_lets_the_emulator_through(tmp_path: Path, trap: Trap) -> None:
    registry = default_registry()
    c = ctx(tmp_path, [f"127.0.0.1:{trap.port}"])
    binding = B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint=f"http://127.0.0.1:{trap.port}")
    store = await registry.build_objects(c, binding)  # built (it connects lazily)
    await store.close()
    other = B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint=f"http://127.0.0.1:{trap.port + 1}")
    with pytest.raises(FailedPrecondition, match="loopback"):
        await registry.build_objects(c, other)


# -- LLM: services/llm/registry.py builds the provider client through the same check ----------


class CountingSecrets:
    """A secret source that records every reference read: a refused endpoint reads none."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def get(self, ref: str) -> SecretStr:
        self.reads.append(ref)
        return SecretStr("sk-never-sent")


def llm_registry(
    secrets: CountingSecrets, allow: list[str], resolver: Resolver | None = None
) -> tuple[FixedTenants, ProviderRegistry]:
    tenants = FixedTenants()
    registry = ProviderRegistry(
        tenants,
        secrets,  # type: ignore[arg-type]  # the SecretResolver port: get(ref)
        FACTORIES,
        default_endpoints={},
        options=LlmSettings(),
        egress=EgressPolicy(allow, resolver=resolver),
    )
    return tenants, registry


@pytest.mark.parametrize(
    ("provider", "endpoint"),
    [
        (B.LLM_PROVIDER_OPENAI, "http://127.0.0.1:{port}/v1"),
        (B.LLM_PROVIDER_OPENAI, "http://[::1]:{port}/v1"),
        (B.LLM_PROVIDER_OPENAI, "http://169.254.169.254/latest/meta-data"),
        (B.LLM_PROVIDER_AZURE_OPENAI, "https://10.0.0.7:{port}"),
        (B.LLM_PROVIDER_AZURE_OPENAI, "http://0.0.0.0:{port}"),
        (B.LLM_PROVIDER_ANTHROPIC, "http://192.168.1.20:{port}"),
        (B.LLM_PROVIDER_ANTHROPIC, "http://2130706433:{port}"),  # 127.0.0.1 spelled as a number
    ],
)
async def test_llm_endpoints_inside_are_refused_when_the_client_is_built(
    trap: Trap, provider: int, endpoint: str
) -> None:
    """A binding stored pointing inside (no dev allow-list) never gets a client: the registry
    answers FAILED_PRECONDITION before it reads the API key, and nothing is contacted."""
    secrets = CountingSecrets()
    tenants, registry = llm_registry(secrets, [])
    tenants.put(
        "acme",
        llm_binding(
            provider=provider,
            endpoint=endpoint.format(port=trap.port),
            api_key_secret_ref="local://tenants/acme/llm",
        ),
    )
    try:
        with pytest.raises(FailedPrecondition) as caught:
            async with registry.lease("acme"):
                pass
        assert caught.value.reason == "BINDING_EGRESS_REFUSED"
        assert caught.value.metadata == {"binding": "llm"}
        assert "sk-never-sent" not in caught.value.message
        assert secrets.reads == []  # the key was not even read, let alone sent
        assert len(registry) == 0
    finally:
        await registry.close()
    assert trap.connections == []


async def test_llm_provider_host_rebound_inside_is_refused() -> None:
    """A provider's own host name that DNS now answers with a private address (rebinding)."""

    async def rebound(host: str, port: int) -> list[str]:
        return ["10.1.2.3"]

    secrets = CountingSecrets()
    tenants, registry = llm_registry(secrets, [], rebound)
    tenants.put(
        "acme",
        llm_binding(
            provider=B.LLM_PROVIDER_AZURE_OPENAI,
            endpoint="https://acme.openai.azure.com",
            api_key_secret_ref="local://tenants/acme/llm",
        ),
    )
    try:
        with pytest.raises(FailedPrecondition, match="private") as caught:
            async with registry.lease("acme"):
                pass
        assert caught.value.reason == "BINDING_EGRESS_REFUSED"
        assert secrets.reads == []
    finally:
        await registry.close()


async def test_llm_allow_list_lets_the_simulator_through(trap: Trap) -> None:
    """The development allow-list is the one exception: the same loopback endpoint builds."""
    secrets = CountingSecrets()
    tenants, registry = llm_registry(secrets, [f"127.0.0.1:{trap.port}"])
    tenants.put(
        "acme",
        llm_binding(
            endpoint=f"http://127.0.0.1:{trap.port}/v1", api_key_secret_ref="local://tenants/acme/llm"
        ),
    )
    try:
        async with registry.lease("acme") as tenant:
            assert tenant.provider.name == "openai"
        assert secrets.reads == ["local://tenants/acme/llm"]
    finally:
        await registry.close()

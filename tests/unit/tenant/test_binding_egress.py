"""Bindings cannot point inside (SSRF): every loopback, link-local, private, unspecified or
oddly spelled endpoint is refused at bind time with INVALID_ARGUMENT and never contacted (a
listening socket counts connections); secret references outside the tenant are refused with
FAILED_PRECONDITION without echoing them; the allow-list names the one exception."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from tests.support import make_settings
from tests.unit.bindings.trap import Trap, listening
from tests.unit.tenant.conftest import TenantClient, error_info, field_violations, rpc_error

B = tenant_pb2


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with listening() as t:
        yield t


@pytest.fixture
async def allowed() -> AsyncIterator[Trap]:
    async with listening() as t:
        yield t


@pytest.fixture
def settings(tmp_path: Path, allowed: Trap) -> MeshSettings:
    """The allow-list names one loopback port only (`allowed`); the trap's port is not on it."""
    return make_settings(tmp_path / "home", egress_allow=[f"127.0.0.1:{allowed.port}"])


def bad_endpoints(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}",
        f"http://localhost:{port}",  # a name that resolves to loopback
        f"http://[::1]:{port}",
        f"http://0.0.0.0:{port}",
        f"http://2130706433:{port}",  # 127.0.0.1 as one decimal number
        f"http://0177.0.0.1:{port}",  # 127.0.0.1 in octal
        "http://169.254.169.254/latest/meta-data/",
        f"http://10.0.0.7:{port}",
    ]


def _bindings(kind: str, endpoint: str) -> tenant_pb2.TenantBindings:
    if kind == "llm":
        return B.TenantBindings(llm=B.LlmBinding(provider=B.LLM_PROVIDER_OPENAI, endpoint=endpoint))
    if kind == "object_store":
        return B.TenantBindings(
            object_store=B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint=endpoint, path_style=True)
        )
    return B.TenantBindings(item_store=B.ItemStoreBinding(backend=B.ITEM_BACKEND_DYNAMODB, endpoint=endpoint))


@pytest.mark.parametrize("kind", ["llm", "object_store", "item_store"])
async def test_endpoints_pointing_inside_are_refused_and_never_contacted(
    client: TenantClient, trap: Trap, kind: str
) -> None:
    for n, endpoint in enumerate(bad_endpoints(trap.port)):
        tenant_id = f"ssrf-{kind.replace('_', '-')}-{n}"
        err = await rpc_error(client.create(tenant_id, bindings=_bindings(kind, endpoint)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, endpoint
        violations = field_violations(err)
        assert list(violations) == [f"tenant.bindings.{kind}.endpoint"], (endpoint, violations)
        assert "refused" in violations[f"tenant.bindings.{kind}.endpoint"]
        assert (await rpc_error(client.get(tenant_id))).code() == grpc.StatusCode.NOT_FOUND
    assert trap.connections == []


async def test_postgres_dsn_naming_loopback_is_refused(client: TenantClient, trap: Trap) -> None:
    item = B.ItemStoreBinding(
        backend=B.ITEM_BACKEND_POSTGRES, endpoint=f"postgresql://app@localhost:{trap.port}/db"
    )
    err = await rpc_error(client.create("ssrf-pg", bindings=B.TenantBindings(item_store=item)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "loopback" in field_violations(err)["tenant.bindings.item_store.endpoint"]
    assert trap.connections == []


async def test_update_is_checked_like_create(client: TenantClient, trap: Trap) -> None:
    before = await client.create("ssrf-update")
    err = await rpc_error(
        client.tenants.UpdateTenant(
            B.UpdateTenantRequest(
                tenant=B.Tenant(
                    tenant_id="ssrf-update", bindings=_bindings("llm", f"http://[::1]:{trap.port}/v1")
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["bindings.llm"]),
            ),
            metadata=client.admin,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err)) == {"tenant.bindings.llm.endpoint"}
    assert await client.get("ssrf-update") == before
    assert trap.connections == []


async def test_provider_host_lists_hold(client: TenantClient) -> None:
    cases = {
        "llm": (
            B.LlmBinding(provider=B.LLM_PROVIDER_ANTHROPIC, endpoint="https://api.openai.com/v1"),
            "api.anthropic.com",
        ),
        "object_store": (
            B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_AZURE_BLOB, endpoint="https://acme.evil.example"),
            "*.blob.core.windows.net",
        ),
        "item_store": (
            B.ItemStoreBinding(backend=B.ITEM_BACKEND_COSMOS, endpoint="https://acme.example.com"),
            "*.documents.azure.com",
        ),
    }
    for kind, (binding, hosts) in cases.items():
        err = await rpc_error(
            client.create(f"hosts-{kind.replace('_', '-')}", bindings=B.TenantBindings(**{kind: binding}))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert hosts in field_violations(err)[f"tenant.bindings.{kind}.endpoint"]


async def test_the_allow_list_names_the_exception(client: TenantClient, allowed: Trap, trap: Trap) -> None:
    ok = await client.create("dev-sim", bindings=_bindings("llm", f"http://127.0.0.1:{allowed.port}/v1"))
    assert ok.bindings.llm.endpoint == f"http://127.0.0.1:{allowed.port}/v1"
    # Binding stores it; nothing connects at bind time.
    assert allowed.connections == [] and trap.connections == []


@pytest.mark.parametrize(
    "ref",
    [
        "local://tenants/globex/llm-key",  # another tenant's
        "local://tenants/scoped/../globex/llm-key",
        "aws-sm://makoto/globex/llm-key",
        "azure-kv://vault1/globex-llm-key",
        "local://llm-simulator-key",  # the platform's key, to a tenant endpoint
        "env://MAKOTO_AWS_SECRET_ACCESS_KEY",  # the service process's own configuration
    ],
)
async def test_secret_references_outside_the_tenant_are_refused(client: TenantClient, ref: str) -> None:
    llm = B.LlmBinding(
        provider=B.LLM_PROVIDER_OPENAI, endpoint="https://api.openai.com/v1", api_key_secret_ref=ref
    )
    err = await rpc_error(client.create("scoped", bindings=B.TenantBindings(llm=llm)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "SECRET_REF_OUT_OF_SCOPE"
    said = (err.details() or "").split("; use ")[0]
    assert ref not in said and ref not in str(dict(info.metadata))
    assert "tenant.bindings.llm.api_key_secret_ref" in said
    assert (await rpc_error(client.get("scoped"))).code() == grpc.StatusCode.NOT_FOUND


async def test_own_secret_references_are_accepted(client: TenantClient) -> None:
    for n, ref in enumerate(
        ["local://tenants/own-{}/llm-key", "aws-sm://makoto/own-{}/llm", "azure-kv://vault1/own-{}-llm"]
    ):
        tenant_id = f"own-{n}"
        llm = B.LlmBinding(
            provider=B.LLM_PROVIDER_OPENAI,
            endpoint="https://api.openai.com/v1",
            api_key_secret_ref=ref.format(n),
        )
        created = await client.create(tenant_id, bindings=B.TenantBindings(llm=llm))
        assert created.bindings.llm.api_key_secret_ref == ref.format(n)
    # The default LLM binding keeps the platform's simulator key (endpoint "": the platform's).
    default = await client.create("own-default")
    assert default.bindings.llm.api_key_secret_ref == "local://llm-simulator-key"

"""RevokeToken on TenantService when the revocation store is missing or down: a clear refusal
(FAILED_PRECONDITION / UNAVAILABLE), never an OK that revoked nothing."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.tenant.server import build
from tests.support import bearer, direct_channel, free_port, make_settings, running_server

Stub = tuple[str, tenant_pb2_grpc.TenantServiceStub, tuple[tuple[str, str], ...]]


@pytest.fixture(params=["none", "dead"])
async def stub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stub]:
    redis_url = "" if request.param == "none" else f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tmp_path / "home", redis_url=redis_url)
    url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    async with running_server(functools.partial(build, db_url=url, recorder_factory=None), settings):
        async with direct_channel(settings.address("tenant")) as channel:
            tenants = tenant_pb2_grpc.TenantServiceStub(channel)
            admin = bearer(settings, "platform-admin")
            await tenants.CreateTenant(
                tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="revoker")), metadata=admin
            )
            yield request.param, tenants, admin


async def test_without_a_working_store_revocation_is_refused(stub: Stub) -> None:
    kind, tenants, admin = stub
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenants.RevokeToken(
            tenant_pb2.RevokeTokenRequest(tenant_id="revoker", token_id="abc123"), metadata=admin
        )
    expected = grpc.StatusCode.FAILED_PRECONDITION if kind == "none" else grpc.StatusCode.UNAVAILABLE
    assert err.value.code() == expected, err.value.details()

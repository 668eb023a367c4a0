"""Who may call what on the tenant server (policies enforced by the shared interceptor)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from tests.unit.tenant.conftest import TenantClient, rpc_error

Metadata = tuple[tuple[str, str], ...]


def _admin_calls(client: TenantClient) -> list[Callable[[Metadata], Awaitable[Any]]]:
    t = client.tenants
    return [
        lambda md: t.CreateTenant(
            tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="victim-new")), metadata=md
        ),
        lambda md: t.ListTenants(tenant_pb2.ListTenantsRequest(), metadata=md),
        lambda md: t.UpdateTenant(
            tenant_pb2.UpdateTenantRequest(
                tenant=tenant_pb2.Tenant(tenant_id="victim", display_name="pwned")
            ),
            metadata=md,
        ),
        lambda md: t.SuspendTenant(tenant_pb2.SuspendTenantRequest(tenant_id="victim"), metadata=md),
        lambda md: t.ResumeTenant(tenant_pb2.ResumeTenantRequest(tenant_id="victim"), metadata=md),
        lambda md: t.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="victim"), metadata=md),
    ]


@pytest.mark.parametrize("role", ["member", "tenant-admin", "service"])
async def test_only_platform_admin_calls_admin_rpcs(client: TenantClient, role: str) -> None:
    before = await client.create("victim", display_name="Victim")
    md = {
        "member": client.member("victim"),
        "tenant-admin": client.tenant_admin("victim"),
        "service": client.service(),
    }[role]
    for call in _admin_calls(client):
        err = await rpc_error(call(md))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, role
    assert await client.get("victim") == before
    assert (await rpc_error(client.get("victim-new"))).code() == grpc.StatusCode.NOT_FOUND


async def test_no_token_is_unauthenticated(client: TenantClient) -> None:
    err = await rpc_error(client.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="abc")))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = await rpc_error(client.directory.ResolveTenant(directory_pb2.ResolveTenantRequest(tenant_id="abc")))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_tenant_users_read_only_their_own_tenant(client: TenantClient) -> None:
    await client.create("mine")
    await client.create("theirs")
    own = await client.tenants.GetTenant(
        tenant_pb2.GetTenantRequest(tenant_id="mine"), metadata=client.member("mine")
    )
    assert own.tenant_id == "mine"
    for md in (client.member("mine"), client.tenant_admin("mine")):
        err = await rpc_error(
            client.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="theirs"), metadata=md)
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # a tenant that does not exist looks the same to an outsider as one that does
    err = await rpc_error(
        client.tenants.GetTenant(
            tenant_pb2.GetTenantRequest(tenant_id="nonexistent"), metadata=client.member("mine")
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

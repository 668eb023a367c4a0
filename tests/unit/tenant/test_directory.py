"""TenantDirectoryService: what data-plane services learn about a tenant, and who may ask."""

from __future__ import annotations

import grpc
import pytest
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.dev_issuer import ServiceTokenSource
from services.common.directory_client import TenantDirectory
from services.common.errors import NotFound, PermissionDenied
from tests.unit.tenant.conftest import TenantClient, rpc_error


async def test_resolve_returns_state_bindings_features_plan_and_etag(client: TenantClient) -> None:
    created = await client.create("resolvable", features=["rag", "images"], price_plan_id="gold")
    resolved = await client.directory.ResolveTenant(
        directory_pb2.ResolveTenantRequest(tenant_id="resolvable"), metadata=client.service()
    )
    assert resolved.tenant_id == "resolvable"
    assert resolved.state == tenant_pb2.TENANT_STATE_ACTIVE
    assert resolved.bindings == created.bindings
    assert list(resolved.features) == ["rag", "images"]
    assert resolved.price_plan_id == "gold"
    assert resolved.etag == created.etag

    suspended = await client.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="resolvable"), metadata=client.admin
    )
    again = await client.directory.ResolveTenant(
        directory_pb2.ResolveTenantRequest(tenant_id="resolvable"), metadata=client.service()
    )
    assert again.state == tenant_pb2.TENANT_STATE_SUSPENDED
    assert again.etag == suspended.etag != created.etag


@pytest.mark.parametrize("role", ["member", "tenant-admin", "platform-admin"])
async def test_only_services_may_resolve(client: TenantClient, role: str) -> None:
    await client.create("secretive")
    md = {
        "member": client.member("secretive"),
        "tenant-admin": client.tenant_admin("secretive"),
        "platform-admin": client.admin,
    }[role]
    err = await rpc_error(
        client.directory.ResolveTenant(directory_pb2.ResolveTenantRequest(tenant_id="secretive"), metadata=md)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_and_deleted_tenants_are_not_found(client: TenantClient) -> None:
    await client.create("short-lived")
    await client.tenants.DeleteTenant(
        tenant_pb2.DeleteTenantRequest(tenant_id="short-lived"), metadata=client.admin
    )
    for tenant_id in ("never-was", "short-lived"):
        err = await rpc_error(
            client.directory.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id=tenant_id), metadata=client.service()
            )
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_shared_directory_client_against_the_real_server(client: TenantClient) -> None:
    """The client every data-plane service uses (services.common.directory_client)."""
    await client.create("dataplane")
    directory = TenantDirectory(
        client.settings.address("tenant"),
        ServiceTokenSource(client.settings, "storage", "tenant"),
        ttl_seconds=0,
    )
    try:
        active = await directory.require_active("dataplane")
        assert active.bindings.item_store.backend == tenant_pb2.ITEM_BACKEND_SQLITE
        await client.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="dataplane"), metadata=client.admin
        )
        with pytest.raises(PermissionDenied):
            await directory.require_active("dataplane")
        with pytest.raises(NotFound):
            await directory.resolve("nope-nope")
    finally:
        await directory.close()


async def test_directory_lookups_are_metered_for_the_platform(client: TenantClient) -> None:
    """A service's lookup of a tenant is the platform's cost: one api_calls event under the tenant
    with payer=platform and the calling service (never invoiced). A lookup of a tenant that does
    not exist records nothing (no usage under an id nobody owns), like a tenant's refused call."""
    from services.common.dev_issuer import mint_token
    from services.common.identity import Role, service_audience

    token = mint_token(
        client.settings,
        role=Role.SERVICE,
        subject="service:lookup-test",
        audience=service_audience(client.settings.audience, "tenant"),
    )
    md = (("authorization", f"Bearer {token}"),)
    await client.create("looked-up")
    for tenant_id in ("looked-up", "looked-up", "never-created"):
        try:
            await client.directory.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id=tenant_id), metadata=md
            )
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
    # Only this test's lookups (the tenant's creation may start lookups of its own).
    lookups = [e for e in client.recorder.events if e.get("caller") == "service:lookup-test"]
    assert [(e["meter"], e["tenant"], e["method"], e["status"], e["payer"]) for e in lookups] == [
        ("api_calls", "looked-up", "ResolveTenant", "OK", "platform"),
        ("api_calls", "looked-up", "ResolveTenant", "OK", "platform"),
    ]
    assert all(e["service"] == "tenant" for e in lookups), lookups

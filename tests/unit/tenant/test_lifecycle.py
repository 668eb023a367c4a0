"""A tenant's whole life on the real server, on both stores: create (provision), read, suspend,
resume, offboard; and what each state means for reads, users and the directory."""

from __future__ import annotations

import grpc
import pytest
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from tests.unit.tenant.conftest import TenantClient, error_info, rpc_error


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_full_lifecycle(client: TenantClient) -> None:
    t = client.tenants
    root = client.settings.data_dir / "tenants" / "acme"

    created = await client.create("acme", display_name="Acme", features=["beta"], price_plan_id="gold")
    assert created.state == tenant_pb2.TENANT_STATE_ACTIVE
    assert created.state_reason == ""
    assert created.cloud_provider == tenant_pb2.CLOUD_PROVIDER_LOCAL
    assert created.etag
    assert created.create_time.seconds > 0 and created.update_time.seconds > 0
    # default bindings (embedded defaults)
    assert created.bindings.object_store.backend == tenant_pb2.OBJECT_BACKEND_LOCAL
    assert created.bindings.item_store.backend == tenant_pb2.ITEM_BACKEND_SQLITE
    llm = created.bindings.llm
    assert llm.provider == tenant_pb2.LLM_PROVIDER_OPENAI
    assert (llm.endpoint, llm.chat_model, llm.embedding_model, llm.image_model) == (
        "",
        "sim-chat",
        "sim-embed",
        "sim-image",
    )
    assert llm.api_key_secret_ref == "local://llm-simulator-key"
    # local provisioning: the tenant's directory, objects/ and the item database
    assert (root / "objects").is_dir()
    assert (root / "items.sqlite3").is_file()

    # the tenant's own users read it; the stored copy equals what CreateTenant answered
    assert (
        await t.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="acme"), metadata=client.member("acme"))
        == created
    )

    suspended = await t.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="acme", reason="invoice overdue"), metadata=client.admin
    )
    assert suspended.state == tenant_pb2.TENANT_STATE_SUSPENDED
    assert suspended.state_reason == "invoice overdue"
    assert suspended.etag != created.etag
    # GetTenant still works while suspended, so the tenant can see why
    seen = await t.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="acme"), metadata=client.member("acme"))
    assert seen.state == tenant_pb2.TENANT_STATE_SUSPENDED
    # ... but no new users
    err = await rpc_error(
        t.InviteUser(
            tenant_pb2.InviteUserRequest(
                tenant_id="acme",
                user=tenant_pb2.TenantUser(email="new@acme.test", role=tenant_pb2.USER_ROLE_MEMBER),
            ),
            metadata=client.tenant_admin("acme"),
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err).reason == "TENANT_SUSPENDED"
    resolved = await client.directory.ResolveTenant(
        directory_pb2.ResolveTenantRequest(tenant_id="acme"), metadata=client.service()
    )
    assert resolved.state == tenant_pb2.TENANT_STATE_SUSPENDED

    resumed = await t.ResumeTenant(tenant_pb2.ResumeTenantRequest(tenant_id="acme"), metadata=client.admin)
    assert resumed.state == tenant_pb2.TENANT_STATE_ACTIVE
    assert resumed.state_reason == ""
    assert resumed.etag not in (created.etag, suspended.etag)

    deleted = await t.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="acme"), metadata=client.admin)
    assert deleted.state == tenant_pb2.TENANT_STATE_DELETED
    assert not root.exists()

    for call in (
        t.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="acme"), metadata=client.admin),
        t.SuspendTenant(tenant_pb2.SuspendTenantRequest(tenant_id="acme"), metadata=client.admin),
        t.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="acme"), metadata=client.admin),
        client.directory.ResolveTenant(
            directory_pb2.ResolveTenantRequest(tenant_id="acme"), metadata=client.service()
        ),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND

    listed = await t.ListTenants(tenant_pb2.ListTenantsRequest(), metadata=client.admin)
    assert [x.tenant_id for x in listed.tenants] == []
    listed = await t.ListTenants(tenant_pb2.ListTenantsRequest(show_deleted=True), metadata=client.admin)
    assert [(x.tenant_id, x.state) for x in listed.tenants] == [("acme", tenant_pb2.TENANT_STATE_DELETED)]

    # a deleted tenant's id stays taken: old tokens carry it
    err = await rpc_error(client.create("acme"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_tenant_rpcs_are_metered_for_the_tenant(client: TenantClient) -> None:
    await client.create("metered")
    await client.tenants.GetTenant(
        tenant_pb2.GetTenantRequest(tenant_id="metered"), metadata=client.member("metered")
    )
    calls = [e for e in client.recorder.events if e["meter"] == "api_calls" and e["tenant"] == "metered"]
    assert {e["method"] for e in calls} == {"CreateTenant", "GetTenant"}
    assert all(e["status"] == "OK" and e["value"] == 1 for e in calls)

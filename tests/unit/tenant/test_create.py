"""CreateTenant: idempotency by request_id, ALREADY_EXISTS, provisioning failure, input rules."""

from __future__ import annotations

import asyncio

import grpc
from makoto.tenant.v1 import tenant_pb2

from tests.unit.tenant.conftest import TenantClient, field_violations, rpc_error


async def test_same_request_id_returns_the_same_tenant(client: TenantClient) -> None:
    first = await client.create("idem", request_id="req-1", display_name="first")
    again = await client.create("idem", request_id="req-1", display_name="ignored on retry")
    assert again == first
    assert again.display_name == "first"

    # a retry after a later change returns the tenant as it is now, never a second tenant
    await client.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="idem"), metadata=client.admin
    )
    later = await client.create("idem", request_id="req-1")
    assert later.state == tenant_pb2.TENANT_STATE_SUSPENDED
    listed = await client.tenants.ListTenants(tenant_pb2.ListTenantsRequest(), metadata=client.admin)
    assert [t.tenant_id for t in listed.tenants] == ["idem"]


async def test_concurrent_retries_create_one_tenant(client: TenantClient) -> None:
    results = await asyncio.gather(*(client.create("racer", request_id="req-race") for _ in range(5)))
    assert {r.tenant_id for r in results} == {"racer"}
    final = await client.get("racer")
    assert final.state == tenant_pb2.TENANT_STATE_ACTIVE
    assert {r.create_time.ToDatetime() for r in results} == {final.create_time.ToDatetime()}


async def test_request_id_reused_for_another_tenant_is_refused(client: TenantClient) -> None:
    await client.create("first-one", request_id="req-x")
    err = await rpc_error(client.create("second-one", request_id="req-x"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(err)
    assert (await rpc_error(client.get("second-one"))).code() == grpc.StatusCode.NOT_FOUND


async def test_existing_id_without_or_with_another_request_id_is_already_exists(client: TenantClient) -> None:
    await client.create("taken", request_id="req-a")
    for request_id in ("", "req-b"):
        err = await rpc_error(client.create("taken", request_id=request_id, display_name="other"))
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "taken" in (err.details() or "")
    assert (await client.get("taken")).display_name == ""
    # the refused request_id stays free for its own tenant
    assert (await client.create("fresh", request_id="req-b")).state == tenant_pb2.TENANT_STATE_ACTIVE


async def test_failed_provisioning_leaves_a_failed_tenant_with_a_reason(client: TenantClient) -> None:
    tenants_dir = client.settings.data_dir / "tenants"
    tenants_dir.mkdir(parents=True, exist_ok=True)
    (tenants_dir / "broken").write_text("a file where the tenant's directory should go")

    created = await client.create("broken")
    assert created.state == tenant_pb2.TENANT_STATE_FAILED
    assert "provisioning failed" in created.state_reason
    assert str(client.settings.data_dir) not in created.state_reason  # no server paths leak
    assert (await client.get("broken")).state == tenant_pb2.TENANT_STATE_FAILED

    # FAILED can only be offboarded
    err = await rpc_error(
        client.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="broken"), metadata=client.admin
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    deleted = await client.tenants.DeleteTenant(
        tenant_pb2.DeleteTenantRequest(tenant_id="broken"), metadata=client.admin
    )
    assert deleted.state == tenant_pb2.TENANT_STATE_DELETED


async def test_output_only_fields_in_the_request_are_ignored(client: TenantClient) -> None:
    created = await client.create(
        "outputs", state=tenant_pb2.TENANT_STATE_DELETED, etag="mine", state_reason="set by caller"
    )
    assert created.state == tenant_pb2.TENANT_STATE_ACTIVE
    assert created.etag != "mine"
    assert created.state_reason == ""


async def test_given_fields_are_kept_and_features_deduplicated(client: TenantClient) -> None:
    created = await client.create(
        "kept",
        display_name="Kept Inc.",
        cloud_provider=tenant_pb2.CLOUD_PROVIDER_AWS,
        region="ap-northeast-1",
        features=["rag", "beta", "rag"],
        price_plan_id="enterprise",
    )
    assert (created.display_name, created.cloud_provider, created.region, created.price_plan_id) == (
        "Kept Inc.",
        tenant_pb2.CLOUD_PROVIDER_AWS,
        "ap-northeast-1",
        "enterprise",
    )
    assert list(created.features) == ["rag", "beta"]
    assert await client.get("kept") == created


async def test_contract_rules_refuse_bad_ids(client: TenantClient) -> None:
    for bad in ("", "ab", "Upper", "9lives", "a_b_c", "x" * 64):
        err = await rpc_error(client.create(bad))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "tenant.tenant_id" in field_violations(err), bad
    err = await rpc_error(
        client.tenants.CreateTenant(tenant_pb2.CreateTenantRequest(), metadata=client.admin)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

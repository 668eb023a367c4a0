"""UpdateTenant: update_mask, implied mask, etag (optimistic concurrency), immutable tenant_id,
and what states allow updates."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from tests.unit.tenant.conftest import TenantClient, error_info, field_violations, rpc_error


async def _update(
    client: TenantClient, tenant: tenant_pb2.Tenant, paths: list[str] | None = None
) -> tenant_pb2.Tenant:
    request = tenant_pb2.UpdateTenantRequest(tenant=tenant)
    if paths is not None:
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=paths))
    return await client.tenants.UpdateTenant(request, metadata=client.admin)


async def test_update_mask_changes_only_named_fields(client: TenantClient) -> None:
    before = await client.create("masked", display_name="Old", region="eu-west-1", features=["a"])
    after = await _update(
        client,
        tenant_pb2.Tenant(tenant_id="masked", display_name="New", region="", features=[], price_plan_id="p"),
        ["display_name", "price_plan_id"],
    )
    assert (after.display_name, after.price_plan_id) == ("New", "p")
    assert (after.region, list(after.features)) == ("eu-west-1", ["a"])  # not in the mask: untouched
    assert after.bindings == before.bindings
    assert after.etag != before.etag
    assert after.update_time.ToDatetime() >= before.update_time.ToDatetime()
    assert after.create_time == before.create_time
    assert await client.get("masked") == after

    # a masked field given empty is cleared
    cleared = await _update(client, tenant_pb2.Tenant(tenant_id="masked"), ["region", "features"])
    assert (cleared.region, list(cleared.features), cleared.display_name) == ("", [], "New")


async def test_without_mask_only_populated_fields_change(client: TenantClient) -> None:
    await client.create("implied", display_name="Keep", region="us-east-1", price_plan_id="gold")
    after = await _update(client, tenant_pb2.Tenant(tenant_id="implied", features=["x", "y"]))
    assert list(after.features) == ["x", "y"]
    assert (after.display_name, after.region, after.price_plan_id) == ("Keep", "us-east-1", "gold")


async def test_every_update_changes_the_etag_and_a_stale_etag_is_aborted(client: TenantClient) -> None:
    created = await client.create("etags")
    first = await _update(client, tenant_pb2.Tenant(tenant_id="etags", display_name="A", etag=created.etag))
    assert first.etag != created.etag
    same_again = await _update(client, tenant_pb2.Tenant(tenant_id="etags", display_name="A"))
    assert same_again.etag != first.etag

    err = await rpc_error(
        _update(client, tenant_pb2.Tenant(tenant_id="etags", display_name="B", etag=first.etag))
    )
    assert err.code() == grpc.StatusCode.ABORTED
    assert error_info(err).reason == "ETAG_MISMATCH"
    assert (await client.get("etags")).display_name == "A"

    err = await rpc_error(
        client.tenants.DeleteTenant(
            tenant_pb2.DeleteTenantRequest(tenant_id="etags", etag=created.etag), metadata=client.admin
        )
    )
    assert err.code() == grpc.StatusCode.ABORTED
    deleted = await client.tenants.DeleteTenant(
        tenant_pb2.DeleteTenantRequest(tenant_id="etags", etag=same_again.etag), metadata=client.admin
    )
    assert deleted.state == tenant_pb2.TENANT_STATE_DELETED


async def test_tenant_id_is_immutable_and_unknown_paths_are_refused(client: TenantClient) -> None:
    await client.create("fixed-id")
    err = await rpc_error(_update(client, tenant_pb2.Tenant(tenant_id="fixed-id"), ["tenant_id"]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err) == {"update_mask.paths[0]": "tenant_id is immutable"}

    err = await rpc_error(
        _update(
            client,
            tenant_pb2.Tenant(tenant_id="fixed-id"),
            ["display_name", "state", "bindings.llm.endpoint"],
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err)) == {"update_mask.paths[1]", "update_mask.paths[2]"}


async def test_update_of_unknown_or_deleted_tenant_is_not_found(client: TenantClient) -> None:
    err = await rpc_error(_update(client, tenant_pb2.Tenant(tenant_id="nobody", display_name="x")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    await client.create("gone")
    await client.tenants.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="gone"), metadata=client.admin)
    err = await rpc_error(_update(client, tenant_pb2.Tenant(tenant_id="gone", display_name="x")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_binding_updates_replace_one_binding_or_all(client: TenantClient) -> None:
    before = await client.create("rebind")
    s3 = tenant_pb2.ObjectStoreBinding(
        backend=tenant_pb2.OBJECT_BACKEND_S3,
        endpoint="http://127.0.0.1:9000",
        bucket="acme-bucket",
        path_style=True,
        credentials_secret_ref="local://tenants/rebind/minio-keys",
    )
    after = await _update(
        client,
        tenant_pb2.Tenant(
            tenant_id="rebind",
            bindings=tenant_pb2.TenantBindings(
                object_store=s3,
                llm=tenant_pb2.LlmBinding(provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC),
            ),
        ),
        ["bindings.object_store"],
    )
    assert after.bindings.object_store == s3
    assert after.bindings.llm == before.bindings.llm  # bindings.llm was not in the mask
    assert after.bindings.item_store == before.bindings.item_store

    resolved = await client.directory.ResolveTenant(
        directory_pb2.ResolveTenantRequest(tenant_id="rebind"), metadata=client.service()
    )
    assert resolved.bindings == after.bindings and resolved.etag == after.etag

    # the whole set: what is absent becomes the embedded default again
    reset = await _update(
        client,
        tenant_pb2.Tenant(
            tenant_id="rebind",
            bindings=tenant_pb2.TenantBindings(
                llm=tenant_pb2.LlmBinding(
                    provider=tenant_pb2.LLM_PROVIDER_AZURE_OPENAI,
                    endpoint="https://acme.openai.azure.com",
                    api_version="2024-10-21",
                    api_key_secret_ref="azure-kv://acme-vault/rebind-openai-key",
                )
            ),
        ),
        ["bindings"],
    )
    assert reset.bindings.object_store.backend == tenant_pb2.OBJECT_BACKEND_LOCAL
    assert reset.bindings.llm.provider == tenant_pb2.LLM_PROVIDER_AZURE_OPENAI


async def test_suspended_tenants_can_be_updated(client: TenantClient) -> None:
    await client.create("paused")
    await client.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="paused"), metadata=client.admin
    )
    updated = await _update(client, tenant_pb2.Tenant(tenant_id="paused", display_name="Paused"))
    assert updated.state == tenant_pb2.TENANT_STATE_SUSPENDED
    assert updated.display_name == "Paused"

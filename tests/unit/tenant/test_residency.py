"""Residency at bind time: a tenant's region against where its bindings keep data, on create and
on update (region or bindings), refused with INVALID_ARGUMENT / RESIDENCY_VIOLATION naming the
binding; nothing is stored or changed when refused."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import tenant_pb2

from tests.unit.tenant.conftest import TenantClient, error_info, field_violations, rpc_error

B = tenant_pb2


def _bindings(s3_region: str = "", blob_location: str = "", item_region: str = "") -> B.TenantBindings:
    out = B.TenantBindings()
    if s3_region:
        out.object_store.CopyFrom(B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, region=s3_region))
    if blob_location:
        out.object_store.CopyFrom(
            B.ObjectStoreBinding(
                backend=B.OBJECT_BACKEND_AZURE_BLOB,
                endpoint="https://acct.blob.core.windows.net",
                options={"location": blob_location},
            )
        )
    if item_region:
        out.item_store.CopyFrom(B.ItemStoreBinding(backend=B.ITEM_BACKEND_DYNAMODB, region=item_region))
    return out


async def test_bindings_outside_the_tenant_region_are_refused_at_create(client: TenantClient) -> None:
    err = await rpc_error(
        client.create(
            "res-jp", region="jp", bindings=_bindings(s3_region="us-east-1", item_region="ap-northeast-1")
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).reason == "RESIDENCY_VIOLATION"
    assert list(field_violations(err)) == ["tenant.bindings.object_store.region"]
    assert "outside the tenant's region (jp)" in field_violations(err)["tenant.bindings.object_store.region"]
    assert (await rpc_error(client.get("res-jp"))).code() == grpc.StatusCode.NOT_FOUND

    # An unknown location cannot show residency either.
    err = await rpc_error(
        client.create("res-jp", region="jp", bindings=_bindings(item_region="mars-north-1"))
    )
    assert list(field_violations(err)) == ["tenant.bindings.item_store.region"]


async def test_bindings_in_the_same_jurisdiction_are_accepted(client: TenantClient) -> None:
    # AWS Tokyo tenant with an Azure Japan East blob account and DynamoDB in Osaka: all Japan.
    created = await client.create(
        "res-tokyo",
        region="ap-northeast-1",
        bindings=_bindings(blob_location="japaneast", item_region="ap-northeast-3"),
    )
    assert created.state == B.TENANT_STATE_ACTIVE
    # No region: nothing to check (as before residency existed).
    assert (
        await client.create("res-none", bindings=_bindings(s3_region="eu-west-1"))
    ).state == B.TENANT_STATE_ACTIVE


async def test_moving_the_region_or_the_bindings_is_checked_too(client: TenantClient) -> None:
    await client.create("res-move", region="us", bindings=_bindings(s3_region="us-west-2"))
    err = await rpc_error(
        client.tenants.UpdateTenant(
            B.UpdateTenantRequest(
                tenant=B.Tenant(tenant_id="res-move", region="eu"),
                update_mask=field_mask_pb2.FieldMask(paths=["region"]),
            ),
            metadata=client.admin,
        )
    )
    assert error_info(err).reason == "RESIDENCY_VIOLATION"
    err = await rpc_error(
        client.tenants.UpdateTenant(
            B.UpdateTenantRequest(
                tenant=B.Tenant(tenant_id="res-move", bindings=_bindings(s3_region="eu-central-1")),
                update_mask=field_mask_pb2.FieldMask(paths=["bindings.object_store"]),
            ),
            metadata=client.admin,
        )
    )
    assert error_info(err).reason == "RESIDENCY_VIOLATION"
    after = await client.get("res-move")
    assert (after.region, after.bindings.object_store.region) == ("us", "us-west-2")

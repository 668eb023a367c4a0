"""Residency at bind time: a tenant's region against where its bindings keep data, on create and
on update (region or bindings), refused with FAILED_PRECONDITION / RESIDENCY_VIOLATION and a
PreconditionFailure violation naming each binding (outside the region, or no location shown),
for every backend kind: S3, Azure Blob, DynamoDB, Cosmos DB, PostgreSQL, and the LLM providers
(OpenAI / Anthropic by their binding's `region`, Azure OpenAI by a regional host or `region`);
nothing is stored or changed when refused."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition
from services.tenant import residency
from tests.unit.tenant.conftest import TenantClient, error_info, rpc_error

B = tenant_pb2


def violations(err: grpc.aio.AioRpcError) -> dict[str, tuple[str, str]]:
    """PreconditionFailure violations: subject (the binding's field) -> (type, description)."""
    status = rpc_status.from_call(err)
    assert status is not None
    out: dict[str, tuple[str, str]] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            out.update({v.subject: (v.type, v.description) for v in failure.violations})
    return out


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
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "RESIDENCY_VIOLATION"
    assert list(violations(err)) == ["tenant.bindings.object_store.region"]
    kind, text = violations(err)["tenant.bindings.object_store.region"]
    assert kind == "RESIDENCY_OUTSIDE_REGION" and "outside the tenant's region (jp)" in text
    assert (await rpc_error(client.get("res-jp"))).code() == grpc.StatusCode.NOT_FOUND

    # An unknown location cannot show residency either.
    err = await rpc_error(
        client.create("res-jp", region="jp", bindings=_bindings(item_region="mars-north-1"))
    )
    assert violations(err) == {
        "tenant.bindings.item_store.region": (
            "RESIDENCY_LOCATION_UNKNOWN",
            "location 'mars-north-1' is unknown: residency in jp cannot be shown",
        )
    }


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


def _cosmos(location: str = "") -> B.ItemStoreBinding:
    options = {"location": location} if location else {}
    return B.ItemStoreBinding(
        backend=B.ITEM_BACKEND_COSMOS, endpoint="https://acct.documents.azure.com", options=options
    )


async def test_cosmos_needs_a_location_in_the_tenants_region(client: TenantClient) -> None:
    at = "tenant.bindings.item_store.options[location]"
    # No location: residency cannot be shown (before: accepted silently).
    err = await rpc_error(
        client.create("cos-none", region="japaneast", bindings=B.TenantBindings(item_store=_cosmos()))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "RESIDENCY_VIOLATION"
    assert violations(err)[at][0] == "RESIDENCY_LOCATION_UNKNOWN"
    assert (await rpc_error(client.get("cos-none"))).code() == grpc.StatusCode.NOT_FOUND
    # Another zone: outside.
    err = await rpc_error(
        client.create("cos-eu", region="jp", bindings=B.TenantBindings(item_store=_cosmos("westeurope")))
    )
    assert violations(err)[at] == (
        "RESIDENCY_OUTSIDE_REGION",
        "location 'westeurope' is in eu, outside the tenant's region (jp)",
    )
    # An Azure location the table does not know.
    err = await rpc_error(
        client.create("cos-xx", region="jp", bindings=B.TenantBindings(item_store=_cosmos("atlantis")))
    )
    assert violations(err)[at][0] == "RESIDENCY_LOCATION_UNKNOWN"
    # Same zone: accepted.
    made = await client.create(
        "cos-jp", region="jp", bindings=B.TenantBindings(item_store=_cosmos("japanwest"))
    )
    assert made.state == B.TENANT_STATE_ACTIVE


async def test_postgres_and_s3_compatible_stores_state_their_location(client: TenantClient) -> None:
    pg = B.ItemStoreBinding(backend=B.ITEM_BACKEND_POSTGRES, endpoint="postgresql://127.0.0.1:5432/app")
    err = await rpc_error(client.create("pg-none", region="us", bindings=B.TenantBindings(item_store=pg)))
    assert violations(err)["tenant.bindings.item_store.options[location]"][0] == "RESIDENCY_LOCATION_UNKNOWN"
    pg.options["location"] = "us-east-2"
    minio = B.ObjectStoreBinding(
        backend=B.OBJECT_BACKEND_S3, endpoint="http://127.0.0.1:9000", options={"preset": "minio"}
    )
    err = await rpc_error(
        client.create("pg-minio", region="us", bindings=B.TenantBindings(item_store=pg, object_store=minio))
    )
    assert list(violations(err)) == ["tenant.bindings.object_store.options[location]"]
    minio.options["location"] = "eastus"
    made = await client.create(
        "pg-minio", region="us", bindings=B.TenantBindings(item_store=pg, object_store=minio)
    )
    assert made.state == B.TENANT_STATE_ACTIVE


def _llm(provider: int, endpoint: str, tenant: str, region: str = "", **extra: str) -> B.TenantBindings:
    return B.TenantBindings(
        llm=B.LlmBinding(
            provider=provider,
            endpoint=endpoint,
            api_key_secret_ref=f"local://tenants/{tenant}/llm-key",
            region=region,
            **extra,
        )
    )


async def test_openai_and_anthropic_are_accepted_only_with_a_matching_region(client: TenantClient) -> None:
    at = "tenant.bindings.llm.region"
    for provider, endpoint in (
        (B.LLM_PROVIDER_OPENAI, "https://api.openai.com/v1"),
        (B.LLM_PROVIDER_ANTHROPIC, "https://api.anthropic.com"),
    ):
        tid = f"llm-{provider}"
        # The host names no region: without the binding's region the call is refused.
        err = await rpc_error(client.create(tid, region="eu", bindings=_llm(provider, endpoint, tid)))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert violations(err)[at][0] == "RESIDENCY_LOCATION_UNKNOWN"
        err = await rpc_error(client.create(tid, region="eu", bindings=_llm(provider, endpoint, tid, "us")))
        assert violations(err)[at][0] == "RESIDENCY_OUTSIDE_REGION"
        made = await client.create(tid, region="eu", bindings=_llm(provider, endpoint, tid, "eu"))
        assert made.state == B.TENANT_STATE_ACTIVE and made.bindings.llm.region == "eu"


async def test_azure_openai_takes_its_region_from_the_binding(client: TenantClient) -> None:
    endpoint = "https://acme.openai.azure.com"
    tid = "aoai"
    azure = B.LLM_PROVIDER_AZURE_OPENAI
    err = await rpc_error(
        client.create(tid, region="japaneast", bindings=_llm(azure, endpoint, tid, api_version="2024-10-21"))
    )
    assert violations(err)["tenant.bindings.llm.region"][0] == "RESIDENCY_LOCATION_UNKNOWN"
    err = await rpc_error(
        client.create(
            tid, region="japaneast", bindings=_llm(azure, endpoint, tid, "eastus", api_version="2024-10-21")
        )
    )
    assert violations(err)["tenant.bindings.llm.region"][0] == "RESIDENCY_OUTSIDE_REGION"
    made = await client.create(
        tid, region="japaneast", bindings=_llm(azure, endpoint, tid, "japanwest", api_version="2024-10-21")
    )
    assert made.state == B.TENANT_STATE_ACTIVE
    # Moving the tenant's region later is checked against the LLM binding too.
    err = await rpc_error(
        client.tenants.UpdateTenant(
            B.UpdateTenantRequest(
                tenant=B.Tenant(tenant_id=tid, region="us"),
                update_mask=field_mask_pb2.FieldMask(paths=["region"]),
            ),
            metadata=client.admin,
        )
    )
    assert list(violations(err)) == ["tenant.bindings.llm.region"]


def test_regional_hosts_and_the_platforms_own_stores() -> None:
    """The rules without a server: a regional Azure OpenAI / Bedrock host names its region; the
    platform's own stores (LOCAL, SQLite, LLM endpoint "") are where MAKOTO_PLATFORM_REGION says,
    and pass unlocated in development only."""
    regional = B.TenantBindings(
        llm=B.LlmBinding(
            provider=B.LLM_PROVIDER_AZURE_OPENAI, endpoint="https://japaneast.api.cognitive.microsoft.com"
        )
    )
    residency.check("jp", regional)
    with pytest.raises(FailedPrecondition):
        residency.check("eu", regional)
    bedrock = B.TenantBindings(
        llm=B.LlmBinding(
            provider=B.LLM_PROVIDER_OPENAI, endpoint="https://bedrock-runtime.eu-west-1.amazonaws.com"
        )
    )
    residency.check("eu", bedrock)

    embedded = B.TenantBindings()  # every binding the platform's own
    residency.check("jp", embedded)  # development, no platform region: accepted
    with pytest.raises(FailedPrecondition) as refused:
        residency.check("jp", embedded, policy=residency.ResidencyPolicy(development=False))
    assert isinstance(refused.value, residency.ResidencyViolation)
    assert {f for _, f, _ in refused.value.problems} == {
        "tenant.bindings.object_store",
        "tenant.bindings.item_store",
        "tenant.bindings.llm",
    }
    in_us = residency.ResidencyPolicy(platform_region="us-east-1", development=False)
    residency.check("us", embedded, policy=in_us)
    with pytest.raises(FailedPrecondition):
        residency.check("jp", embedded, policy=in_us)

"""Bypassing Envoy: every service verifies the token itself. Missing, expired, wrong-issuer,
foreign-key, alg-none, HS256-with-the-public-key, wrong-audience, unknown-role and garbage tokens
are UNAUTHENTICATED on each of the four service ports — even when they claim platform-admin or
service — and the call they carried left nothing behind."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from makoto.llm.v1 import llm_pb2
from makoto.metering.v1 import metering_pb2
from makoto.storage.v1 import items_pb2, objects_pb2
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    BAD_TOKEN_KINDS,
    bad_token,
    bearer_md,
    create_tenant,
    error_info,
    files_containing,
    items_on_disk,
    object_keys_on_disk,
    refused,
    stubs,
    usage_by_method,
    wait_for_method,
)
from tests.support import client_stream, direct_channel

pytestmark = pytest.mark.e2e

UNAUTH = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def victim(mesh: RunningMesh) -> str:
    return create_tenant(mesh, "sec-tok")


def _upload(tenant: str, key: str, data: bytes) -> list[objects_pb2.UploadObjectRequest]:
    return [
        objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key=key)),
        objects_pb2.UploadObjectRequest(chunk=data),
    ]


async def _is_unauthenticated(call: object) -> None:
    err = await refused(call, UNAUTH)  # type: ignore[arg-type]
    assert error_info(err).reason == "UNAUTHENTICATED"


async def test_tenant_port(mesh: RunningMesh, victim: str) -> None:
    planted = [f"sec-forged-{uuid.uuid4().hex[:8]}" for _ in BAD_TOKEN_KINDS]
    async with direct_channel(mesh.address("tenant")) as channel:
        s = stubs(channel)
        for kind, tenant in zip(BAD_TOKEN_KINDS, planted, strict=True):
            admin = bearer_md(bad_token(mesh, kind, Role.PLATFORM_ADMIN, None))
            await _is_unauthenticated(
                s.tenants.CreateTenant(
                    tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=tenant)), metadata=admin
                )
            )
            await _is_unauthenticated(
                s.tenants.SuspendTenant(tenant_pb2.SuspendTenantRequest(tenant_id=victim), metadata=admin)
            )
            await _is_unauthenticated(s.tenants.ListTenants(tenant_pb2.ListTenantsRequest(), metadata=admin))
            service = bearer_md(bad_token(mesh, kind, Role.SERVICE, None))
            await _is_unauthenticated(
                s.directory.ResolveTenant(
                    directory_pb2.ResolveTenantRequest(tenant_id=victim), metadata=service
                )
            )
    # Nothing was created or suspended.
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        for tenant in planted:
            assert c.get(f"{API}/tenants/{tenant}").status_code == 404
        assert c.get(f"{API}/tenants/{victim}").json()["state"] == "TENANT_STATE_ACTIVE"
    assert not [p for p in planted if (mesh.settings.data_dir / "tenants" / p).exists()]


async def test_storage_port(mesh: RunningMesh, victim: str) -> None:
    marker = uuid.uuid4().hex.encode()
    async with direct_channel(mesh.address("storage")) as channel:
        s = stubs(channel)
        for kind in BAD_TOKEN_KINDS:
            md = bearer_md(bad_token(mesh, kind, Role.TENANT_ADMIN, victim))
            item = items_pb2.Item(
                collection="forged",
                partition_key=kind,
                sort_key="s",
                attributes={"m": items_pb2.AttributeValue(string_value=marker.decode())},
            )
            await _is_unauthenticated(
                s.storage.PutItem(items_pb2.PutItemRequest(tenant_id=victim, item=item), metadata=md)
            )
            await _is_unauthenticated(
                s.storage.GetItem(
                    items_pb2.GetItemRequest(
                        tenant_id=victim, collection="forged", partition_key=kind, sort_key="s"
                    ),
                    metadata=md,
                )
            )
            await _is_unauthenticated(
                client_stream(s.storage.UploadObject, _upload(victim, f"forged/{kind}.bin", marker), md)
            )

            async def download(md: tuple[tuple[str, str], ...] = md) -> None:
                async for _ in s.storage.DownloadObject(
                    objects_pb2.DownloadObjectRequest(tenant_id=victim, key="anything"), metadata=md
                ):
                    pass

            await _is_unauthenticated(download())
    assert items_on_disk(mesh, victim) == {}
    assert object_keys_on_disk(mesh, victim) == {}
    assert files_containing(mesh.settings.data_dir, marker) == []


async def test_llm_port(mesh: RunningMesh, victim: str) -> None:
    async with direct_channel(mesh.address("llm")) as channel:
        s = stubs(channel)
        for kind in BAD_TOKEN_KINDS:
            md = bearer_md(bad_token(mesh, kind, Role.MEMBER, victim))
            chat = llm_pb2.CreateChatCompletionRequest(
                tenant_id=victim, messages=[llm_pb2.ChatMessage(role="user", content="spend their tokens")]
            )
            await _is_unauthenticated(s.llm.CreateChatCompletion(chat, metadata=md))

            async def stream(
                md: tuple[tuple[str, str], ...] = md, chat: llm_pb2.CreateChatCompletionRequest = chat
            ) -> None:
                async for _ in s.llm.StreamChatCompletion(chat, metadata=md):
                    pass

            await _is_unauthenticated(stream())
            await _is_unauthenticated(
                s.llm.CreateEmbeddings(
                    llm_pb2.CreateEmbeddingsRequest(tenant_id=victim, input=["x"]), metadata=md
                )
            )
        # A sentinel through the same service and spool: once it is metered, anything the
        # refused calls might have recorded would be there too.
        await s.llm.ListModels(
            llm_pb2.ListModelsRequest(tenant_id=victim), metadata=mesh.metadata(Role.MEMBER, victim)
        )
    usage = await wait_for_method(mesh, victim, "ListModels")
    assert not {"CreateChatCompletion", "StreamChatCompletion", "CreateEmbeddings"} & set(usage), usage
    assert await usage_by_method(mesh, victim, "llm_prompt_tokens") == {}


async def test_metering_port(mesh: RunningMesh, victim: str) -> None:
    plan_id = f"forged-{uuid.uuid4().hex[:8]}"
    event_meter = f"forged_{uuid.uuid4().hex[:8]}"
    async with direct_channel(mesh.address("metering")) as channel:
        s = stubs(channel)
        for kind in BAD_TOKEN_KINDS:
            service = bearer_md(bad_token(mesh, kind, Role.SERVICE, None))
            event = metering_pb2.UsageEvent(
                id=f"{kind}-{uuid.uuid4().hex}",
                source="attacker",
                type=event_meter,
                subject=victim,
                value=10**9,
            )
            event.time.GetCurrentTime()
            await _is_unauthenticated(
                s.metering.RecordUsage(metering_pb2.RecordUsageRequest(events=[event]), metadata=service)
            )
            admin = bearer_md(bad_token(mesh, kind, Role.PLATFORM_ADMIN, None))
            await _is_unauthenticated(
                s.metering.SetPricePlan(
                    metering_pb2.SetPricePlanRequest(
                        plan=metering_pb2.PricePlan(
                            plan_id=plan_id,
                            currency="USD",
                            prices=[metering_pb2.MeterPrice(meter="api_calls", unit_price="0")],
                        )
                    ),
                    metadata=admin,
                )
            )
            member = bearer_md(bad_token(mesh, kind, Role.MEMBER, victim))
            await _is_unauthenticated(
                s.metering.GetInvoice(
                    metering_pb2.GetInvoiceRequest(tenant_id=victim, month="2026-01"), metadata=member
                )
            )
        real_admin = mesh.metadata(Role.PLATFORM_ADMIN)
        await refused(
            s.metering.GetPricePlan(metering_pb2.GetPricePlanRequest(plan_id=plan_id), metadata=real_admin),
            grpc.StatusCode.NOT_FOUND,
        )
        default = await s.metering.GetPricePlan(
            metering_pb2.GetPricePlanRequest(plan_id="default"), metadata=real_admin
        )
        assert {p.meter: p.unit_price for p in default.prices}["api_calls"] == "0.0001"
    # RecordUsage stores synchronously: a forged event would be visible right away.
    assert await usage_by_method(mesh, victim, event_meter) == {}

"""Token lifetime and audience rules at the edge: Envoy refuses a token living longer than the
platform's maximum (as the services do), and a service token never gets through Envoy."""

from __future__ import annotations

import grpc
import httpx
import pytest
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.dev_issuer import mint_token
from services.common.identity import Role
from tests.e2e.envoy_spy import SpyMesh
from tests.support import bearer

pytestmark = pytest.mark.e2e

ITEM = "/api/v1/tenants/acme/collections/notes/partitions/p1/items/s1"


async def test_too_long_lived_token_is_refused_at_envoy(envoy_spy: SpyMesh) -> None:
    settings = envoy_spy.settings
    envoy_spy.rec.clear()
    longest = settings.max_token_ttl_seconds
    too_long = mint_token(settings, role=Role.MEMBER, tenant_id="acme", ttl_seconds=longest + 60)
    just_right = mint_token(settings, role=Role.MEMBER, tenant_id="acme", ttl_seconds=longest)
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as c:
        assert (await c.get(ITEM, headers={"authorization": f"Bearer {too_long}"})).status_code == 401
        assert envoy_spy.rec.calls == []
        assert (await c.get(ITEM, headers={"authorization": f"Bearer {just_right}"})).status_code == 200
    request = items_pb2.GetItemRequest(
        tenant_id="acme", collection="notes", partition_key="p1", sort_key="s1"
    )
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(request, metadata=(("authorization", f"Bearer {too_long}"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert envoy_spy.rec.methods() == ["GetItem"]  # only the REST call with the good token


async def test_service_token_is_refused_at_envoy(envoy_spy: SpyMesh) -> None:
    """Its audience is `<audience>:<service>`, which Envoy's provider does not accept."""
    envoy_spy.rec.clear()
    headers = dict(bearer(envoy_spy.settings, Role.SERVICE))
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as c:
        r = await c.get(ITEM, headers=headers)
        assert r.status_code in (401, 403)
    assert envoy_spy.rec.calls == []

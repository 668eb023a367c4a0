"""StorageService with its limits' Redis stopped mid-run (a redis-server of the test's own): the
documented fallback happens — calls keep working, each replica enforces the tenant's limits on
its own, nothing crashes — and the shared store is used again once Redis is back."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from services.common.limits.counters import FALLBACKS
from services.common.limits.model import Limits, Rate
from services.storage.server import build
from services.storage.tenants import StaticTenantResolver
from tests.limits_support import FixedLimits, fixed_limits_parts
from tests.redis_support import PrivateRedis
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.storage.conftest import MemoryRecorder

pytestmark = pytest.mark.timeout(60)


async def codes(
    stub: storage_service_pb2_grpc.StorageServiceStub, md: object, n: int
) -> list[grpc.StatusCode]:
    request = items_pb2.GetItemRequest(tenant_id="acme", collection="c", partition_key="p", sort_key="s")
    out = []
    for _ in range(n):
        try:
            await stub.GetItem(request, metadata=md)
            out.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as err:
            out.append(err.code())
    return out


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


async def test_calls_keep_working_and_stay_limited_without_redis(tmp_path: Path, redis: PrivateRedis) -> None:
    settings = make_settings(tmp_path / "home", redis_url=redis.url)
    limits = FixedLimits({"acme": Limits(api=Rate(0.2, 4))})
    server = functools.partial(
        build,
        recorder=MemoryRecorder(),
        resolver=StaticTenantResolver({"acme": None}),
        limits=fixed_limits_parts(settings, limits),
    )
    async with running_server(server, settings):
        async with direct_channel(settings.address("storage")) as channel:
            stub = storage_service_pb2_grpc.StorageServiceStub(channel)
            md = bearer(settings, Role.MEMBER, "acme")
            await stub.PutItem(
                items_pb2.PutItemRequest(
                    tenant_id="acme", item=items_pb2.Item(collection="c", partition_key="p", sort_key="s")
                ),
                metadata=md,
            )
            # Shared store up: 3 more of the burst of 4, then refused.
            assert await codes(stub, md, 4) == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
            redis.stop()
            await asyncio.sleep(5.5)  # the shared refusal's retry time (1 per 5 s) has passed
            before = FALLBACKS.labels(op="acquire")._value.get()
            # Redis gone: this replica's own bucket starts full (4), then refuses. Never INTERNAL,
            # never unlimited.
            got = await codes(stub, md, 6)
            assert got == [grpc.StatusCode.OK] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2, got
            assert FALLBACKS.labels(op="acquire")._value.get() > before
            # Redis back on the same port: the shared store is used again (after the 2 s pause).
            redis.start()
            await asyncio.sleep(2.5)
            limits.table["acme"] = Limits(api=Rate(100, 100))
            after = FALLBACKS.labels(op="acquire")._value.get()
            assert await codes(stub, md, 3) == [grpc.StatusCode.OK] * 3
            assert FALLBACKS.labels(op="acquire")._value.get() == after

"""A caller's deadline bounds a backend call: the client gets DEADLINE_EXCEEDED and the
server cancels the backend request instead of leaving it running.

The backend is a real HTTP server on loopback that accepts the DynamoDB / S3 request and never
answers (a hung backend); the SDKs (aioboto3) talk to it for real.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from aiohttp import web
from grpc_status import rpc_status
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2
from pydantic import SecretStr

from services.common.identity import Role
from services.storage.server import build
from services.storage.tenants import StaticTenantResolver
from tests.limits_support import FixedLimits, fixed_limits_parts
from tests.support import bearer, direct_channel, free_port, make_settings, running_server
from tests.unit.storage.conftest import MemoryRecorder


@dataclass
class HungBackend:
    """Accepts requests and never answers; records requests started and requests abandoned."""

    started: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        label = f"{request.method} {request.path} {request.headers.get('x-amz-target', '')}".strip()
        self.started.append(label)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client closes the connection.
            self.abandoned.append(label)
            raise
        return web.Response(status=500)

    async def start(self) -> HungBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Secrets:
    async def get(self, ref: str) -> SecretStr:
        return SecretStr("AKIDEXAMPLE:not-a-real-secret")


@pytest.fixture
async def hung_storage(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[HungBackend, object, object]]:
    backend = await HungBackend().start()
    endpoint = f"http://127.0.0.1:{backend.port}"
    bindings = tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=endpoint,
            region="us-east-1",
            bucket="hung-bucket",
            path_style=True,
            credentials_secret_ref="local://hung",
            options={"connect_timeout_seconds": "30", "read_timeout_seconds": "60"},
        ),
        item_store=tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_DYNAMODB,
            endpoint=endpoint,
            region="us-east-1",
            credentials_secret_ref="local://hung",
            options={"read_timeout_seconds": "60"},
        ),
    )
    settings = make_settings(tmp_path_factory.mktemp("deadline") / "home")
    resolver = StaticTenantResolver({"slowpoke": bindings})
    server_build = functools.partial(
        build,
        recorder=MemoryRecorder(),
        resolver=resolver,
        secrets=Secrets(),
        limits=fixed_limits_parts(settings, FixedLimits()),
    )
    try:
        async with running_server(server_build, settings):
            async with direct_channel(settings.address("storage")) as channel:
                stub = storage_service_pb2_grpc.StorageServiceStub(channel)
                yield backend, stub, bearer(settings, Role.MEMBER, "slowpoke")
    finally:
        await backend.stop()


async def _wait_for(predicate: object, seconds: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_item_call_past_its_deadline_is_cancelled_at_the_backend(hung_storage: tuple) -> None:
    backend, stub, md = hung_storage
    request = items_pb2.GetItemRequest(tenant_id="slowpoke", collection="c", partition_key="p", sort_key="s")
    started = asyncio.get_running_loop().time()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(request, metadata=md, timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert asyncio.get_running_loop().time() - started < 5  # not the SDK's 60 s read timeout
    assert await _wait_for(lambda: len(backend.started) >= 1)
    # The server cancelled the backend request: its connection was dropped, long before the
    # 60 s read timeout would have ended it.
    assert await _wait_for(lambda: len(backend.abandoned) == len(backend.started))
    assert any("GetItem" in label for label in backend.abandoned), backend.abandoned


async def test_object_call_past_its_deadline_is_cancelled_at_the_backend(hung_storage: tuple) -> None:
    backend, stub, md = hung_storage
    request = objects_pb2.GetObjectMetadataRequest(tenant_id="slowpoke", key="a.txt")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetObjectMetadata(request, metadata=md, timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await _wait_for(lambda: any(s.startswith("HEAD") for s in backend.started))
    assert await _wait_for(lambda: any(s.startswith("HEAD") for s in backend.abandoned)), backend.abandoned


@pytest.fixture
async def capped_storage(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[HungBackend, object, object]]:
    """The hung backend again, on a server whose default deadline is 0.5 s and cap 1 s."""
    backend = await HungBackend().start()
    bindings = tenant_pb2.TenantBindings(
        item_store=tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_DYNAMODB,
            endpoint=f"http://127.0.0.1:{backend.port}",
            region="us-east-1",
            credentials_secret_ref="local://hung",
            options={"read_timeout_seconds": "60"},
        ),
    )
    settings = make_settings(
        tmp_path_factory.mktemp("capped") / "home",
        deadline_default_seconds={"storage": 0.5},
        deadline_max_seconds={"storage": 1.0},
    )
    resolver = StaticTenantResolver({"slowpoke": bindings})
    server_build = functools.partial(build, recorder=MemoryRecorder(), resolver=resolver, secrets=Secrets())
    try:
        async with running_server(server_build, settings):
            async with direct_channel(settings.address("storage")) as channel:
                stub = storage_service_pb2_grpc.StorageServiceStub(channel)
                yield backend, stub, bearer(settings, Role.MEMBER, "slowpoke")
    finally:
        await backend.stop()


GET = items_pb2.GetItemRequest(tenant_id="slowpoke", collection="c", partition_key="p", sort_key="s")


async def test_a_call_without_a_deadline_gets_the_service_default(capped_storage: tuple) -> None:
    """A REST call through Envoy without grpc-timeout, or a script that forgot one."""
    backend, stub, md = capped_storage
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(GET, metadata=md)  # no timeout
    took = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.4 < took < 1.5, took
    # The server's answer (with ErrorInfo), not a local client timeout.
    status = rpc_status.from_call(err.value)
    assert status is not None and "deadline" in status.message
    assert await _wait_for(lambda: len(backend.abandoned) == len(backend.started) >= 1)


async def test_a_client_deadline_longer_than_the_cap_is_capped(capped_storage: tuple) -> None:
    _, stub, md = capped_storage
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(GET, metadata=md, timeout=3600)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.9 < time.monotonic() - started < 2.0

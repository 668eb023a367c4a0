"""build() without injected tenants resolves bindings through the real TenantDirectory client
(service token, gRPC) — here against a small directory server started by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import grpc
import pytest
from aiohttp import web
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2

from services.common.config import MeshSettings
from services.common.secrets import SecretResolver
from services.llm.server import build
from services.llm.simulator import SIMULATOR_KEY_NAME
from tests.support import bearer, bind_tls, direct_channel, running_server
from tests.unit.llm.conftest import SIM_KEY
from tests.unit.llm.support import MemoryRecorder, llm_binding


class Directory(directory_pb2_grpc.TenantDirectoryServiceServicer):
    def __init__(self) -> None:
        self.answers: dict[str, directory_pb2.ResolveTenantResponse] = {}
        self.callers: list[str] = []

    async def ResolveTenant(
        self, request: directory_pb2.ResolveTenantRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.ResolveTenantResponse:
        self.callers.append(dict(context.invocation_metadata() or ()).get("authorization", ""))
        answer = self.answers.get(request.tenant_id)
        if answer is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such tenant")
        return answer


@pytest.fixture
async def directory(
    simulator_settings: tuple[MeshSettings, web.AppRunner],
) -> AsyncIterator[Directory]:
    settings, _ = simulator_settings
    servicer = Directory()
    server = grpc.aio.server()
    directory_pb2_grpc.add_TenantDirectoryServiceServicer_to_server(servicer, server)
    bind_tls(server, settings.address("tenant"), "tenant")
    await server.start()
    try:
        yield servicer
    finally:
        await server.stop(0)


async def test_chat_through_the_tenant_directory(
    simulator_settings: tuple[MeshSettings, web.AppRunner], directory: Directory
) -> None:
    settings, _ = simulator_settings
    secrets = SecretResolver.for_settings(settings)
    secrets.set(SIMULATOR_KEY_NAME, SIM_KEY)
    for tenant, state in (
        ("dir-ok", tenant_pb2.TENANT_STATE_ACTIVE),
        ("dir-paused", tenant_pb2.TENANT_STATE_SUSPENDED),
    ):
        directory.answers[tenant] = directory_pb2.ResolveTenantResponse(
            tenant_id=tenant, state=state, bindings=tenant_pb2.TenantBindings(llm=llm_binding()), etag="1"
        )
    recorder = MemoryRecorder()
    async with (
        running_server(partial(build, recorder=recorder, secrets=secrets), settings),
        direct_channel(settings.address("llm")) as channel,
    ):
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        request = llm_pb2.CreateChatCompletionRequest(
            tenant_id="dir-ok", messages=[llm_pb2.ChatMessage(role="user", content="via directory")]
        )
        answer = await stub.CreateChatCompletion(request, metadata=bearer(settings, "member", "dir-ok"))
        assert answer.choices[0].message.content == "Echo: via directory"

        paused = request.__class__(tenant_id="dir-paused", messages=request.messages)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateChatCompletion(paused, metadata=bearer(settings, "member", "dir-paused"))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

        missing = request.__class__(tenant_id="dir-gone", messages=request.messages)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateChatCompletion(missing, metadata=bearer(settings, "member", "dir-gone"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert recorder.started and recorder.closed
    assert directory.callers and all(c.startswith("Bearer ") for c in directory.callers)  # service token

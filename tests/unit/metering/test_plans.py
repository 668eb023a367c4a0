"""DirectoryPlanResolver against a real gRPC TenantDirectoryService (a small one defined here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2

from services.common.dev_issuer import ServiceTokenSource
from services.common.directory_client import TenantDirectory
from services.common.errors import Unavailable
from services.metering.plans import DirectoryPlanResolver, FixedPlanResolver
from tests.support import bind_tls, free_port, make_settings


class Directory(directory_pb2_grpc.TenantDirectoryServiceServicer):
    def __init__(self) -> None:
        self.plans = {"gold-tenant": "gold", "plain-tenant": ""}
        self.callers: list[str] = []

    async def ResolveTenant(
        self, request: directory_pb2.ResolveTenantRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.ResolveTenantResponse:
        self.callers.append(dict(context.invocation_metadata() or ()).get("authorization", ""))
        if request.tenant_id not in self.plans:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such tenant")
        return directory_pb2.ResolveTenantResponse(
            tenant_id=request.tenant_id,
            state=tenant_pb2.TENANT_STATE_ACTIVE,
            price_plan_id=self.plans[request.tenant_id],
        )


@pytest.fixture
async def directory() -> AsyncIterator[tuple[str, Directory]]:
    servicer = Directory()
    server = grpc.aio.server()
    directory_pb2_grpc.add_TenantDirectoryServiceServicer_to_server(servicer, server)
    port = bind_tls(server, f"127.0.0.1:{free_port()}", "tenant")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


async def test_directory_plan_resolver(directory: tuple[str, Directory], tmp_path: Path) -> None:
    address, servicer = directory
    settings = make_settings(tmp_path / "home")
    client = TenantDirectory(address, ServiceTokenSource(settings, "metering", "tenant"), ttl_seconds=60)
    try:
        resolver = DirectoryPlanResolver(client)
        assert await resolver.plan_id_for("gold-tenant") == "gold"
        assert await resolver.plan_id_for("plain-tenant") == "default"
        assert await resolver.plan_id_for("unknown-tenant") == "default"
        # it called with a service token
        assert servicer.callers and all(c.startswith("Bearer ") for c in servicer.callers)
    finally:
        await client.close()


async def test_directory_down_is_unavailable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    client = TenantDirectory(f"127.0.0.1:{free_port()}", ServiceTokenSource(settings, "metering", "tenant"))
    try:
        with pytest.raises(Unavailable):
            await DirectoryPlanResolver(client).plan_id_for("any-tenant")
    finally:
        await client.close()


async def test_fixed_plan_resolver() -> None:
    resolver = FixedPlanResolver({"a-tenant": "gold"})
    resolver.assign("b-tenant", "silver")
    got: list[Any] = [await resolver.plan_id_for(t) for t in ("a-tenant", "b-tenant", "c-tenant")]
    assert got == ["gold", "silver", "default"]

"""Fixtures for the TenantService tests: the real server in-process (SQLite or PostgreSQL store),
generated stubs, tokens per role, and a PostgreSQL database per test on 127.0.0.1:5432."""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.tenant.v1 import directory_pb2_grpc, tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.common.usage import AUDIT
from services.tenant.server import build
from tests.support import bearer, direct_channel, running_server

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_RUN = uuid.uuid4().hex[:8]
_counter = itertools.count()

T = TypeVar("T")


class MemoryRecorder:
    """In-memory UsageRecorder (a real implementation of the port) to observe metering."""

    def __init__(self) -> None:
        self.audit: list[dict[str, str]] = []
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def record(
        self,
        *,
        meter: str,
        tenant_id: str,
        value: int,
        dimensions: Mapping[str, str] | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> None:
        if meter == AUDIT:  # audit events are kept apart: tests count usage in `events`
            self.audit.append({"tenant": tenant_id, **(dimensions or {})})
            return
        self.events.append({"meter": meter, "tenant": tenant_id, "value": value, **(dimensions or {})})

    async def close(self) -> None:
        return None


@pytest.fixture(scope="session")
async def pg_admin() -> AsyncIterator[str]:
    """A PostgreSQL server must answer at 127.0.0.1:5432 (user postgres, trust auth)."""
    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except Exception as exc:
        pytest.fail(
            f"TenantService PostgreSQL tests need a PostgreSQL server at {PG_ADMIN_DSN} "
            f"(user postgres, trust auth); connecting failed: {exc!r}",
            pytrace=False,
        )
    await conn.close()
    yield PG_ADMIN_DSN


@pytest.fixture
async def pg_url(pg_admin: str) -> AsyncIterator[str]:
    """A fresh, uniquely named database for one test, dropped afterwards."""
    name = f"makoto_tenant_test_{_RUN}_{next(_counter)}"
    conn = await asyncpg.connect(pg_admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        conn = await asyncpg.connect(pg_admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, settings: MeshSettings) -> str:
    """Store URL; tests parametrize it indirectly with "postgres" to run on PostgreSQL too."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"


@dataclass
class TenantClient:
    """Stubs on a running tenant server plus role-scoped call metadata."""

    settings: MeshSettings
    tenants: tenant_pb2_grpc.TenantServiceStub
    directory: directory_pb2_grpc.TenantDirectoryServiceStub
    recorder: MemoryRecorder
    _admin: tuple[tuple[str, str], ...] = field(default=())

    @property
    def admin(self) -> tuple[tuple[str, str], ...]:
        if not self._admin:
            self._admin = bearer(self.settings, Role.PLATFORM_ADMIN)
        return self._admin

    def tenant_admin(self, tenant_id: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, Role.TENANT_ADMIN, tenant_id)

    def member(self, tenant_id: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, Role.MEMBER, tenant_id)

    def service(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, Role.SERVICE)

    async def create(self, tenant_id: str, request_id: str = "", **fields: Any) -> tenant_pb2.Tenant:
        return await self.tenants.CreateTenant(
            tenant_pb2.CreateTenantRequest(
                tenant=tenant_pb2.Tenant(tenant_id=tenant_id, **fields), request_id=request_id
            ),
            metadata=self.admin,
        )

    async def get(self, tenant_id: str) -> tenant_pb2.Tenant:
        return await self.tenants.GetTenant(
            tenant_pb2.GetTenantRequest(tenant_id=tenant_id), metadata=self.admin
        )


@pytest.fixture
async def client(settings: MeshSettings, db_url: str) -> AsyncIterator[TenantClient]:
    recorder = MemoryRecorder()
    server = functools.partial(
        build, db_url=db_url, recorder_factory=lambda _s: recorder, usage_eraser_factory=None
    )
    async with running_server(server, settings):
        channel = direct_channel(settings.address("tenant"))
        try:
            yield TenantClient(
                settings=settings,
                tenants=tenant_pb2_grpc.TenantServiceStub(channel),
                directory=directory_pb2_grpc.TenantDirectoryServiceStub(channel),
                recorder=recorder,
            )
        finally:
            await channel.close()


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call ends with (fails the test if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def field_violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field violations of an error, field -> description."""
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    out: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo detail")

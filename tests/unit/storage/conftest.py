"""StorageService on a real in-process gRPC server with local bindings (no TenantService):
generated stubs, tokens per tenant, an in-memory UsageRecorder."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.storage.v1 import storage_service_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.common.usage import AUDIT
from services.storage.server import build
from services.storage.tenants import StaticTenantResolver
from tests.limits_support import FixedLimits, fixed_limits_parts
from tests.support import bearer, direct_channel, make_settings, running_server

TENANTS = ("acme", "globex", "meter-co")


class MemoryRecorder:
    """In-memory UsageRecorder: a real implementation of the port, for assertions."""

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

    def storage(self, tenant: str) -> list[tuple[int, str]]:
        return [
            (e["value"], e["backend"])
            for e in self.events
            if e["meter"] == "storage_bytes" and e["tenant"] == tenant
        ]


@dataclass
class Storage:
    settings: MeshSettings
    stub: storage_service_pb2_grpc.StorageServiceStub
    recorder: MemoryRecorder
    resolver: StaticTenantResolver
    limits: FixedLimits = field(default_factory=FixedLimits)
    tokens: dict[tuple[str, Role], tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def md(self, tenant: str = "acme", role: Role = Role.MEMBER) -> tuple[tuple[str, str], ...]:
        # Minting signs with RSA (tens of ms): one token per tenant and role is plenty.
        key = (tenant, role)
        if key not in self.tokens:
            self.tokens[key] = bearer(self.settings, role, tenant)
        return self.tokens[key]

    def tenant_root(self, tenant: str) -> Path:
        return self.settings.data_dir / "tenants" / tenant


@pytest.fixture(scope="module")
async def storage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Storage]:
    settings = make_settings(tmp_path_factory.mktemp("storage") / "home")
    recorder = MemoryRecorder()
    resolver = StaticTenantResolver({t: None for t in TENANTS})  # local bindings
    limits = FixedLimits()
    server_build = functools.partial(
        build, recorder=recorder, resolver=resolver, limits=fixed_limits_parts(settings, limits)
    )
    async with running_server(server_build, settings):
        async with direct_channel(
            settings.address("storage"),
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.max_send_message_length", 8 * 1024 * 1024),
            ],
        ) as channel:
            yield Storage(
                settings, storage_service_pb2_grpc.StorageServiceStub(channel), recorder, resolver, limits
            )


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status")


def bad_request(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields

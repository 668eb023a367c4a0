"""Asks MeteringService to erase a tenant's usage (EraseTenantUsage, internal, service token)."""

from __future__ import annotations

from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common import tls
from services.common.config import MeshSettings
from services.common.dev_issuer import ServiceTokenSource
from services.common.trace_context import client_interceptors


class MeteringUsageEraser:
    def __init__(self, settings: MeshSettings) -> None:
        self._tokens = ServiceTokenSource(settings, "tenant", "metering")
        # mTLS as TenantService (EraseTenantUsage is internal: a service peer only).
        self._channel = tls.open_channel(
            settings, "metering", identity="tenant", interceptors=client_interceptors()
        )
        self._stub = metering_pb2_grpc.MeteringServiceStub(self._channel)

    async def erase(self, tenant_id: str) -> tuple[list[str], int]:
        reply = await self._stub.EraseTenantUsage(
            metering_pb2.EraseTenantUsageRequest(tenant_id=tenant_id),
            metadata=self._tokens.metadata(),
            timeout=60,
            wait_for_ready=True,
        )
        return list(reply.invoices_kept), int(reply.usage_events_erased)

    async def close(self) -> None:
        await self._channel.close()

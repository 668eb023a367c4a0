"""Data-plane services resolve a tenant's state and bindings through TenantDirectoryService.

Answers are cached briefly (TTL) and concurrent first lookups of one tenant share one call.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2

from services.common import deadline
from services.common.dev_issuer import ServiceTokenSource
from services.common.errors import FailedPrecondition, NotFound, PermissionDenied, Unavailable


class TenantDirectory:
    def __init__(self, address: str, tokens: ServiceTokenSource, ttl_seconds: float = 5.0) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = directory_pb2_grpc.TenantDirectoryServiceStub(self._channel)
        self._tokens = tokens
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, directory_pb2.ResolveTenantResponse]] = {}
        self._inflight: dict[str, asyncio.Future[directory_pb2.ResolveTenantResponse]] = {}

    async def resolve(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        hit = self._cache.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        pending = self._inflight.get(tenant_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[directory_pb2.ResolveTenantResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[tenant_id] = future
        try:
            answer = await self._fetch(tenant_id)
            self._cache[tenant_id] = (time.monotonic(), answer)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(tenant_id, None)

    async def _fetch(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        try:
            answer: directory_pb2.ResolveTenantResponse = await self._stub.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id=tenant_id),
                metadata=self._tokens.metadata(),
                timeout=deadline.timeout(5.0),  # never longer than the call it serves
            )
            return answer
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND") from err
            raise Unavailable("tenant directory unavailable") from err

    async def require_active(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        """Resolve and insist the tenant may use the data plane right now."""
        answer = await self.resolve(tenant_id)
        if answer.state == tenant_pb2.TENANT_STATE_ACTIVE:
            return answer
        if answer.state == tenant_pb2.TENANT_STATE_SUSPENDED:
            raise PermissionDenied(f"tenant {tenant_id} is suspended", reason="TENANT_SUSPENDED")
        if answer.state in (tenant_pb2.TENANT_STATE_DELETED, tenant_pb2.TENANT_STATE_DELETING):
            raise NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND")
        state = tenant_pb2.TenantState.Name(answer.state)
        raise FailedPrecondition(f"tenant {tenant_id} is not active ({state})", reason="TENANT_NOT_ACTIVE")

    def invalidate(self, tenant_id: str) -> None:
        self._cache.pop(tenant_id, None)

    async def close(self) -> None:
        await self._channel.close(None)

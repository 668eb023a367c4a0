"""A data-plane replica's view of each tenant's effective limits, from MeteringService.

Answers are cached for a few seconds and then refreshed in the background while the cached
answer keeps serving; when MeteringService cannot be asked, the last answer is served for up to
`max_stale_seconds`, and a tenant never seen gets the safe DEFAULTS (logged, retried after a
TTL). Only a tenant's first call waits for an answer (at most 0.5 s). Concurrent first lookups
of one tenant share one call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc
import structlog
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common import deadline, tls
from services.common.dev_issuer import ServiceTokenSource
from services.common.errors import MakotoError
from services.common.limits.model import EffectiveLimits
from services.common.trace_context import client_interceptors

log = structlog.get_logger("makoto.limits")

Fetch = Callable[[str], Awaitable[metering_pb2.TenantLimits]]


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


class TenantLimitsCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl_seconds: float = 5.0,
        max_stale_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        # tenant -> (fetched at, next fetch at, limits); a failed fetch postpones the next one by
        # a TTL so a MeteringService outage costs one timeout per tenant per TTL, not per call.
        self._entries: dict[str, tuple[float, float, EffectiveLimits]] = {}
        self._inflight: dict[str, asyncio.Task[EffectiveLimits]] = {}

    async def get(self, tenant_id: str) -> EffectiveLimits:
        hit = self._entries.get(tenant_id)
        if hit is not None and self._ttl > 0:  # ttl 0: no caching, every call asks
            if self._clock() >= hit[1] and tenant_id not in self._inflight:
                # Expired: answer from what we have and refresh in the background, so a slow or
                # absent MeteringService never adds latency to a known tenant's calls.
                self._start(tenant_id)
            return hit[2]
        return await asyncio.shield(self._inflight.get(tenant_id) or self._start(tenant_id))

    def _start(self, tenant_id: str) -> asyncio.Task[EffectiveLimits]:
        task = asyncio.get_running_loop().create_task(self._load(tenant_id))
        self._inflight[tenant_id] = task
        task.add_done_callback(lambda _t: self._inflight.pop(tenant_id, None))
        return task

    async def _load(self, tenant_id: str) -> EffectiveLimits:
        try:
            answer = EffectiveLimits.from_proto(await self._fetch(tenant_id))
        except (TimeoutError, grpc.aio.AioRpcError, MakotoError, OSError) as exc:
            now = self._clock()
            hit = self._entries.get(tenant_id)
            if hit is not None and now - hit[0] < self._max_stale:
                self._entries[tenant_id] = (hit[0], now + self._ttl, hit[2])
                return hit[2]
            log.warning(
                "tenant limits unavailable: using the safe defaults", tenant_id=tenant_id, error=str(exc)
            )
            fallback = EffectiveLimits.fallback(tenant_id, current_month())
            self._entries[tenant_id] = (now - self._max_stale, now + self._ttl, fallback)
            return fallback
        now = self._clock()
        self._entries[tenant_id] = (now, now + self._ttl, answer)
        return answer

    def invalidate(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)


class MeteringLimitsClient:
    """Fetches TenantLimits from MeteringService with a service token."""

    def __init__(self, tokens: ServiceTokenSource) -> None:
        self._channel = tls.open_channel(
            tokens.settings, "metering", identity=tokens.service_name, interceptors=client_interceptors()
        )
        metadata = tokens.metadata
        self._stub = metering_pb2_grpc.MeteringServiceStub(self._channel)
        self._metadata = metadata

    async def __call__(self, tenant_id: str) -> metering_pb2.TenantLimits:
        answer: metering_pb2.TenantLimits = await self._stub.GetTenantLimits(
            metering_pb2.GetTenantLimitsRequest(tenant_id=tenant_id),
            metadata=self._metadata(),
            timeout=deadline.timeout(0.5),  # never longer than the call it serves
        )
        return answer

    async def close(self) -> None:
        await self._channel.close(None)

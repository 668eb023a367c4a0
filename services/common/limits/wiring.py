"""Building the limits parts of a server from settings (one place for every service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.common.config import MeshSettings
from services.common.limits.api_rates import ApiRateLimiter
from services.common.limits.counters import SharedCounters
from services.common.limits.tenant_limits import Fetch, MeteringLimitsClient, TenantLimitsCache


@dataclass
class LimitsParts:
    counters: SharedCounters
    cache: TenantLimitsCache
    # None when API rate limits are switched off (MAKOTO_API_RATE_LIMITS=false, benchmarks).
    api: ApiRateLimiter | None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def build_limits(settings: MeshSettings, service: str, fetch: Fetch | None = None) -> LimitsParts:
    """fetch: how to get a tenant's TenantLimits; default: ask MeteringService."""
    counters = SharedCounters(settings.redis_url or None, prefix=settings.redis_prefix)
    closers: list[Callable[[], Awaitable[None]]] = []
    if fetch is None:
        from services.common.dev_issuer import ServiceTokenSource

        client = MeteringLimitsClient(ServiceTokenSource(settings, service, "metering"))
        fetch = client
        closers.append(client.close)
    closers.append(counters.close)
    cache = TenantLimitsCache(fetch, ttl_seconds=settings.limits_cache_ttl_seconds)
    api = ApiRateLimiter(counters, cache) if settings.api_rate_limits else None
    return LimitsParts(counters, cache, api, closers)

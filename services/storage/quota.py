"""Storage limits of a tenant: the largest object and the total stored object bytes.

Stored bytes are a running total in the shared store (every replica adds the deltas it meters),
raised to MeteringService's durable balance whenever the tenant's limits are refreshed. A write
is refused as soon as it is known to cross a limit: before any content when the size is
declared (content_length, PutObjectContent), else at the chunk that crosses it; the adapter
then aborts, so nothing is stored and nothing is billed. Concurrent uploads of one tenant are
each checked against the total when they start plus their own bytes, so together they can pass
the quota by at most what they carry in flight (documented in the README).
"""

from __future__ import annotations

from services.common.errors import ResourceExhausted
from services.common.limits.counters import SharedCounters
from services.common.limits.keys import STORED_TTL_SECONDS, stored_bytes_key
from services.common.limits.model import EffectiveLimits
from services.common.limits.tenant_limits import TenantLimitsCache

QUOTA_EXCEEDED = "STORAGE_QUOTA_EXCEEDED"
TOO_LARGE = "OBJECT_TOO_LARGE"


class QuotaGuard:
    """Counts one write's bytes against the limits it started with."""

    def __init__(self, tenant_id: str, max_object: int, quota: int, used: int, replacing: int) -> None:
        self._tenant = tenant_id
        self._max_object = max_object
        self._quota = quota
        self._used = used
        self._replacing = replacing
        self.size = 0

    def check(self, size: int) -> None:
        if size > self._max_object:
            raise ResourceExhausted(
                f"object is larger than the tenant's limit of {self._max_object} bytes",
                reason=TOO_LARGE,
                retry_after_seconds=None,
                metadata={"limit_bytes": str(self._max_object)},
            )
        if self._used - self._replacing + size > self._quota:
            raise ResourceExhausted(
                f"tenant {self._tenant} would exceed its storage quota of {self._quota} bytes",
                reason=QUOTA_EXCEEDED,
                retry_after_seconds=None,
                metadata={"quota_bytes": str(self._quota), "used_bytes": str(self._used)},
            )

    def add(self, n: int) -> None:
        self.size += n
        self.check(self.size)


class StorageQuota:
    def __init__(self, counters: SharedCounters, limits: TenantLimitsCache) -> None:
        self._counters = counters
        self._limits = limits
        self._floored: dict[str, EffectiveLimits] = {}

    async def guard(self, tenant_id: str, *, replacing: int, declared: int | None) -> QuotaGuard:
        eff = await self._limits.get(tenant_id)
        key = stored_bytes_key(self._counters, tenant_id)
        if self._floored.get(tenant_id) is not eff:
            self._floored[tenant_id] = eff
            used = await self._counters.raise_to(key, eff.storage_bytes_used, STORED_TTL_SECONDS)
        else:
            (used,) = await self._counters.get([key])
        limits = eff.limits
        assert limits.max_object_bytes is not None and limits.storage_quota_bytes is not None
        guard = QuotaGuard(tenant_id, limits.max_object_bytes, limits.storage_quota_bytes, used, replacing)
        if declared is not None:
            guard.check(declared)
        return guard

    async def stored(self, tenant_id: str, delta: int) -> None:
        """A write or delete changed the tenant's stored bytes by delta."""
        if delta:
            await self._counters.add(
                [stored_bytes_key(self._counters, tenant_id)], [delta], STORED_TTL_SECONDS
            )

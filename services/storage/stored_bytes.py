"""What follows a change of a tenant's stored object bytes: the running quota total, the
storage_bytes usage delta, and the reconciler's worklist. None of them fails the write that
caused it (it happened; the totals heal at the next refresh or reconciliation)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from services.common.usage import STORAGE_BYTES, UsageRecorder
from services.storage.quota import StorageQuota

log = structlog.get_logger("makoto.storage")


class StoredBytes:
    def __init__(
        self,
        recorder: UsageRecorder | None = None,
        quota: StorageQuota | None = None,
        tenant_seen: Callable[[str], None] | None = None,
    ) -> None:
        self._recorder = recorder
        self._quota = quota
        # Told of every tenant whose stored bytes change (the reconciler's worklist).
        self._tenant_seen = tenant_seen

    async def changed(self, tenant_id: str, backend: str, delta: int) -> None:
        if self._tenant_seen is not None:
            self._tenant_seen(tenant_id)
        if delta == 0:
            return
        if self._quota is not None:
            try:
                await self._quota.stored(tenant_id, delta)
            except Exception:  # the write happened; the running total heals at the next refresh
                log.exception("stored bytes update failed", tenant_id=tenant_id)
        if self._recorder is None:
            return
        try:
            await self._recorder.record(
                meter=STORAGE_BYTES, tenant_id=tenant_id, value=delta, dimensions={"backend": backend}
            )
        except Exception:  # metering never fails the write it measures
            log.exception("storage_bytes record failed", tenant_id=tenant_id)

"""Storage billed from the truth: reconcile metered storage_bytes with what backends store.

Between runs, storage_bytes is the fast estimate: each write records its size delta. Deltas can
drift (racing writers on one key, a process killed between the object commit and the spool
commit). A reconciliation run, per tenant:

1. sweeps the backend's orphans when it has any (local store: dead uploads' temp files,
   blobs renamed before their index commit);
2. sums the sizes in the backend's own listing: the bytes stored (the snapshot);
3. waits until this process's spool has delivered its deltas, then reads the metered balance
   (the sum of every storage_bytes event) from MeteringService;
4. records the difference as one storage_bytes event with dimension reason=reconciliation
   (and backend, stored_bytes): from that instant on the metered level equals the snapshot.

GB-month integrates the level, so between snapshots the deltas count and at each snapshot the
level is reset to the truth; an earlier (possibly closed) month is never rewritten. Corrections
are queryable like any usage: QueryUsage meter=storage_bytes group_by=reason.

Exact when no write of the tenant lands between steps 2 and 3; one that does makes the
correction off by at most its size, and the next run corrects that.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common import tls
from services.common.config import MeshSettings
from services.common.dev_issuer import ServiceTokenSource
from services.common.usage import STORAGE_BYTES, UsageRecorder
from services.storage.connections import TenantConnections
from services.storage.ports import ObjectStore, OrphanSweep, OrphanSweeper

log = structlog.get_logger("makoto.storage.reconcile")

RECONCILIATION = "reconciliation"
LIST_PAGE = 1000
# Longest a run waits for this process's spool to deliver before reading the balance.
FLUSH_WAIT_SECONDS = 30.0


class MeteredBalance(Protocol):
    async def storage_balance(self, tenant_id: str) -> int:
        """The sum of every storage_bytes event of the tenant (the metered level now)."""
        ...


class MeteringBalance:
    """MeteredBalance from MeteringService.QueryUsage, with a service token."""

    def __init__(self, settings: MeshSettings) -> None:
        self._tokens = ServiceTokenSource(settings, "storage", "metering")
        self._channel = tls.open_channel(settings, "metering", identity="storage")
        self._stub = metering_pb2_grpc.MeteringServiceStub(self._channel)

    async def storage_balance(self, tenant_id: str) -> int:
        request = metering_pb2.QueryUsageRequest(tenant_id=tenant_id, meter=STORAGE_BYTES)
        request.start_time.FromDatetime(datetime(1970, 1, 1, tzinfo=UTC))
        # Past now: an event stamped this very microsecond is included.
        request.end_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
        reply = await self._stub.QueryUsage(request, metadata=self._tokens.metadata(), timeout=30)
        return sum(row.value for row in reply.rows)

    async def close(self) -> None:
        await self._channel.close()


@dataclass(frozen=True)
class Reconciliation:
    tenant_id: str
    backend: str
    stored_bytes: int
    metered_bytes: int
    swept: OrphanSweep | None

    @property
    def correction(self) -> int:
        return self.stored_bytes - self.metered_bytes


async def snapshot(store: ObjectStore) -> tuple[int, OrphanSweep | None]:
    """(bytes the backend's own listing shows, what its orphan sweep removed first)."""
    swept = await store.sweep_orphans() if isinstance(store, OrphanSweeper) else None
    stored, token = 0, ""
    while True:
        page = await store.list("", LIST_PAGE, token)
        stored += sum(o.size for o in page.objects)
        token = page.next_page_token
        if not token:
            return stored, swept


class StorageReconciler:
    def __init__(
        self,
        connections: TenantConnections,
        recorder: UsageRecorder,
        balance: MeteredBalance,
        *,
        interval_seconds: float,
    ) -> None:
        self._connections = connections
        self._recorder = recorder
        self._balance = balance
        self._interval = interval_seconds
        # Tenants whose objects this process touched since it started: the ones it reconciles.
        self._tenants: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def note(self, tenant_id: str) -> None:
        self._tenants.add(tenant_id)

    async def reconcile(self, tenant_id: str) -> Reconciliation:
        async with self._connections.objects(tenant_id) as lease:
            stored, swept = await snapshot(lease.store)
            backend = lease.backend
        await self._flush()
        metered = await self._balance.storage_balance(tenant_id)
        result = Reconciliation(tenant_id, backend, stored, metered, swept)
        if result.correction:
            await self._recorder.record(
                meter=STORAGE_BYTES,
                tenant_id=tenant_id,
                value=result.correction,
                dimensions={"backend": backend, "reason": RECONCILIATION, "stored_bytes": str(stored)},
            )
            log.warning(
                "storage_bytes corrected",
                tenant_id=tenant_id,
                backend=backend,
                stored_bytes=stored,
                metered_bytes=metered,
                correction=result.correction,
            )
        return result

    async def _flush(self) -> None:
        """Until this process's deltas spooled so far reached MeteringService (bounded)."""
        delivered = getattr(self._recorder, "delivered", None)
        if delivered is not None:
            async with asyncio.timeout(FLUSH_WAIT_SECONDS):  # TimeoutError: postponed to the next run
                await delivered()

    async def run_once(self) -> list[Reconciliation]:
        done: list[Reconciliation] = []
        for tenant_id in sorted(self._tenants):
            try:
                done.append(await self.reconcile(tenant_id))
            except Exception as exc:  # one tenant's backend being down must not stop the others
                log.warning(
                    "reconciliation failed", tenant_id=tenant_id, error=f"{type(exc).__name__}: {exc}"
                )
        return done

    async def start(self) -> None:
        if self._interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run_forever(), name="storage-reconcile")

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.run_once()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

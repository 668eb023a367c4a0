"""OffboardTenant as a long-running operation (kind OFFBOARD), in two halves:

1. OffboardTenant: the tenant becomes OFFBOARDING (journal step `offboard.suspend`): the data
   plane refuses its calls from then on (the directory's state check, as for SUSPENDED). The
   export (`offboard.export`) then runs in the background: the tenant's objects and items, read
   through the storage adapters, into one archive in the export location (export.py). The
   operation's metadata carries the archive's size, sha256 and a signed, expiring download link
   for the tenant-admin (links.py), valid while the tenant is OFFBOARDING.
2. DeleteTenant on the OFFBOARDING tenant: erasure (erasure.py), the tenant DELETED, the
   operation SUCCEEDED.

Why two halves and not one call: the archive must be downloadable before anything is erased, and
only the platform-admin (after the customer confirms the download) decides that erasure may go
ahead. A TenantService killed during the export resumes it at start-up (recover()); one killed
during erasure resumes that (TenantManager.recover, the tenant is DELETING).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition, NotFound
from services.tenant.model import State, TenantRecord
from services.tenant.offboarding.erasure import OFFBOARD
from services.tenant.offboarding.export import (
    ExportSummary,
    TenantExporter,
    archive_path,
    read_chunks,
    read_summary,
)
from services.tenant.offboarding.links import LinkSigner
from services.tenant.provisioning.journal import SqlJournal, StepState
from services.tenant.provisioning.workflow import describe
from services.tenant.tenants import TenantManager

log = structlog.get_logger("makoto.tenant.offboarding")

SUSPEND_STEP = "offboard.suspend"
EXPORT_STEP = "offboard.export"


class ExportSettings(BaseSettings):
    """MAKOTO_EXPORT_*: where archives go and how long a download link lives."""

    model_config = SettingsConfigDict(env_prefix="MAKOTO_EXPORT_", extra="ignore")

    # The export location; empty: <data dir>/exports. (Production: a volume of the platform's
    # own; see README "Offboarding" for S3/Blob.)
    dir: str = ""
    # Secret reference of the link-signing key; empty: a key under MAKOTO_HOME/keys.
    signing_key_ref: str = ""
    link_ttl_seconds: int = 900

    def root(self, settings: MeshSettings) -> Path:
        return Path(self.dir) if self.dir else settings.data_dir / "exports"


class Offboarder:
    def __init__(
        self,
        tenants: TenantManager,
        journal: SqlJournal,
        exporter: TenantExporter,
        signer: LinkSigner,
        link_ttl_seconds: int = 900,
    ) -> None:
        self._tenants = tenants
        self._journal = journal
        self._exporter = exporter
        self._signer = signer
        self._ttl = link_ttl_seconds
        self._running: dict[str, asyncio.Task[None]] = {}

    # -- first half: suspend and export ----------------------------------------------------

    async def start(self, tenant_id: str, *, etag: str) -> str:
        """Make the tenant OFFBOARDING and start (or resume) its export; the operation id."""
        tenant = await self._tenants.begin_offboarding(tenant_id, etag=etag)
        return await self._resume(tenant)

    async def _resume(self, tenant: TenantRecord) -> str:
        tid = tenant.tenant_id
        operation_id = await self._journal.open_operation(tid, OFFBOARD)
        records = {r.step: r for r in await self._journal.steps(tid)}
        suspended = records.get(SUSPEND_STEP)
        if suspended is None or suspended.operation_id != operation_id:
            await self._journal.start(tid, SUSPEND_STEP, operation_id, preexisting=False)
            await self._journal.mark(tid, SUSPEND_STEP, StepState.DONE)
        exported = records.get(EXPORT_STEP)
        done = (
            exported is not None
            and exported.operation_id == operation_id
            and exported.state == StepState.DONE
        )
        if not done and not (tid in self._running and not self._running[tid].done()):
            self._running[tid] = asyncio.create_task(self._export(tenant, operation_id))
        return operation_id

    async def _export(self, tenant: TenantRecord, operation_id: str) -> None:
        tid = tenant.tenant_id
        await self._journal.start(tid, EXPORT_STEP, operation_id, preexisting=False)
        log.info("offboarding export", tenant_id=tid, operation_id=operation_id)
        try:
            summary = await self._exporter.export(tid, tenant.bindings, operation_id)
        except asyncio.CancelledError:
            raise  # shutting down: the next start resumes the step
        except Exception as exc:
            reason = describe(exc)
            log.warning("offboarding export failed", tenant_id=tid, reason=reason)
            await self._journal.mark(
                tid, EXPORT_STEP, StepState.FAILED, f"{reason}; call OffboardTenant to retry"
            )
            return
        await self._journal.mark(tid, EXPORT_STEP, StepState.DONE)
        log.info(
            "offboarding export done", tenant_id=tid, size=summary.size_bytes, objects=summary.object_count
        )

    async def wait(self, tenant_id: str) -> None:
        """Until the tenant's export task (if any) ended (tests, shutdown)."""
        task = self._running.get(tenant_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def recover(self) -> None:
        """At start-up: resume the export of every OFFBOARDING tenant whose export is not done."""
        for tenant in await self._tenants.in_states([State.OFFBOARDING]):
            try:
                await self._resume(tenant)
            except Exception:  # one stuck tenant must not keep the service down
                log.exception("offboarding recovery failed", tenant_id=tenant.tenant_id)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the archive ---------------------------------------------------------------------------

    def summary(self, tenant_id: str, operation_id: str) -> ExportSummary | None:
        return read_summary(self._exporter.root, tenant_id, operation_id)

    def link(self, tenant_id: str, export_id: str) -> tuple[str, int]:
        """A signed download path (through the gateway) and its expiry (unix seconds)."""
        expires = int(time.time()) + self._ttl
        return f"/api/v1/exports:download?token={self._signer.token(tenant_id, export_id, expires)}", expires

    async def download(self, token: str) -> AsyncIterator[bytes]:
        """The archive a valid link names, while its tenant is OFFBOARDING."""
        target = self._signer.verify(token)
        tenant = await self._tenants.get(target.tenant_id)
        if tenant.state != State.OFFBOARDING:
            raise FailedPrecondition(
                f"tenant {tenant.tenant_id} is {tenant.state}: its export is downloadable while OFFBOARDING",
                reason="TENANT_NOT_OFFBOARDING",
            )
        if self.summary(target.tenant_id, target.export_id) is None:
            raise NotFound("export not found", reason="EXPORT_NOT_FOUND")
        return read_chunks(archive_path(self._exporter.root, target.tenant_id, target.export_id))

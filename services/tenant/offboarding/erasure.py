"""Erasure: the journaled steps that remove everything of a tenant, in this order:

  erase.users          every user (Cognito: deleted from the pool; local: rows deleted)
  erase.api_keys       the tenant's API key rows
  erase.resources      what provisioning created (the workflow's undo of every step it owns:
                       bucket, table, container, database, secrets path, Key Vault secrets,
                       Cognito group, the local directory); brought resources stay
  erase.usage          MeteringService keeps the invoices and erases the usage
  erase.exports        the offboarding export archives
The tenant record itself is then reduced to a tombstone (id, state DELETED, times; bindings,
name and features cleared) by TenantManager: the id stays taken, and invoices still name it.

Each step is recorded in the provisioning journal under the operation (OFFBOARD when the tenant
was offboarded with an export, DELETE otherwise), so GetOperation shows the progress and a
restart resumes at the first step that is not DONE.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition
from services.tenant.model import TenantRecord
from services.tenant.ports import IdentityProvider, Provisioner, ProvisioningError
from services.tenant.provisioning.journal import OperationState, SqlJournal, StepState
from services.tenant.provisioning.workflow import describe
from services.tenant.schema import api_keys

log = structlog.get_logger("makoto.tenant.offboarding")

OFFBOARD = "OFFBOARD"
DELETE = "DELETE"


def _reason(exc: BaseException) -> str:
    """describe(), plus the code and message of our own services' gRPC errors (MakotoError
    messages never carry secrets)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return describe(exc)


class UsageEraser(Protocol):
    async def erase(self, tenant_id: str) -> tuple[list[str], int]: ...


class ExportRemover(Protocol):
    async def remove(self, tenant_id: str) -> None: ...


class Erasure:
    def __init__(
        self,
        journal: SqlJournal,
        engine: AsyncEngine,
        identity: IdentityProvider,
        provisioner: Provisioner,
        usage: UsageEraser | None,
        exports: ExportRemover | None,
    ) -> None:
        self._journal = journal
        self._engine = engine
        self._identity = identity
        self._provisioner = provisioner
        self._usage = usage
        self._exports = exports

    async def operation_for(self, tenant_id: str) -> str:
        """The tenant's running OFFBOARD operation, else its (new or running) DELETE one."""
        for record in await self._journal.operations_of(tenant_id):
            if record.kind == OFFBOARD and record.state == OperationState.RUNNING:
                return record.operation_id
        return await self._journal.open_operation(tenant_id, DELETE)

    def _steps(self, tenant: TenantRecord) -> Sequence[tuple[str, Callable[[], Awaitable[object]]]]:
        tid = tenant.tenant_id
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("erase.users", lambda: self._identity.remove_all(tid)),
            ("erase.api_keys", lambda: self._delete_api_keys(tid)),
            ("erase.resources", lambda: self._provisioner.deprovision(tenant)),
        ]
        if self._usage is not None:
            usage = self._usage
            steps.append(("erase.usage", lambda: usage.erase(tid)))
        if self._exports is not None:
            exports = self._exports
            steps.append(("erase.exports", lambda: exports.remove(tid)))
        return steps

    async def run(self, tenant: TenantRecord) -> str:
        """Every erase step not yet DONE in this operation; returns the operation id. Raises
        ProvisioningError naming the step that failed (the operation stays RUNNING: retry)."""
        tid = tenant.tenant_id
        operation_id = await self.operation_for(tid)
        records = {r.step: r for r in await self._journal.steps(tid)}
        for name, action in self._steps(tenant):
            record = records.get(name)
            if record is not None and record.operation_id == operation_id and record.state == StepState.DONE:
                continue  # done before a crash
            await self._journal.start(tid, name, operation_id, preexisting=False)
            log.info("erase step", tenant_id=tid, step=name, operation_id=operation_id)
            try:
                await action()
            except Exception as exc:
                reason = _reason(exc)
                log.warning("erase step failed", tenant_id=tid, step=name, reason=reason)
                await self._journal.mark(tid, name, StepState.FAILED, reason)
                if (
                    isinstance(exc, grpc.aio.AioRpcError)
                    and exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                ):
                    # MeteringService cannot keep the invoices (e.g. the tenant's price plan is
                    # missing): nothing is erased there until that is fixed; say so, not "retry".
                    raise FailedPrecondition(
                        f"step {name} failed: {reason}; fix that, then call DeleteTenant again",
                        reason="ERASURE_BLOCKED",
                    ) from exc
                retry = "" if "retry DeleteTenant" in reason else "; retry DeleteTenant"
                raise ProvisioningError(f"step {name} failed: {reason}{retry}") from exc
            await self._journal.mark(tid, name, StepState.DONE)
        return operation_id

    async def finished(self, operation_id: str) -> None:
        await self._journal.finish_operation(operation_id, OperationState.SUCCEEDED)

    async def _delete_api_keys(self, tenant_id: str) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(api_keys).where(api_keys.c.tenant_id == tenant_id))
        return int(result.rowcount)

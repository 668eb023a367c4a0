"""OnboardTenant: CreateTenant as a long-running operation (kind PROVISION) that answers at once.

The call checks the spec and stores the tenant PROVISIONING exactly as CreateTenant does, opens
the tenant's provisioning operation in the journal, and answers with it; the steps run in a
background task of this process (the same WorkflowProvisioner run CreateTenant waits for, which
picks up the RUNNING operation opened here). Progress is read with GetOperation.

A process killed before or during the run leaves the tenant PROVISIONING and the operation
RUNNING: the next start resumes it (TenantManager.recover), as for an interrupted CreateTenant.
A retry with the same request_id answers the operation of the first call and starts nothing:
the first call's run (or the restart's recovery) owns the tenant, so two runs never race.
"""

from __future__ import annotations

import asyncio

import structlog

from services.common.errors import NotFound
from services.tenant.model import State, TenantSpec
from services.tenant.provisioning.journal import SqlJournal
from services.tenant.provisioning.workflow import PROVISION
from services.tenant.tenants import TenantManager

log = structlog.get_logger("makoto.tenant.onboarding")


class Onboarder:
    def __init__(self, tenants: TenantManager, journal: SqlJournal) -> None:
        self._tenants = tenants
        self._journal = journal
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(self, spec: TenantSpec, *, request_id: str) -> str:
        """Store the tenant, open its provisioning operation, start the run; the operation id."""
        tenant, fresh = await self._tenants.register(spec, request_id=request_id)
        tid = tenant.tenant_id
        if not fresh:
            return await self._latest(tid)
        operation_id = await self._journal.open_operation(tid, PROVISION)
        self._running[tid] = asyncio.create_task(self._run(tid))
        return operation_id

    async def _run(self, tenant_id: str) -> None:
        try:
            tenant = await self._tenants.get_any(tenant_id)
            if tenant.state == State.PROVISIONING:
                await self._tenants.provision(tenant)
        except asyncio.CancelledError:
            raise  # shutting down: the next start resumes the run (the tenant stays PROVISIONING)
        except Exception:  # the operation says what failed; this is a bug's trace for operators
            log.exception("onboarding run failed", tenant_id=tenant_id)
        finally:
            self._running.pop(tenant_id, None)

    async def _latest(self, tenant_id: str) -> str:
        runs = [r for r in await self._journal.operations_of(tenant_id) if r.kind == PROVISION]
        if not runs:  # a tenant made before the journal existed
            raise NotFound(f"tenant {tenant_id} has no provisioning operation", reason="OPERATION_NOT_FOUND")
        return runs[-1].operation_id

    async def wait(self, tenant_id: str) -> None:
        """Until the tenant's run in this process (if any) ended (tests)."""
        task = self._running.get(tenant_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

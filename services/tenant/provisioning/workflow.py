"""The provisioning workflow: a tenant's resources as an ordered list of named, idempotent steps.

For each step the journal first records STARTED together with whether the resource already
existed (probed before anything is created), then the step runs, then DONE. A process killed
anywhere in between resumes at start-up (TenantManager.recover) and re-runs the unfinished
step: every step's apply() is create-if-missing-then-configure, so a second run converges.

A failing step fails the run: the step is FAILED with its reason, and every step this tenant
has STARTED/DONE/FAILED is undone in reverse order (compensation), except resources that were
there before (brought by the tenant). The tenant ends FAILED naming the step and the reason.
Offboarding (deprovision) undoes the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from services.common.errors import MakotoError
from services.tenant.model import TenantRecord
from services.tenant.ports import ProvisioningError
from services.tenant.provisioning.journal import OperationState, SqlJournal, StepRecord, StepState

log = structlog.get_logger("makoto.tenant.provisioning")

PROVISION = "PROVISION"


class Step(Protocol):
    """One named resource. Names are stable for the same resource (e.g. `aws.s3_bucket:NAME`)."""

    @property
    def name(self) -> str: ...

    async def exists(self) -> bool:
        """Whether the resource is there already (probed once, before the step first runs)."""
        ...

    async def apply(self) -> None:
        """Create the resource if missing and bring its settings to what the platform requires."""
        ...

    async def undo(self) -> None:
        """Remove the resource and everything in it; a missing resource is fine."""
        ...

    async def close(self) -> None: ...


class StepFailed(Exception):
    """A step's failure, with a reason that is safe to show (no secrets, no server paths)."""


Planner = Callable[[TenantRecord], Sequence[Step]]


def describe(exc: BaseException) -> str:
    """A short, secret-free reason: our own errors keep their message; SDK errors give their code."""
    if isinstance(exc, ProvisioningError | StepFailed | MakotoError):
        return str(exc)  # ours: written to be shown (MakotoError messages never carry secrets)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return f"{type(exc).__name__} {code}"
    error_code = getattr(exc, "error_code", None)
    status = getattr(exc, "status_code", None)
    if error_code or status:
        return f"{type(exc).__name__} {error_code or ''} {status or ''}".strip()
    return type(exc).__name__


class WorkflowProvisioner:
    """The Provisioner port on top of the journal and a planner (tenant -> steps)."""

    def __init__(self, planner: Planner, journal: SqlJournal) -> None:
        self._planner = planner
        self._journal = journal

    @property
    def journal(self) -> SqlJournal:
        return self._journal

    async def provision(self, tenant: TenantRecord) -> None:
        steps = list(self._planner(tenant))
        try:
            await self._run(tenant, steps)
        finally:
            for step in steps:
                await step.close()

    async def deprovision(self, tenant: TenantRecord) -> None:
        steps = list(self._planner(tenant))
        try:
            records = {r.step: r for r in await self._journal.steps(tenant.tenant_id)}
            problems = await self._undo(tenant.tenant_id, steps, records, offboarding=True)
        finally:
            for step in steps:
                await step.close()
        if problems:
            raise ProvisioningError(f"deprovisioning incomplete: {'; '.join(problems)}; retry DeleteTenant")

    async def _run(self, tenant: TenantRecord, steps: Sequence[Step]) -> None:
        tenant_id = tenant.tenant_id
        operation_id = await self._journal.open_operation(tenant_id, PROVISION)
        records = {r.step: r for r in await self._journal.steps(tenant_id)}
        for step in steps:
            record = records.get(step.name)
            if (
                record is not None
                and record.state == StepState.DONE
                and not getattr(step, "always_apply", False)
            ):
                continue  # done before a crash or by an earlier run: nothing to redo
            try:
                if record is None or record.state == StepState.REMOVED:
                    preexisting = await step.exists()
                    await self._journal.start(tenant_id, step.name, operation_id, preexisting=preexisting)
                log.info("provisioning step", tenant_id=tenant_id, step=step.name, operation_id=operation_id)
                await step.apply()
            except Exception as exc:
                reason = describe(exc)
                log.warning("provisioning step failed", tenant_id=tenant_id, step=step.name, reason=reason)
                await self._journal.mark(tenant_id, step.name, StepState.FAILED, reason)
                records = {r.step: r for r in await self._journal.steps(tenant_id)}
                # Compensate this run only: steps an earlier run finished (a re-bind adds steps
                # to an ACTIVE tenant) hold the tenant's live data and stay.
                records = {n: r for n, r in records.items() if r.operation_id == operation_id}
                problems = await self._undo(tenant_id, steps, records, offboarding=False)
                message = f"step {step.name} failed: {reason}"
                if problems:
                    message += f" (compensation incomplete: {'; '.join(problems)})"
                await self._journal.finish_operation(
                    operation_id, OperationState.FAILED, failed_step=step.name, reason=message
                )
                raise ProvisioningError(message) from exc
            await self._journal.mark(tenant_id, step.name, StepState.DONE)
        await self._journal.finish_operation(operation_id, OperationState.SUCCEEDED)

    async def _undo(
        self, tenant_id: str, steps: Sequence[Step], records: dict[str, StepRecord], *, offboarding: bool
    ) -> list[str]:
        """Undo steps in reverse order of their start; returns what could not be undone."""
        problems: list[str] = []
        order = sorted(steps, key=lambda s: records[s.name].seq if s.name in records else -1, reverse=True)
        for step in order:
            record = records.get(step.name)
            if record is None:
                # Never journaled: only the platform's own local directory is ours regardless
                # (tenants created before the journal existed).
                if not (offboarding and getattr(step, "always_owned", False)):
                    continue
            elif record.state == StepState.REMOVED or record.preexisting:
                continue
            try:
                await step.undo()
            except Exception as exc:
                reason = describe(exc)
                log.warning("undo failed", tenant_id=tenant_id, step=step.name, reason=reason)
                problems.append(f"{step.name}: {reason}")
                continue
            if record is not None:
                await self._journal.mark(tenant_id, step.name, StepState.REMOVED)
        return problems

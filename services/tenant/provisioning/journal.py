"""The provisioning journal in the tenant database: each step's state per tenant, and the
operations (provisioning runs) with their outcome. Written before and after every step, so a
process killed at any point resumes from what the journal says."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.tenant.schema import operations, provisioning_steps


class StepState(StrEnum):
    STARTED = "STARTED"  # existence probed, the step may have created things
    DONE = "DONE"
    FAILED = "FAILED"
    REMOVED = "REMOVED"  # compensated or offboarded: what it created is gone


class OperationState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class StepRecord:
    tenant_id: str
    step: str
    operation_id: str
    seq: int
    state: StepState
    preexisting: bool
    reason: str
    update_time: datetime


@dataclass(frozen=True)
class OperationRecord:
    operation_id: str
    tenant_id: str
    kind: str
    state: OperationState
    failed_step: str
    reason: str
    create_time: datetime
    update_time: datetime


def _now() -> datetime:
    return datetime.now(UTC)


class SqlJournal:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- steps ---------------------------------------------------------------------------

    async def steps(self, tenant_id: str) -> Sequence[StepRecord]:
        rows = await self._read(
            sa.select(provisioning_steps)
            .where(provisioning_steps.c.tenant_id == tenant_id)
            .order_by(provisioning_steps.c.seq)
        )
        return [
            StepRecord(
                tenant_id=r["tenant_id"],
                step=r["step"],
                operation_id=r["operation_id"],
                seq=r["seq"],
                state=StepState(r["state"]),
                preexisting=bool(r["preexisting"]),
                reason=r["reason"],
                update_time=r["update_time"],
            )
            for r in rows
        ]

    async def start(self, tenant_id: str, step: str, operation_id: str, *, preexisting: bool) -> None:
        """Record that `step` begins (again from scratch after a REMOVED run)."""
        table = provisioning_steps
        async with self._engine.begin() as conn:
            seq = (
                await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(table.c.seq), -1)).where(
                        table.c.tenant_id == tenant_id
                    )
                )
            ).scalar_one()
            values = {
                "operation_id": operation_id,
                "seq": int(seq) + 1,
                "state": str(StepState.STARTED),
                "preexisting": preexisting,
                "reason": "",
                "update_time": _now(),
            }
            updated = await conn.execute(
                table.update().where(table.c.tenant_id == tenant_id, table.c.step == step).values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(table.insert().values(tenant_id=tenant_id, step=step, **values))

    async def mark(self, tenant_id: str, step: str, state: StepState, reason: str = "") -> None:
        table = provisioning_steps
        async with self._engine.begin() as conn:
            await conn.execute(
                table.update()
                .where(table.c.tenant_id == tenant_id, table.c.step == step)
                .values(state=str(state), reason=reason, update_time=_now())
            )

    # -- operations ----------------------------------------------------------------------

    async def open_operation(self, tenant_id: str, kind: str) -> str:
        """The tenant's RUNNING operation of this kind (a resumed run) or a new one."""
        table = operations
        async with self._engine.begin() as conn:
            running = (
                await conn.execute(
                    sa.select(table.c.operation_id)
                    .where(
                        table.c.tenant_id == tenant_id,
                        table.c.kind == kind,
                        table.c.state == str(OperationState.RUNNING),
                    )
                    .order_by(table.c.create_time.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if running is not None:
                return str(running)
            operation_id = f"{kind.lower()}-{tenant_id}-{secrets.token_hex(6)}"
            now = _now()
            await conn.execute(
                table.insert().values(
                    operation_id=operation_id,
                    tenant_id=tenant_id,
                    kind=kind,
                    state=str(OperationState.RUNNING),
                    failed_step="",
                    reason="",
                    create_time=now,
                    update_time=now,
                )
            )
            return operation_id

    async def finish_operation(
        self, operation_id: str, state: OperationState, *, failed_step: str = "", reason: str = ""
    ) -> None:
        table = operations
        async with self._engine.begin() as conn:
            await conn.execute(
                table.update()
                .where(table.c.operation_id == operation_id)
                .values(state=str(state), failed_step=failed_step, reason=reason, update_time=_now())
            )

    async def operation(self, operation_id: str) -> OperationRecord | None:
        rows = await self._read(sa.select(operations).where(operations.c.operation_id == operation_id))
        return _operation(rows[0]) if rows else None

    async def operations_of(self, tenant_id: str) -> Sequence[OperationRecord]:
        query = sa.select(operations).where(operations.c.tenant_id == tenant_id)
        rows = await self._read(query.order_by(operations.c.create_time))
        return [_operation(r) for r in rows]

    async def _read(self, query: sa.Select[Any]) -> Sequence[sa.RowMapping]:
        async with self._engine.connect() as conn:
            rows: Sequence[sa.RowMapping] = (await conn.execute(query)).mappings().all()
        return rows


def _operation(row: sa.RowMapping) -> OperationRecord:
    return OperationRecord(
        operation_id=row["operation_id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        state=OperationState(row["state"]),
        failed_step=row["failed_step"],
        reason=row["reason"],
        create_time=row["create_time"],
        update_time=row["update_time"],
    )

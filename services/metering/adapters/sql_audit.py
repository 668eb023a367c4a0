"""The audit log in the metering database: audit events (meter `audit`, sent through the same
durable, batched usage spool as api_calls) become per-tenant hash-chained records.

Why here: MeteringService already receives every service's events in batches, idempotently by
event id, and is the one writer of its database, so it can give each tenant's records a gap-free
sequence and chain them without any coordination on the hot path (a call only appends an event
to its local spool, as it does for api_calls)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.audit_chain import GENESIS, record_hash
from services.common.metering_client import MeterEvent
from services.metering.adapters.sql_tables import audit_records
from services.metering.periods import to_us


class SqlAuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # One append at a time in this process: each chain's next seq depends on its head.
        self._lock = asyncio.Lock()

    async def append(self, events: Sequence[MeterEvent]) -> int:
        """Chain the events not seen before (by id), oldest first per tenant; returns how many."""
        if not events:
            return 0
        async with self._lock, self._engine.begin() as conn:
            ids = [e.id for e in events]
            seen = set(
                (
                    await conn.execute(
                        sa.select(audit_records.c.event_id).where(audit_records.c.event_id.in_(ids))
                    )
                )
                .scalars()
                .all()
            )
            fresh: dict[str, MeterEvent] = {}
            for e in events:
                if e.id not in seen:
                    fresh.setdefault(e.id, e)
            by_tenant: dict[str, list[MeterEvent]] = {}
            for e in sorted(fresh.values(), key=lambda e: (to_us(e.time), e.id)):
                by_tenant.setdefault(e.subject, []).append(e)
            rows: list[dict[str, Any]] = []
            for tenant_id, tenant_events in by_tenant.items():
                seq, prev = await self._head(conn, tenant_id)
                for e in tenant_events:
                    seq += 1
                    d = e.dimensions
                    row: dict[str, Any] = {
                        "tenant_id": tenant_id,
                        "seq": seq,
                        "event_id": e.id,
                        "time_us": to_us(e.time),
                        "source": e.source,
                        "principal": d.get("principal", "")[:256],
                        "role": d.get("role", "")[:32],
                        "method": d.get("method", "")[:256],
                        "resource": d.get("resource", "")[:256],
                        "outcome": d.get("outcome", "")[:32],
                        "api_key_id": d.get("api_key_id", "")[:32],
                        "prev_hash": prev,
                    }
                    row["hash"] = prev = record_hash(row)
                    rows.append(row)
            if rows:
                await conn.execute(audit_records.insert(), rows)
            return len(rows)

    @staticmethod
    async def _head(conn: AsyncConnection, tenant_id: str) -> tuple[int, str]:
        t = audit_records.c
        row = (
            await conn.execute(
                sa.select(t.seq, t.hash).where(t.tenant_id == tenant_id).order_by(t.seq.desc()).limit(1)
            )
        ).first()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    async def records(self, tenant_id: str, *, after_seq: int, limit: int) -> list[dict[str, Any]]:
        t = audit_records.c
        query = (
            sa.select(audit_records)
            .where(t.tenant_id == tenant_id, t.seq > after_seq)
            .order_by(t.seq)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

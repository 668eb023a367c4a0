"""The metering store on SQLAlchemy 2 async: SQLite (aiosqlite) by default, PostgreSQL (asyncpg)
with the same code. Implements UsageStore and PricePlanStore."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # ships no type information
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.limits.model import Limits
from services.common.metering_client import MeterEvent
from services.common.usage import AUDIT
from services.metering.adapters.database import create_engine, migrate
from services.metering.adapters.sql_audit import SqlAuditLog
from services.metering.adapters.sql_tables import (
    erased_tenants,
    kept_invoices,
    price_plan_versions,
    price_plans,
    tenant_limits,
    usage_events,
)
from services.metering.model import MeterPrice, PricePlan
from services.metering.ports import AggregateRow
from services.metering.usage_columns import UsageColumns

# Columns in, one INSERT ... SELECT: far fewer round trips and parse steps than executemany. The
# count of new rows comes from the command tag ("INSERT 0 <n>"): a RETURNING + count(*) CTE
# costs PostgreSQL ~1 µs more per event (measured with the bench's rows, issue 8). Usage of an
# erased tenant (spooled before its erasure, arriving late) is dropped inside the statement:
# NOT IN over the small erased_tenants table is one hashed lookup per row, no extra round trip.
_PG_INSERT_FROM = (
    "INSERT INTO usage_events"
    " (id, source, type, subject, time_us, value, dimensions, recorded_at_us)"
    " SELECT i, s, t, j, tu::bigint, v::bigint, d::json, $8 FROM unnest({}) AS u(i, s, t, j, tu, v, d)"
    " WHERE j NOT IN (SELECT tenant_id FROM erased_tenants)"
    " ON CONFLICT (id) DO NOTHING"
)
# Each column as one string, split by PostgreSQL: str.join is one C call, where asyncpg's array
# encoder spends ~0.2 µs per element (an isinstance check against collections.abc each):
# 2.2 -> 0.6 µs of client CPU per event, the same PostgreSQL CPU. Text columns are joined with
# the unit separator (U+001F); a batch whose text holds one (only ids and sources can: meters and
# tenants are patterns, JSON escapes control characters) is sent as arrays instead.
_SEP = "\x1f"
PG_INSERT_JOINED = _PG_INSERT_FROM.format(
    ", ".join(
        [
            *(f"string_to_array(${i}, E'\\x1f')" for i in (1, 2, 3, 4)),
            "string_to_array($5, ',')",
            "string_to_array($6, ',')",
            "string_to_array($7, E'\\x1f')",
        ]
    )
)
PG_INSERT_ARRAYS = _PG_INSERT_FROM.format(
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[]"
)


def _joined(column: list[str]) -> str | None:
    text = _SEP.join(column)
    # string_to_array('') is an empty array, not [''], hence the second test.
    return text if text.count(_SEP) == len(column) - 1 and text else None


def pg_insert(columns: UsageColumns, recorded_at_us: int) -> tuple[str, list[Any]]:
    """The statement and arguments storing `columns` on PostgreSQL (also the bench's baseline)."""
    texts = [_joined(c) for c in (columns.ids, columns.sources, columns.types, columns.subjects)]
    dims = _joined(columns.dimensions)
    if all(t is not None for t in texts) and dims is not None:
        numbers = [",".join(map(str, columns.times_us)), ",".join(map(str, columns.values))]
        return PG_INSERT_JOINED, [*texts, *numbers, dims, recorded_at_us]
    return PG_INSERT_ARRAYS, [
        columns.ids,
        columns.sources,
        columns.types,
        columns.subjects,
        columns.times_us,
        columns.values,
        columns.dimensions,
        recorded_at_us,
    ]


# Connections for ingest batches: a few in flight fill one core; more only queue in PostgreSQL.
INGEST_POOL_SIZE = 4
_SQLITE_INSERT = (
    "INSERT OR IGNORE INTO usage_events"
    " (id, source, type, subject, time_us, value, dimensions, recorded_at_us)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE ?4 NOT IN (SELECT tenant_id FROM erased_tenants)"
)


async def _keep_session(_conn: Any) -> None:
    """Pool release hook: the ingest pool runs single autocommit statements and changes no
    session state, so asyncpg's default reset query (one more round trip per batch) is skipped;
    asyncpg still rolls back a transaction left open by a failure."""


def _int(value: Any) -> int:
    # PostgreSQL's sum(bigint) is numeric (Decimal); SQLite's is an int (or NULL on no rows).
    return int(value or 0)


class SqlMeteringStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Audit events arrive with the usage events and are chained there, not summed.
        self.audit = SqlAuditLog(engine)
        self._dialect = engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self._dialect}; use SQLite or PostgreSQL")
        # PostgreSQL ingest batches go through asyncpg directly (see insert_columns).
        self._ingest_pool: Any = None  # asyncpg.Pool (untyped)
        self._pool_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> SqlMeteringStore:
        """Connect and migrate the schema to the newest revision."""
        engine = create_engine(url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        if self._ingest_pool is not None:
            await self._ingest_pool.close()
            self._ingest_pool = None
        await self._engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        return dialect.insert(table)

    # -- UsageStore ------------------------------------------------------------------------

    async def insert_events(self, events: Sequence[MeterEvent]) -> int:
        audit = [e for e in events if e.type == AUDIT]
        if audit:
            events = [e for e in events if e.type != AUDIT]
            return await self.audit.append(audit) + await self.insert_events(events)
        if not events:
            return 0
        return await self._insert_usage(UsageColumns.from_events(events))

    async def insert_columns(self, columns: UsageColumns) -> int:
        """Insert-or-ignore a batch of usage in one statement, one transaction: the durable
        ingest rate is set by this (tests/bench section "ingest"). Ids already stored, or
        repeated within the batch, are skipped (the first stands), not errors. Audit events
        in the batch go to the audit log's hash chain instead."""
        audit, columns = columns.split(AUDIT)
        chained = await self.audit.append(audit) if audit else 0
        if not len(columns):
            return chained
        return chained + await self._insert_usage(columns)

    async def _insert_usage(self, columns: UsageColumns) -> int:
        now = time.time_ns() // 1000
        if self._dialect == "postgresql":
            pool = self._ingest_pool or await self._open_ingest_pool()
            # asyncpg straight, no SQLAlchemy: one round trip (a single statement commits on
            # its own), where engine.begin() adds a pre-ping, BEGIN and COMMIT per batch.
            sql, args = pg_insert(columns, now)
            status = await pool.execute(sql, *args)
            return int(status.rsplit(" ", 1)[1])
        async with self._engine.begin() as conn:
            result = await conn.exec_driver_sql(_SQLITE_INSERT, columns.rows(now))
            return max(0, result.rowcount)

    async def _open_ingest_pool(self) -> Any:
        async with self._pool_lock:
            if self._ingest_pool is None:
                dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                self._ingest_pool = await asyncpg.create_pool(
                    dsn, min_size=1, max_size=INGEST_POOL_SIZE, reset=_keep_session
                )
            return self._ingest_pool

    async def usage_span(self, tenant_id: str) -> tuple[int, int] | None:
        """Earliest and latest event time of the tenant, if it has any usage."""
        t = usage_events.c
        async with self._engine.connect() as conn:
            low, high = (
                await conn.execute(
                    sa.select(sa.func.min(t.time_us), sa.func.max(t.time_us)).where(t.subject == tenant_id)
                )
            ).one()
        return None if low is None else (int(low), int(high))

    async def erase_tenant(self, tenant_id: str, invoices: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """In one transaction: keep the invoices, mark the tenant erased, delete its usage events
        and limit overrides. Returns how many usage events were deleted."""
        now = time.time_ns() // 1000
        async with self._engine.begin() as conn:
            for month, invoice in invoices:
                await conn.execute(
                    self._insert(kept_invoices)
                    .values(tenant_id=tenant_id, month=month, invoice=invoice, kept_at_us=now)
                    .on_conflict_do_nothing(index_elements=[kept_invoices.c.tenant_id, kept_invoices.c.month])
                )
            await conn.execute(
                self._insert(erased_tenants)
                .values(tenant_id=tenant_id, erased_at_us=now)
                .on_conflict_do_nothing(index_elements=[erased_tenants.c.tenant_id])
            )
            deleted = await conn.execute(sa.delete(usage_events).where(usage_events.c.subject == tenant_id))
            await conn.execute(sa.delete(tenant_limits).where(tenant_limits.c.tenant_id == tenant_id))
        return max(0, int(deleted.rowcount))

    async def kept_invoice(self, tenant_id: str, month: str) -> dict[str, Any] | None:
        t = kept_invoices.c
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(sa.select(t.invoice).where(t.tenant_id == tenant_id, t.month == month))
            ).scalar_one_or_none()
        return None if found is None else dict(found)

    async def kept_months(self, tenant_id: str) -> list[str]:
        t = kept_invoices.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(sa.select(t.month).where(t.tenant_id == tenant_id).order_by(t.month))
        return [str(m) for m in rows.scalars()]

    def _range(self, tenant_id: str, meter: str, start_us: int, end_us: int) -> list[sa.ColumnElement[bool]]:
        t = usage_events.c
        return [t.subject == tenant_id, t.type == meter, t.time_us >= start_us, t.time_us < end_us]

    async def aggregate(
        self,
        *,
        tenant_id: str,
        meter: str,
        start_us: int,
        end_us: int,
        bucket_us: int | None,
        group_by: Sequence[str],
        limit: int,
    ) -> list[AggregateRow]:
        t = usage_events.c
        inner_cols: list[sa.ColumnElement[Any]] = [t.value.label("value")]
        if bucket_us is not None:
            # floor(time / width) * width, written so truncating '%' (PostgreSQL) and SQLite
            # agree for negative times too. The width is a trusted int, inlined as a literal.
            width = sa.literal_column(str(int(bucket_us)), sa.BigInteger)
            inner_cols.append((t.time_us - ((t.time_us % width) + width) % width).label("bucket"))
        for i, key in enumerate(group_by):
            inner_cols.append(t.dimensions[key].as_string().label(f"g{i}"))
        inner = sa.select(*inner_cols).where(*self._range(tenant_id, meter, start_us, end_us)).subquery()
        # Group on the subquery's columns: portable, and PostgreSQL sees identical expressions.
        keys = ([inner.c.bucket] if bucket_us is not None else []) + [
            inner.c[f"g{i}"] for i in range(len(group_by))
        ]
        stmt = sa.select(*keys, sa.func.sum(inner.c.value)).limit(limit)
        if keys:
            stmt = stmt.group_by(*keys)
        async with self._engine.connect() as conn:
            result = await conn.execute(stmt)
            out: list[AggregateRow] = []
            for row in result.all():
                values = list(row)
                total = values.pop()
                if not keys and total is None:
                    continue  # no events at all: no row
                bucket = int(values.pop(0)) if bucket_us is not None else None
                out.append((bucket, tuple("" if v is None else str(v) for v in values), _int(total)))
            return out

    async def totals(
        self, *, tenant_id: str, meters: Sequence[str], start_us: int, end_us: int
    ) -> dict[str, int]:
        if not meters:
            return {}
        t = usage_events.c
        stmt = (
            sa.select(t.type, sa.func.sum(t.value))
            .where(
                t.subject == tenant_id,
                t.type.in_(list(meters)),
                t.time_us >= start_us,
                t.time_us < end_us,
            )
            .group_by(t.type)
        )
        async with self._engine.connect() as conn:
            return {str(meter): _int(total) for meter, total in (await conn.execute(stmt)).all()}

    async def balance_before(self, *, tenant_id: str, meter: str, before_us: int) -> int:
        t = usage_events.c
        stmt = sa.select(sa.func.sum(t.value)).where(
            t.subject == tenant_id, t.type == meter, t.time_us < before_us
        )
        async with self._engine.connect() as conn:
            return _int((await conn.execute(stmt)).scalar())

    async def deltas(
        self, *, tenant_id: str, meter: str, start_us: int, end_us: int
    ) -> AsyncIterator[tuple[int, int]]:
        t = usage_events.c
        stmt = (
            sa.select(t.time_us, sa.func.sum(t.value))
            .where(*self._range(tenant_id, meter, start_us, end_us))
            .group_by(t.time_us)
            .order_by(t.time_us)
            .execution_options(yield_per=2000)
        )
        async with self._engine.connect() as conn:
            result = await conn.stream(stmt)
            async for at, delta in result:
                yield int(at), _int(delta)

    # -- PricePlanStore --------------------------------------------------------------------

    async def get_plan(self, plan_id: str) -> PricePlan | None:
        stmt = sa.select(price_plans).where(price_plans.c.plan_id == plan_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        prices = tuple(
            MeterPrice(meter=p["meter"], unit_price=Decimal(p["unit_price"]), unit=p["unit"])
            for p in row["prices"]
        )
        return PricePlan(
            plan_id=row["plan_id"],
            currency=row["currency"],
            prices=prices,
            limits=Limits.from_json(row["limits"]),
        )

    async def plan_in_force(self, plan_id: str, at_us: int) -> PricePlan | None:
        v = price_plan_versions.c
        base = sa.select(v.currency, v.prices, v.effective_from_us).where(v.plan_id == plan_id)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    base.where(v.effective_from_us <= at_us).order_by(v.effective_from_us.desc()).limit(1)
                )
            ).first()
            if row is None:
                row = (await conn.execute(base.order_by(v.effective_from_us).limit(1))).first()
        if row is None:
            return None
        currency, raw_prices, effective = row
        prices = tuple(
            MeterPrice(meter=p["meter"], unit_price=Decimal(p["unit_price"]), unit=p["unit"])
            for p in raw_prices
        )
        return PricePlan(plan_id=plan_id, currency=currency, prices=prices, effective_from_us=int(effective))

    async def put_plan(self, plan: PricePlan, effective_from_us: int) -> None:
        values = {
            "plan_id": plan.plan_id,
            "currency": plan.currency,
            "prices": [
                {"meter": p.meter, "unit_price": format(p.unit_price, "f"), "unit": p.unit}
                for p in plan.prices
            ],
            "updated_at_us": time.time_ns() // 1000,
            "limits": plan.limits.to_json() or None,
        }
        stmt = self._insert(price_plans).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[price_plans.c.plan_id],
            set_={k: stmt.excluded[k] for k in ("currency", "prices", "updated_at_us", "limits")},
        )
        version = self._insert(price_plan_versions).values(
            plan_id=plan.plan_id,
            effective_from_us=effective_from_us,
            currency=plan.currency,
            prices=values["prices"],
            created_at_us=values["updated_at_us"],
        )
        version = version.on_conflict_do_update(
            index_elements=[price_plan_versions.c.plan_id, price_plan_versions.c.effective_from_us],
            set_={k: version.excluded[k] for k in ("currency", "prices", "created_at_us")},
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
            await conn.execute(version)

    # -- TenantLimitsStore -----------------------------------------------------------------

    async def get_overrides(self, tenant_id: str) -> Limits:
        stmt = sa.select(tenant_limits.c.limits).where(tenant_limits.c.tenant_id == tenant_id)
        async with self._engine.connect() as conn:
            found = (await conn.execute(stmt)).scalar_one_or_none()
        return Limits.from_json(found)

    async def put_overrides(self, tenant_id: str, limits: Limits) -> None:
        async with self._engine.begin() as conn:
            if not limits.to_json():
                await conn.execute(sa.delete(tenant_limits).where(tenant_limits.c.tenant_id == tenant_id))
                return
            stmt = self._insert(tenant_limits).values(
                tenant_id=tenant_id, limits=limits.to_json(), updated_at_us=time.time_ns() // 1000
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[tenant_limits.c.tenant_id],
                set_={k: stmt.excluded[k] for k in ("limits", "updated_at_us")},
            )
            await conn.execute(stmt)

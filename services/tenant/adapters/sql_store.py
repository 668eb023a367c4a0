"""TenantStore on SQLAlchemy 2 async: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) by URL.

Writes are compare-and-swap on the etag, so two concurrent updates of one tenant cannot both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from google.protobuf import json_format
from makoto.tenant.v1 import tenant_pb2
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import Aborted, AlreadyExists, NotFound
from services.tenant.model import CloudProvider, State, TenantRecord
from services.tenant.schema import idempotency, tenants


def _row(tenant: TenantRecord) -> dict[str, Any]:
    return {
        "tenant_id": tenant.tenant_id,
        "display_name": tenant.display_name,
        "state": str(tenant.state),
        "state_reason": tenant.state_reason,
        "cloud_provider": str(tenant.cloud_provider),
        "region": tenant.region,
        "features": list(tenant.features),
        "bindings": json_format.MessageToDict(tenant.bindings, preserving_proto_field_name=True),
        "price_plan_id": tenant.price_plan_id,
        "etag": tenant.etag,
        "create_time": tenant.create_time,
        "update_time": tenant.update_time,
    }


def _record(row: RowMapping) -> TenantRecord:
    bindings = tenant_pb2.TenantBindings()
    # ignore_unknown_fields: a row written by a newer release stays readable after a rollback.
    json_format.ParseDict(row["bindings"], bindings, ignore_unknown_fields=True)
    return TenantRecord(
        tenant_id=row["tenant_id"],
        display_name=row["display_name"],
        state=State(row["state"]),
        state_reason=row["state_reason"],
        cloud_provider=CloudProvider(row["cloud_provider"]),
        region=row["region"],
        features=tuple(row["features"]),
        bindings=bindings,
        price_plan_id=row["price_plan_id"],
        etag=row["etag"],
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


class SqlTenantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, tenant: TenantRecord, request_id: str | None) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(tenants.insert().values(**_row(tenant)))
                if request_id:
                    await conn.execute(
                        idempotency.insert().values(
                            request_id=request_id,
                            tenant_id=tenant.tenant_id,
                            create_time=datetime.now(UTC),
                        )
                    )
        except IntegrityError as exc:
            # Either key may be the one taken; the caller re-reads to tell which.
            raise AlreadyExists(
                f"tenant {tenant.tenant_id} already exists", reason="TENANT_ALREADY_EXISTS"
            ) from exc

    async def tenant_for_request(self, request_id: str) -> str | None:
        async with self._engine.connect() as conn:
            found = await conn.scalar(
                sa.select(idempotency.c.tenant_id).where(idempotency.c.request_id == request_id)
            )
        return None if found is None else str(found)

    async def get(self, tenant_id: str) -> TenantRecord | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(tenants).where(tenants.c.tenant_id == tenant_id)))
                .mappings()
                .first()
            )
        return None if row is None else _record(row)

    async def replace(self, tenant: TenantRecord, *, expected_etag: str) -> None:
        values = _row(tenant)
        values.pop("tenant_id")
        values.pop("create_time")
        async with self._engine.begin() as conn:
            result = await conn.execute(
                tenants.update()
                .where(tenants.c.tenant_id == tenant.tenant_id, tenants.c.etag == expected_etag)
                .values(**values)
            )
            if result.rowcount == 1:
                return
            exists = await conn.scalar(
                sa.select(sa.func.count()).select_from(tenants).where(tenants.c.tenant_id == tenant.tenant_id)
            )
        if not exists:
            raise NotFound(f"tenant {tenant.tenant_id} not found", reason="TENANT_NOT_FOUND")
        raise Aborted(
            f"tenant {tenant.tenant_id} changed concurrently; read it again", reason="ETAG_MISMATCH"
        )

    async def list(self, *, after: str | None, limit: int, include_deleted: bool) -> Sequence[TenantRecord]:
        query = sa.select(tenants).order_by(tenants.c.tenant_id).limit(limit)
        if after is not None:
            query = query.where(tenants.c.tenant_id > after)
        if not include_deleted:
            query = query.where(tenants.c.state != str(State.DELETED))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(r) for r in rows]

    async def in_states(self, states: Sequence[State]) -> Sequence[TenantRecord]:
        query = (
            sa.select(tenants)
            .where(tenants.c.state.in_([str(s) for s in states]))
            .order_by(tenants.c.tenant_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(r) for r in rows]

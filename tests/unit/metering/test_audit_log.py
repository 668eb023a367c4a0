"""The audit log in the metering store (SQLite and PostgreSQL): audit events become per-tenant
hash chains, duplicates are ignored, and a changed or removed record is detected by the same
verification `makoto audit verify` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.common.audit_chain import GENESIS, verify
from services.common.metering_client import MeterEvent, new_event
from services.common.usage import API_CALLS, AUDIT
from services.metering.adapters.sql_store import SqlMeteringStore
from services.metering.adapters.sql_tables import audit_records, usage_events


@pytest.fixture
async def store(store_url: str | None, tmp_path: Path) -> Any:
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"
    s = await SqlMeteringStore.open(url)
    yield s
    await s.close()


def _audit(tenant: str, n: int, outcome: str = "OK") -> MeterEvent:
    return new_event(
        source="storage",
        meter=AUDIT,
        tenant_id=tenant,
        value=1,
        dimensions={
            "principal": f"u-{n}",
            "role": "member",
            "method": "makoto.storage.v1.StorageService.GetItem",
            "resource": f"collection=notes,sort_key=s{n}",
            "outcome": outcome,
        },
    )


async def _chain(store: SqlMeteringStore, tenant: str) -> list[dict[str, Any]]:
    return await store.audit.records(tenant, after_seq=0, limit=1000)


async def test_events_are_chained_per_tenant(store: SqlMeteringStore, store_url: str | None) -> None:
    tenant_a, tenant_b = f"audit-a-{id(store) % 10**6}", f"audit-b-{id(store) % 10**6}"
    first = [_audit(tenant_a, i) for i in range(3)] + [_audit(tenant_b, 9, "PERMISSION_DENIED")]
    usage = new_event(source="storage", meter=API_CALLS, tenant_id=tenant_a, value=1)
    assert await store.insert_events([*first, usage]) == 5
    # Redelivery (the spool is at-least-once) changes nothing.
    assert await store.insert_events([*first, usage]) == 0
    assert await store.insert_events([_audit(tenant_a, 3)]) == 1
    a, b = await _chain(store, tenant_a), await _chain(store, tenant_b)
    assert [r["seq"] for r in a] == [1, 2, 3, 4] and [r["seq"] for r in b] == [1]
    assert a[0]["prev_hash"] == GENESIS and a[1]["prev_hash"] == a[0]["hash"]
    assert b[0]["outcome"] == "PERMISSION_DENIED" and b[0]["resource"] == "collection=notes,sort_key=s9"
    assert verify(tenant_a, a).ok and verify(tenant_b, b).ok
    # Audit events are not usage: they never reach the usage table (nor invoices).
    async with store._engine.connect() as conn:
        types = (
            await conn.execute(sa.select(usage_events.c.type).where(usage_events.c.subject == tenant_a))
        ).scalars()
        assert list(types) == [API_CALLS]
    # A chain's records verify only under their own tenant id.
    assert not verify(tenant_b, a).ok


async def _tamper(store: SqlMeteringStore, statement: Any) -> None:
    async with store._engine.begin() as conn:
        await conn.execute(statement)


async def test_changed_or_removed_records_are_detected(store: SqlMeteringStore) -> None:
    tenant = f"tamper-{id(store) % 10**6}"
    await store.insert_events([_audit(tenant, i, "PERMISSION_DENIED" if i == 2 else "OK") for i in range(5)])
    t = audit_records.c
    assert verify(tenant, await _chain(store, tenant)).ok

    # 1. A refusal rewritten as OK.
    await _tamper(store, audit_records.update().where(t.tenant_id == tenant, t.seq == 3).values(outcome="OK"))
    verdict = verify(tenant, await _chain(store, tenant))
    assert not verdict.ok and verdict.bad_seq == 3 and "changed" in verdict.reason
    await _tamper(
        store,
        audit_records.update().where(t.tenant_id == tenant, t.seq == 3).values(outcome="PERMISSION_DENIED"),
    )
    assert verify(tenant, await _chain(store, tenant)).ok

    # 2. The same edit with the record's own hash recomputed: the next record's link breaks.
    from services.common.audit_chain import record_hash

    row = (await _chain(store, tenant))[2]
    forged = {**row, "outcome": "OK"}
    forged["hash"] = record_hash(forged)
    await _tamper(
        store,
        audit_records.update()
        .where(t.tenant_id == tenant, t.seq == 3)
        .values(outcome="OK", hash=forged["hash"]),
    )
    verdict = verify(tenant, await _chain(store, tenant))
    assert not verdict.ok and verdict.bad_seq == 4 and "prev_hash" in verdict.reason

    # 3. A record deleted from the middle.
    await _tamper(store, audit_records.delete().where(t.tenant_id == tenant, t.seq == 3))
    verdict = verify(tenant, await _chain(store, tenant))
    assert not verdict.ok and verdict.bad_seq == 4 and "missing" in verdict.reason


async def test_a_columnar_batch_chains_its_audit_events_like_the_event_path(
    store: SqlMeteringStore, tmp_path: Path, store_url: str | None
) -> None:
    """RecordUsage's hot path (columns) with audit events mixed in: the same chain, records and
    usage rows as the event path gives, and a redelivery changes nothing."""
    from services.metering.usage_columns import columns_from_proto

    tenant = f"audit-col-{id(store) % 10**6}"
    mixed: list[MeterEvent] = []
    for i in range(6):
        mixed.append(_audit(tenant, i, "OK" if i % 2 else "PERMISSION_DENIED"))
        mixed.append(new_event(source="storage", meter=API_CALLS, tenant_id=tenant, value=1))
    columns = columns_from_proto([e.to_proto() for e in mixed])
    assert columns is not None
    assert await store.insert_columns(columns) == 12
    assert await store.insert_columns(columns) == 0
    chain = await _chain(store, tenant)
    assert [r["event_id"] for r in chain] == [e.id for e in mixed if e.type == AUDIT]
    assert [r["outcome"] for r in chain] == ["PERMISSION_DENIED", "OK"] * 3
    assert chain[0]["resource"] == "collection=notes,sort_key=s0" and chain[0]["principal"] == "u-0"
    assert verify(tenant, chain).ok
    async with store.engine.connect() as conn:
        kinds = (
            await conn.execute(
                sa.select(usage_events.c.type, sa.func.count())
                .where(usage_events.c.subject == tenant)
                .group_by(usage_events.c.type)
            )
        ).all()
    # Audit events live in the chain only, as on the event path.
    assert dict(kinds) == {API_CALLS: 6}

    # The event path on a second tenant gives byte-identical records but for ids and tenant.
    other = f"audit-ev-{id(store) % 10**6}"
    await store.insert_events([_audit(other, i, "OK" if i % 2 else "PERMISSION_DENIED") for i in range(6)])
    strip = ("tenant_id", "event_id", "hash", "prev_hash", "time_us")
    assert [{k: v for k, v in r.items() if k not in strip} for r in await _chain(store, other)] == [
        {k: v for k, v in r.items() if k not in strip} for r in chain
    ]

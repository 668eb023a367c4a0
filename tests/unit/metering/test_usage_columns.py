"""The RecordUsage fast path (services/metering/usage_columns.py) against protovalidate: it may
only accept what the proto's rules (and the store's time range) accept, it must take ordinary
batches, and it must produce the same rows as the general MeterEvent conversion. Then the same
through a running MeteringService and on the store, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from makoto.metering.v1 import metering_pb2

from services.common.errors import InvalidArgument
from services.common.identity import Role
from services.common.interceptor import validate_message
from services.common.metering_client import MeterEvent
from services.metering.adapters.sql_store import (
    PG_INSERT_ARRAYS,
    PG_INSERT_JOINED,
    SqlMeteringStore,
    pg_insert,
)
from services.metering.adapters.sql_tables import usage_events
from services.metering.periods import MAX_US, to_us
from services.metering.usage_columns import UsageColumns, columns_from_proto
from tests.support import bearer

from .conftest import Metering, new_tenant
from .test_service import query

APR = datetime(2025, 4, 1, tzinfo=UTC)
MAY = datetime(2025, 5, 1, tzinfo=UTC)
Edit = Callable[[metering_pb2.UsageEvent], None]


def good(i: int, tenant: str = "t-columns") -> metering_pb2.UsageEvent:
    e = metering_pb2.UsageEvent(
        id=f"{tenant}-{i}",
        source="storage",
        type="api_calls",
        subject=tenant,
        value=i - 3,
        dimensions={"method": "/makoto.storage.v1.StorageService/GetItem", "status": "OK"},
    )
    e.time.seconds, e.time.nanos = 1_743_465_600 + i, 123_456_789
    return e


def _set(field: str, value: object) -> Edit:
    return lambda e: setattr(e, field, value)


def _dims(d: dict[str, str]) -> Edit:
    def edit(e: metering_pb2.UsageEvent) -> None:
        e.dimensions.clear()
        e.dimensions.update(d)

    return edit


def _time(seconds: int, nanos: int = 0) -> Edit:
    def edit(e: metering_pb2.UsageEvent) -> None:
        e.time.seconds, e.time.nanos = seconds, nanos

    return edit


# (what, edit, valid per the rules and the store's time range)
CASES: list[tuple[str, Edit, bool]] = [
    ("ordinary", lambda e: None, True),
    ("no dimensions", _dims({}), True),
    ("id empty", _set("id", ""), False),
    ("id 128 chars", _set("id", "x" * 128), True),
    ("id 129 chars", _set("id", "x" * 129), False),
    ("id 128 code points, 256 bytes", _set("id", "é" * 128), True),
    ("id 129 code points", _set("id", "é" * 129), False),
    ("source empty", _set("source", ""), False),
    ("source 64", _set("source", "s" * 64), True),
    ("source 65", _set("source", "s" * 65), False),
    ("type upper case", _set("type", "API_calls"), False),
    ("type trailing newline", _set("type", "api_calls\n"), False),
    ("type leading digit", _set("type", "1calls"), False),
    ("type 63 chars", _set("type", "a" * 63), True),
    ("type 64 chars", _set("type", "a" * 64), False),
    ("subject too short", _set("subject", "ab"), False),
    ("subject 3 chars", _set("subject", "abc"), True),
    ("subject with a dot", _set("subject", "t-a.b"), False),
    ("subject trailing newline", _set("subject", "t-columns\n"), False),
    ("time unset", lambda e: e.ClearField("time"), False),
    ("time before 1970", _time(-1), False),
    ("time at the epoch", _time(0), True),
    ("time at the store's end", _time(MAX_US // 1_000_000), True),
    ("time after the store's end", _time(MAX_US // 1_000_000 + 1), False),
    ("nanos negative", _time(10, -1), False),
    ("16 dimensions", _dims({f"k{i}": "v" for i in range(16)}), True),
    ("17 dimensions", _dims({f"k{i}": "v" for i in range(17)}), False),
    ("dimension key upper case", _dims({"Method": "x"}), False),
    ("dimension key trailing newline", _dims({"method\n": "x"}), False),
    ("dimension value 256", _dims({"k": "v" * 256}), True),
    ("dimension value 256 code points", _dims({"k": "ü" * 256}), True),
    ("dimension value 257", _dims({"k": "v" * 257}), False),
    ("dimension value needing escapes", _dims({"k": 'a"b\\c\n\x00\u2028'}), True),
]


def _verdict(request: metering_pb2.RecordUsageRequest) -> bool:
    """What the general path says: protovalidate, then the store's time range."""
    try:
        validate_message(request)
    except InvalidArgument:
        return False
    return all(
        e.time.nanos >= 0 and 0 <= to_us(e.time.ToDatetime(tzinfo=UTC)) <= MAX_US for e in request.events
    )


@pytest.mark.parametrize(("what", "edit", "valid"), CASES, ids=[c[0] for c in CASES])
def test_fast_path_agrees_with_protovalidate(what: str, edit: Edit, valid: bool) -> None:
    events = [good(i) for i in range(5)]
    edit(events[3])
    request = metering_pb2.RecordUsageRequest(events=events)
    assert _verdict(request) is valid, f"case {what!r} is mislabelled"
    columns = columns_from_proto(request.events)
    # Never accept what the rules refuse; and take every valid case (none of them is exotic).
    assert (columns is not None) is valid
    if columns is None:
        return
    general = UsageColumns.from_events([MeterEvent.from_proto(e) for e in request.events])
    assert columns.ids == general.ids
    assert (columns.sources, columns.types, columns.subjects) == (
        general.sources,
        general.types,
        general.subjects,
    )
    assert columns.times_us == general.times_us
    assert columns.values == general.values
    assert [json.loads(d) for d in columns.dimensions] == [dict(e.dimensions) for e in request.events]


@pytest.mark.parametrize("count", [0, 1, 1000, 1001])
def test_fast_path_batch_size_is_the_proto_rule(count: int) -> None:
    request = metering_pb2.RecordUsageRequest(events=[good(i) for i in range(count)])
    assert (columns_from_proto(request.events) is not None) is _verdict(request) is (1 <= count <= 1000)


async def test_service_refuses_a_bad_event_with_its_field(metering: Metering) -> None:
    tenant = new_tenant()
    bad_key = good(1, tenant)
    bad_key.dimensions["Bad"] = "x"
    cases = {"events[1].dimensions": bad_key, "events[1].id": good(1, tenant)}
    cases["events[1].id"].id = ""
    for field, bad in cases.items():
        request = metering_pb2.RecordUsageRequest(events=[good(0, tenant), bad, good(2, tenant)])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await metering.stub.RecordUsage(request, metadata=bearer(metering.settings, Role.SERVICE))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (err.value.details() or "")
    assert await query(metering, tenant, "api_calls", APR, MAY) == []


async def test_service_stores_a_fast_path_batch_exactly(metering: Metering) -> None:
    tenant = new_tenant()
    events = [good(i, tenant) for i in range(1000)]
    for e in events:
        e.time.seconds = int(APR.timestamp()) + 60 * (e.value + 3)
    events[7].dimensions["note"] = 'quote " and é'
    events.append(good(5, tenant))  # a repeat within the batch: the first stands
    events[-1].value = 10_000
    md = bearer(metering.settings, Role.SERVICE)
    reply = await metering.stub.RecordUsage(
        metering_pb2.RecordUsageRequest(events=events[:1000]), metadata=md
    )
    assert (reply.accepted, reply.duplicates) == (1000, 0)
    reply = await metering.stub.RecordUsage(metering_pb2.RecordUsageRequest(events=events[-3:]), metadata=md)
    assert (reply.accepted, reply.duplicates) == (0, 3)
    rows = await query(metering, tenant, "api_calls", APR, MAY, group_by=["note"])
    assert sorted((r[2]["note"], r[3]) for r in rows) == [("", sum(range(-3, 997)) - 4), ('quote " and é', 4)]


async def test_store_insert_columns_first_of_a_repeated_id_stands(
    store_url: str | None, tmp_path: Path
) -> None:
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"
    store = await SqlMeteringStore.open(url)
    try:
        tenant = new_tenant()
        events = [good(i, tenant) for i in range(3)] + [good(1, tenant)]
        events[-1].value = 999
        columns = columns_from_proto(events)
        assert columns is not None
        assert await store.insert_columns(columns) == 3
        assert await store.insert_columns(columns) == 0
        total = await store.totals(tenant_id=tenant, meters=["api_calls"], start_us=0, end_us=MAX_US)
        assert total == {"api_calls": -3 + -2 + -1}
    finally:
        await store.close()


def test_pg_insert_joins_columns_unless_a_value_holds_the_separator() -> None:
    ordinary = columns_from_proto([good(i) for i in range(3)])
    assert ordinary is not None
    assert pg_insert(ordinary, 1)[0] == PG_INSERT_JOINED
    for field in ("id", "source"):
        events = [good(i) for i in range(3)]
        setattr(events[1], field, f"a\x1f{field}")
        columns = columns_from_proto(events)
        assert columns is not None  # valid per the rules: any string
        assert pg_insert(columns, 1)[0] == PG_INSERT_ARRAYS
    lone = UsageColumns([""], ["s"], ["api_calls"], ["t-abc"], [0], [1], ["{}"])
    assert pg_insert(lone, 1)[0] == PG_INSERT_ARRAYS  # string_to_array('') is empty, not ['']


@pytest.mark.parametrize(
    "odd",
    [
        {},
        {"id": "a\x1fb"},
        {"source": "s\x1fs"},
        {"dimensions": {"k": "v\x1fw,x"}},
        {"value": -(2**63)},
        {"value": 2**63 - 1},
    ],
    ids=["ordinary", "separator in id", "separator in source", "separator in dimension", "min", "max"],
)
async def test_store_keeps_every_value_exactly(
    store_url: str | None, tmp_path: Path, odd: dict[str, object]
) -> None:
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"
    store = await SqlMeteringStore.open(url)
    try:
        tenant = new_tenant()
        events = [good(i, tenant) for i in range(4)]
        for field, value in odd.items():
            if field == "dimensions":
                events[2].dimensions.update(value)  # type: ignore[call-overload]
            else:
                setattr(events[2], field, value)
        columns = columns_from_proto(events)
        assert columns is not None
        assert await store.insert_columns(columns) == 4
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        usage_events.c.id,
                        usage_events.c.source,
                        usage_events.c.time_us,
                        usage_events.c.value,
                        usage_events.c.dimensions,
                    )
                    .where(usage_events.c.subject == tenant)
                    .order_by(usage_events.c.time_us)
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            (e.id, e.source, e.time.seconds * 1_000_000 + e.time.nanos // 1000, e.value, dict(e.dimensions))
            for e in events
        ]
    finally:
        await store.close()

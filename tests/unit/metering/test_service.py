"""MeteringService through a real grpc.aio server with real tokens, on SQLite and PostgreSQL.

Every test uses fresh tenant ids, so tests share one server per backend. Times are in April 2025
(30 days) unless a test is about "now", so the service's own api_calls events (recorded at the
current time for each tenant RPC) never fall into a range a test sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from makoto.metering.v1 import metering_pb2

from services.common.identity import Role
from tests.support import bearer
from tests.unit.metering.conftest import Metering, new_tenant

APR = datetime(2025, 4, 1, tzinfo=UTC)
MAY = datetime(2025, 5, 1, tzinfo=UTC)


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def event(
    event_id: str,
    tenant: str,
    meter: str,
    when: datetime,
    value: int,
    dimensions: Mapping[str, str] | None = None,
) -> metering_pb2.UsageEvent:
    return metering_pb2.UsageEvent(
        id=event_id,
        source="test",
        type=meter,
        subject=tenant,
        time=ts(when),
        value=value,
        dimensions=dict(dimensions or {}),
    )


async def record(m: Metering, events: Sequence[metering_pb2.UsageEvent]) -> metering_pb2.RecordUsageResponse:
    return await m.stub.RecordUsage(
        metering_pb2.RecordUsageRequest(events=list(events)), metadata=bearer(m.settings, Role.SERVICE)
    )


async def query(
    m: Metering,
    tenant: str,
    meter: str,
    start: datetime | None = None,
    end: datetime | None = None,
    window: int = metering_pb2.USAGE_WINDOW_UNSPECIFIED,
    group_by: Sequence[str] = (),
    role: Role = Role.MEMBER,
    token_tenant: str | None = None,
) -> list[tuple[datetime, datetime, dict[str, str], int]]:
    request = metering_pb2.QueryUsageRequest(tenant_id=tenant, meter=meter, window=window, group_by=group_by)
    if start is not None:
        request.start_time.CopyFrom(ts(start))
    if end is not None:
        request.end_time.CopyFrom(ts(end))
    who = None if role is Role.PLATFORM_ADMIN else (token_tenant or tenant)
    reply = await m.stub.QueryUsage(request, metadata=bearer(m.settings, role, who))
    assert reply.meter == meter
    return [
        (
            r.window_start.ToDatetime(tzinfo=UTC),
            r.window_end.ToDatetime(tzinfo=UTC),
            dict(r.group),
            r.value,
        )
        for r in reply.rows
    ]


async def invoice(
    m: Metering, tenant: str, month: str, role: Role = Role.TENANT_ADMIN, token_tenant: str | None = None
) -> metering_pb2.Invoice:
    who = None if role is Role.PLATFORM_ADMIN else (token_tenant or tenant)
    return await m.stub.GetInvoice(
        metering_pb2.GetInvoiceRequest(tenant_id=tenant, month=month), metadata=bearer(m.settings, role, who)
    )


def lines(inv: metering_pb2.Invoice) -> dict[str, tuple[str, str, str, str]]:
    return {li.meter: (li.quantity, li.unit, li.unit_price, li.amount) for li in inv.line_items}


# ---------------------------------------------------------------------------------------------
# RecordUsage


async def test_record_usage_is_idempotent_by_id(metering: Metering) -> None:
    tenant = new_tenant()
    first = [event(f"{tenant}-{i}", tenant, "api_calls", APR + timedelta(hours=i), 10 + i) for i in range(3)]
    reply = await record(metering, first)
    assert (reply.accepted, reply.duplicates) == (3, 0)

    # Same ids again -- one of them with different content -- plus one new id, and a repeat
    # of the new id within the same request.
    changed = event(f"{tenant}-1", tenant, "api_calls", APR + timedelta(hours=1), 999_999)
    new = event(f"{tenant}-new", tenant, "api_calls", APR + timedelta(hours=5), 7)
    reply = await record(metering, [first[0], changed, first[2], new, new])
    assert (reply.accepted, reply.duplicates) == (1, 4)

    rows = await query(metering, tenant, "api_calls", APR, MAY)
    assert [r[3] for r in rows] == [10 + 11 + 12 + 7]  # the first version of a repeated id stands


@pytest.mark.parametrize("role", [Role.MEMBER, Role.TENANT_ADMIN, Role.PLATFORM_ADMIN])
async def test_record_usage_is_for_services_only(metering: Metering, role: Role) -> None:
    tenant = new_tenant()
    request = metering_pb2.RecordUsageRequest(events=[event(f"{tenant}-x", tenant, "api_calls", APR, 5)])
    who = None if role is Role.PLATFORM_ADMIN else tenant
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metering.stub.RecordUsage(request, metadata=bearer(metering.settings, role, who))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metering.stub.RecordUsage(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await query(metering, tenant, "api_calls", APR, MAY) == []


async def test_record_usage_validates_events(metering: Metering) -> None:
    tenant = new_tenant()
    good = event(f"{tenant}-ok", tenant, "api_calls", APR, 1)
    for bad in (
        event(f"{tenant}-1", "Not A Tenant", "api_calls", APR, 1),
        event(f"{tenant}-2", tenant, "API calls", APR, 1),
        event(f"{tenant}-3", tenant, "api_calls", datetime(1969, 12, 31, tzinfo=UTC), 1),
        metering_pb2.UsageEvent(id=f"{tenant}-4", source="test", type="api_calls", subject=tenant, value=1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await record(metering, [good, bad])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a refused request stores nothing, not even its valid events
    assert await query(metering, tenant, "api_calls", APR, MAY) == []


# ---------------------------------------------------------------------------------------------
# QueryUsage


@pytest.fixture(scope="module")
async def tokens_tenant(metering: Metering) -> str:
    """A tenant with LLM token events at hand-picked times (plus noise that must not count)."""
    tenant = new_tenant()
    other = new_tenant()
    at = APR
    await record(
        metering,
        [
            event(f"{tenant}-a", tenant, "llm_prompt_tokens", at + timedelta(minutes=10), 5, {"model": "m1"}),
            event(
                f"{tenant}-b",
                tenant,
                "llm_prompt_tokens",
                at + timedelta(minutes=50),
                7,
                {"model": "m2", "provider": "p"},
            ),
            event(
                f"{tenant}-c",
                tenant,
                "llm_prompt_tokens",
                at + timedelta(hours=1, minutes=5),
                11,
                {"model": "m1"},
            ),
            event(
                f"{tenant}-d",
                tenant,
                "llm_prompt_tokens",
                at + timedelta(days=1, hours=12),
                13,
                {"model": "m1"},
            ),
            event(
                f"{tenant}-e",
                tenant,
                "llm_prompt_tokens",
                MAY + timedelta(days=2, hours=9),
                17,
                {"model": "m2"},
            ),
            # noise: another meter, another tenant, before the range, at the range's (exclusive) end
            event(f"{tenant}-f", tenant, "llm_completion_tokens", at + timedelta(minutes=20), 100),
            event(f"{other}-g", other, "llm_prompt_tokens", at + timedelta(minutes=20), 1000),
            event(f"{tenant}-h", tenant, "llm_prompt_tokens", at - timedelta(seconds=1), 10_000),
            event(f"{tenant}-i", tenant, "llm_prompt_tokens", MAY + timedelta(days=3), 100_000),
        ],
    )
    return tenant


END = MAY + timedelta(days=3)  # 2025-05-04T00:00Z, exclusive


async def test_query_whole_range(metering: Metering, tokens_tenant: str) -> None:
    rows = await query(metering, tokens_tenant, "llm_prompt_tokens", APR, END)
    assert rows == [(APR, END, {}, 5 + 7 + 11 + 13 + 17)]


async def test_query_hour_windows(metering: Metering, tokens_tenant: str) -> None:
    rows = await query(metering, tokens_tenant, "llm_prompt_tokens", APR, END, metering_pb2.USAGE_WINDOW_HOUR)
    h = timedelta(hours=1)
    assert rows == [
        (APR, APR + h, {}, 12),
        (APR + h, APR + 2 * h, {}, 11),
        (APR + timedelta(days=1, hours=12), APR + timedelta(days=1, hours=13), {}, 13),
        (MAY + timedelta(days=2, hours=9), MAY + timedelta(days=2, hours=10), {}, 17),
    ]


async def test_query_pages_through_the_rows(metering: Metering, tokens_tenant: str) -> None:
    """page_size/page_token (AIP-158): the pages together are the one-shot answer; a token
    replayed on another query is refused."""

    def request(token: str = "", meter: str = "llm_prompt_tokens") -> metering_pb2.QueryUsageRequest:
        r = metering_pb2.QueryUsageRequest(
            tenant_id=tokens_tenant,
            meter=meter,
            window=metering_pb2.USAGE_WINDOW_HOUR,
            page_size=3,
            page_token=token,
        )
        r.start_time.CopyFrom(ts(APR))
        r.end_time.CopyFrom(ts(END))
        return r

    md = bearer(metering.settings, Role.MEMBER, tokens_tenant)
    first = await metering.stub.QueryUsage(request(), metadata=md)
    assert len(first.rows) == 3 and first.next_page_token
    second = await metering.stub.QueryUsage(request(first.next_page_token), metadata=md)
    assert [r.value for r in (*first.rows, *second.rows)] == [12, 11, 13, 17]
    assert second.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metering.stub.QueryUsage(request(first.next_page_token, "llm_completion_tokens"), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_query_hour_windows_grouped(metering: Metering, tokens_tenant: str) -> None:
    rows = await query(
        metering,
        tokens_tenant,
        "llm_prompt_tokens",
        APR,
        APR + timedelta(days=1),
        metering_pb2.USAGE_WINDOW_HOUR,
        group_by=["model"],
    )
    h = timedelta(hours=1)
    assert rows == [
        (APR, APR + h, {"model": "m1"}, 5),
        (APR, APR + h, {"model": "m2"}, 7),
        (APR + h, APR + 2 * h, {"model": "m1"}, 11),
    ]


async def test_query_day_windows(metering: Metering, tokens_tenant: str) -> None:
    rows = await query(metering, tokens_tenant, "llm_prompt_tokens", APR, END, metering_pb2.USAGE_WINDOW_DAY)
    d = timedelta(days=1)
    assert rows == [
        (APR, APR + d, {}, 23),
        (APR + d, APR + 2 * d, {}, 13),
        (MAY + 2 * d, MAY + 3 * d, {}, 17),
    ]


async def test_query_month_windows_clipped_and_grouped(metering: Metering, tokens_tenant: str) -> None:
    rows = await query(
        metering,
        tokens_tenant,
        "llm_prompt_tokens",
        APR,
        END,
        metering_pb2.USAGE_WINDOW_MONTH,
        group_by=["model", "provider"],
    )
    assert rows == [
        (APR, MAY, {"model": "m1", "provider": ""}, 5 + 11 + 13),
        (APR, MAY, {"model": "m2", "provider": "p"}, 7),
        (MAY, END, {"model": "m2", "provider": ""}, 17),  # clipped to the range's end
    ]


async def test_query_windows_clipped_to_an_unaligned_range(metering: Metering, tokens_tenant: str) -> None:
    start, end = APR + timedelta(minutes=30), APR + timedelta(hours=1, minutes=30)
    rows = await query(
        metering, tokens_tenant, "llm_prompt_tokens", start, end, metering_pb2.USAGE_WINDOW_HOUR
    )
    assert rows == [
        (start, APR + timedelta(hours=1), {}, 7),
        (APR + timedelta(hours=1), end, {}, 11),
    ]


async def test_query_defaults_to_this_month_until_now(metering: Metering) -> None:
    tenant = new_tenant()
    now = datetime.now(UTC)
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    await record(
        metering,
        [
            event(f"{tenant}-now", tenant, "llm_completion_tokens", now - timedelta(seconds=1), 42),
            event(f"{tenant}-old", tenant, "llm_completion_tokens", month_start - timedelta(seconds=1), 1000),
        ],
    )
    rows = await query(metering, tenant, "llm_completion_tokens")
    assert len(rows) == 1
    start, end, group, value = rows[0]
    assert (start, group, value) == (month_start, {}, 42)
    assert now <= end <= datetime.now(UTC)


async def test_query_rejects_an_empty_or_inverted_range(metering: Metering) -> None:
    tenant = new_tenant()
    for start, end in [(MAY, APR), (APR, APR)]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await query(metering, tenant, "api_calls", start, end)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await query(metering, tenant, "api_calls", APR, MAY, group_by=["model", "model"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------------------------
# GetInvoice


async def _april_usage(m: Metering, tenant: str) -> None:
    """12,345 api calls; 3 GB stored for the first half of April then 0; 1,000,000 tokens;
    and usage outside April that must not count."""
    half = APR + timedelta(days=15)
    await record(
        m,
        [
            event(f"{tenant}-api1", tenant, "api_calls", APR + timedelta(hours=3), 12_000),
            event(f"{tenant}-api2", tenant, "api_calls", MAY - timedelta(microseconds=1), 345),
            event(f"{tenant}-api-may", tenant, "api_calls", MAY, 50_000),
            event(f"{tenant}-api-mar", tenant, "api_calls", APR - timedelta(microseconds=1), 50_000),
            event(f"{tenant}-put", tenant, "storage_bytes", APR, 3_000_000_000, {"backend": "LOCAL"}),
            event(f"{tenant}-del", tenant, "storage_bytes", half, -3_000_000_000, {"backend": "LOCAL"}),
            event(f"{tenant}-in", tenant, "llm_prompt_tokens", APR + timedelta(days=3), 600_000),
            event(f"{tenant}-out", tenant, "llm_completion_tokens", APR + timedelta(days=3), 400_000),
        ],
    )


async def test_invoice_exact_decimals(metering: Metering) -> None:
    tenant = new_tenant()
    await _april_usage(metering, tenant)
    inv = await invoice(metering, tenant, "2025-04")
    assert (inv.tenant_id, inv.month, inv.currency, inv.price_plan_id, inv.final) == (
        tenant,
        "2025-04",
        "USD",
        "default",
        True,
    )
    assert lines(inv) == {
        # 12,345 x 0.0001
        "api_calls": ("12345", "call", "0.0001", "1.234500"),
        # 3e9 bytes for 15 of 30 days = 1.5e9 bytes on average = 1.5 GB-month; x 0.023
        "storage_bytes": ("1.500000000", "GB-month", "0.023", "0.034500"),
        "llm_prompt_tokens": ("600000", "token", "0.00002", "12.000000"),
        "llm_completion_tokens": ("400000", "token", "0.00002", "8.000000"),
    }
    assert inv.total == "21.269000"


async def test_invoice_storage_carries_balance_in_and_rounds_half_even(metering: Metering) -> None:
    tenant = new_tenant()
    d = timedelta(days=1)
    await record(
        metering,
        [
            event(f"{tenant}-1", tenant, "storage_bytes", datetime(2025, 2, 10, tzinfo=UTC), 2_000_000_000),
            event(f"{tenant}-2", tenant, "storage_bytes", APR + 10 * d, 1_000_000_000),
            event(f"{tenant}-3", tenant, "storage_bytes", APR + 20 * d, -3_000_000_000),
        ],
    )
    inv = await invoice(metering, tenant, "2025-04")
    # (2e9 x 10 days + 3e9 x 10 days + 0 x 10 days) / 30 days = 1,666,666,666.67 bytes
    #   -> 1.666666667 GB-month (to the byte) x 0.023 = 0.038333333341 -> 0.038333
    assert lines(inv)["storage_bytes"] == ("1.666666667", "GB-month", "0.023", "0.038333")
    assert inv.total == "0.038333"
    # March: 2e9 bytes from Feb 10 for the whole month -> exactly 2 GB-month.
    march = await invoice(metering, tenant, "2025-03")
    assert lines(march)["storage_bytes"] == ("2.000000000", "GB-month", "0.023", "0.046000")


async def test_invoice_of_the_running_month_is_not_final(metering: Metering) -> None:
    tenant = new_tenant()
    now = datetime.now(UTC)
    inv = await invoice(metering, tenant, f"{now.year:04d}-{now.month:02d}")
    assert inv.final is False
    assert inv.total == "0.000000"
    assert {li.amount for li in inv.line_items} == {"0.000000"}


@pytest.mark.parametrize("month", ["2025-13", "2025-1", "25-01", "abcd-01", "1969-12", "2025-00", ""])
async def test_invoice_bad_month(metering: Metering, month: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoice(metering, new_tenant(), month)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tenants_cannot_read_each_other(metering: Metering) -> None:
    a, b = new_tenant(), new_tenant()
    await _april_usage(metering, b)
    for role in (Role.MEMBER, Role.TENANT_ADMIN):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await invoice(metering, b, "2025-04", role=role, token_tenant=a)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "21.269" not in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await query(metering, b, "api_calls", APR, MAY, role=role, token_tenant=a)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A's own view shows none of B's usage.
    assert await query(metering, a, "api_calls", APR, MAY) == []
    assert (await invoice(metering, a, "2025-04")).total == "0.000000"
    # The platform-admin reads any tenant.
    assert (await invoice(metering, b, "2025-04", role=Role.PLATFORM_ADMIN)).total == "21.269000"
    rows = await query(metering, b, "api_calls", APR, MAY, role=Role.PLATFORM_ADMIN)
    assert [r[3] for r in rows] == [12_345]


async def test_metering_meters_its_own_tenant_calls(metering: Metering) -> None:
    tenant = new_tenant()
    await invoice(metering, tenant, "2025-04")
    await invoice(metering, tenant, "2025-04")
    await query(metering, tenant, "llm_prompt_tokens", APR, MAY)
    rows = await query(metering, tenant, "api_calls", group_by=["service", "method", "status"])
    assert [(r[2], r[3]) for r in rows] == [
        ({"service": "metering", "method": "GetInvoice", "status": "OK"}, 2),
        ({"service": "metering", "method": "QueryUsage", "status": "OK"}, 1),
    ]


# ---------------------------------------------------------------------------------------------
# Price plans


def admin(m: Metering) -> tuple[tuple[str, str], ...]:
    return bearer(m.settings, Role.PLATFORM_ADMIN)


async def test_default_plan_is_seeded(metering: Metering) -> None:
    plan = await metering.stub.GetPricePlan(
        metering_pb2.GetPricePlanRequest(plan_id="default"), metadata=admin(metering)
    )
    assert plan.currency == "USD"
    assert [(p.meter, p.unit_price, p.unit) for p in plan.prices] == [
        ("api_calls", "0.0001", "call"),
        ("storage_bytes", "0.023", "GB-month"),
        ("llm_prompt_tokens", "0.00002", "token"),
        ("llm_completion_tokens", "0.00002", "token"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metering.stub.GetPricePlan(
            metering_pb2.GetPricePlanRequest(plan_id="nope"), metadata=admin(metering)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_set_price_plan_prices_from_next_month(metering: Metering) -> None:
    tenant = new_tenant()
    plan_id = f"p{tenant}"
    metering.plans.assign(tenant, plan_id)
    await record(metering, [event(f"{tenant}-api", tenant, "api_calls", APR, 5)])

    cheap = metering_pb2.PricePlan(
        plan_id=plan_id,
        currency="EUR",
        prices=[metering_pb2.MeterPrice(meter="api_calls", unit_price="0.0000005")],
    )
    stored = await metering.stub.SetPricePlan(
        metering_pb2.SetPricePlanRequest(plan=cheap), metadata=admin(metering)
    )
    assert [(p.meter, p.unit_price, p.unit) for p in stored.prices] == [("api_calls", "0.0000005", "call")]
    inv = await invoice(metering, tenant, "2025-04")
    # 5 x 0.0000005 = 0.0000025 -> half-even to 6 places -> 0.000002
    assert (inv.price_plan_id, inv.currency, lines(inv)) == (
        plan_id,
        "EUR",
        {"api_calls": ("5", "call", "0.0000005", "0.000002")},
    )
    assert inv.total == "0.000002"

    dearer = metering_pb2.PricePlan(
        plan_id=plan_id,
        currency="EUR",
        prices=[
            metering_pb2.MeterPrice(meter="api_calls", unit_price="0.001", unit="call"),
            metering_pb2.MeterPrice(meter="images", unit_price="0.04", unit="image"),
        ],
    )
    await metering.stub.SetPricePlan(metering_pb2.SetPricePlanRequest(plan=dearer), metadata=admin(metering))
    # The change takes effect next month: April (closed) keeps the prices it was billed with.
    inv = await invoice(metering, tenant, "2025-04")
    assert lines(inv) == {"api_calls": ("5", "call", "0.0000005", "0.000002")}
    assert inv.total == "0.000002"
    got = await metering.stub.GetPricePlan(
        metering_pb2.GetPricePlanRequest(plan_id=plan_id), metadata=admin(metering)
    )
    assert got == dearer


async def test_price_plans_are_for_platform_admins(metering: Metering) -> None:
    tenant = new_tenant()
    plan = metering_pb2.PricePlan(
        plan_id="default", currency="USD", prices=[metering_pb2.MeterPrice(meter="api_calls", unit_price="0")]
    )
    for role in (Role.MEMBER, Role.TENANT_ADMIN, Role.SERVICE):
        who = None if role is Role.SERVICE else tenant
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await metering.stub.SetPricePlan(
                metering_pb2.SetPricePlanRequest(plan=plan), metadata=bearer(metering.settings, role, who)
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await metering.stub.GetPricePlan(
                metering_pb2.GetPricePlanRequest(plan_id="default"),
                metadata=bearer(metering.settings, role, who),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the default plan is untouched
    got = await metering.stub.GetPricePlan(
        metering_pb2.GetPricePlanRequest(plan_id="default"), metadata=admin(metering)
    )
    assert got.prices[0].unit_price == "0.0001"


@pytest.mark.parametrize(
    "prices",
    [
        [("api_calls", "1e-5")],
        [("api_calls", "-1")],
        [("api_calls", "0.1.2")],
        [("api_calls", "NaN")],
        [("api_calls", "0.1"), ("api_calls", "0.2")],
        [("Bad Meter", "0.1")],
    ],
)
async def test_set_price_plan_validates(metering: Metering, prices: list[tuple[str, str]]) -> None:
    plan = metering_pb2.PricePlan(
        plan_id="invalid-plan",
        currency="USD",
        prices=[metering_pb2.MeterPrice(meter=m, unit_price=p) for m, p in prices],
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metering.stub.SetPricePlan(
            metering_pb2.SetPricePlanRequest(plan=plan), metadata=admin(metering)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metering.stub.GetPricePlan(
            metering_pb2.GetPricePlanRequest(plan_id="invalid-plan"), metadata=admin(metering)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_invoice_on_a_missing_plan_is_a_failed_precondition(metering: Metering) -> None:
    tenant = new_tenant()
    metering.plans.assign(tenant, "ghost-plan")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoice(metering, tenant, "2025-04")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

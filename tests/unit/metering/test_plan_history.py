"""Price plans with history, on SQLite and PostgreSQL: a plan change takes effect at the start
of the next month, so the running month and closed months keep their prices; invoices are
reproducible and export to JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from services.common.metering_client import MeterEvent
from services.metering.adapters.sql_store import SqlMeteringStore
from services.metering.export import invoice_csv, invoice_json
from services.metering.metering import Metering
from services.metering.model import MeterPrice, PricePlan
from services.metering.periods import to_us
from services.metering.plans import FixedPlanResolver
from services.metering.servicer import invoice_to_proto


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(store_url: str | None, tmp_path: Path) -> AsyncIterator[SqlMeteringStore]:
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"
    opened = await SqlMeteringStore.open(url)
    try:
        yield opened
    finally:
        await opened.close()


def api_plan(plan_id: str, price: str) -> PricePlan:
    return PricePlan(plan_id, "EUR", (MeterPrice("api_calls", Decimal(price), "call"),))


def calls(tenant: str, when: datetime, n: int) -> MeterEvent:
    return MeterEvent(f"{tenant}-{when:%Y%m%d}", "test", "api_calls", tenant, when, n, {"status": "OK"})


async def test_a_plan_change_never_reprices_a_month_that_began(store: SqlMeteringStore) -> None:
    tenant = f"t-{id(store):x}"[-12:]
    plan_id = f"p-{tenant}"
    clock = Clock(datetime(2025, 3, 15, tzinfo=UTC))
    metering = Metering(store, store, FixedPlanResolver({tenant: plan_id}), clock=clock)
    await metering.set_plan(api_plan(plan_id, "0.001"))  # a new plan prices from its first month
    await store.insert_events([calls(tenant, datetime(2025, m, 10, tzinfo=UTC), 1000) for m in (3, 4, 5, 6)])

    async def amounts() -> dict[str, str]:
        return {
            m: str((await metering.invoice(tenant, m)).total)
            for m in ("2025-03", "2025-04", "2025-05", "2025-06")
        }

    assert await amounts() == {m: "1.000000" for m in ("2025-03", "2025-04", "2025-05", "2025-06")}

    clock.now = datetime(2025, 4, 10, tzinfo=UTC)  # mid-April: April keeps its price
    await metering.set_plan(api_plan(plan_id, "0.002"))
    assert await amounts() == {
        "2025-03": "1.000000",
        "2025-04": "1.000000",
        "2025-05": "2.000000",
        "2025-06": "2.000000",
    }
    # Two changes in one month: the later one replaces the pending version.
    await metering.set_plan(api_plan(plan_id, "0.003"))
    clock.now = datetime(2025, 5, 20, tzinfo=UTC)
    await metering.set_plan(api_plan(plan_id, "0.005"))
    assert await amounts() == {
        "2025-03": "1.000000",
        "2025-04": "1.000000",
        "2025-05": "3.000000",
        "2025-06": "5.000000",
    }
    may = await metering.invoice(tenant, "2025-05")
    assert may.price_plan_effective_from_us == to_us(datetime(2025, 5, 1, tzinfo=UTC))
    # A closed month is reproduced exactly, export and all, whatever changes later.
    april_before = invoice_json(invoice_to_proto(await metering.invoice(tenant, "2025-04")))
    clock.now = datetime(2025, 6, 5, tzinfo=UTC)
    await metering.set_plan(api_plan(plan_id, "0.009"))
    assert invoice_json(invoice_to_proto(await metering.invoice(tenant, "2025-04"))) == april_before
    # The plan as GetPricePlan shows it is its latest definition.
    assert (await metering.get_plan(plan_id)).prices[0].unit_price == Decimal("0.009")


async def test_existing_plans_became_their_first_version(store: SqlMeteringStore) -> None:
    """Migration 0003 turned the seeded default plan into a version in force since ever."""
    version = await store.plan_in_force("default", to_us(datetime(1990, 1, 1, tzinfo=UTC)))
    assert version is not None and version.effective_from_us == 0
    assert version.price_of("api_calls") == MeterPrice("api_calls", Decimal("0.0001"), "call")
    assert await store.plan_in_force("no-such-plan", 0) is None


async def test_invoice_exports_json_and_csv_with_exact_decimals(store: SqlMeteringStore) -> None:
    tenant = f"x-{id(store):x}"[-12:]
    metering = Metering(store, store, FixedPlanResolver(), clock=Clock(datetime(2025, 6, 1, tzinfo=UTC)))
    await store.insert_events([calls(tenant, datetime(2025, 4, 3, tzinfo=UTC), 12_345)])
    invoice = invoice_to_proto(await metering.invoice(tenant, "2025-04"))
    body = json.loads(invoice_json(invoice))
    assert body["total"] == "1.234500" and body["final"] is True
    assert body["lines"][0] == {
        "meter": "api_calls",
        "quantity": "12345",
        "unit": "call",
        "unit_price": "0.0001",
        "amount": "1.234500",
    }
    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice))))
    assert [r["meter"] for r in rows] == [li.meter for li in invoice.line_items] + ["TOTAL"]
    assert rows[-1]["amount"] == "1.234500"
    assert sum(Decimal(r["amount"]) for r in rows[:-1]) == Decimal(rows[-1]["amount"])
    assert {r["tenant_id"] for r in rows} == {tenant}

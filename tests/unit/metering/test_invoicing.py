"""The invoice arithmetic on its own: level integration, GB-month and money rounding, months."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest

from services.common.errors import InvalidArgument
from services.metering.invoices import gb_months, integrate_level, price
from services.metering.model import MeterPrice, PricePlan
from services.metering.periods import DAY_US, Month, from_us
from services.metering.pricing import line_amount, normalize_plan, round_money


async def _iter(items: Sequence[tuple[int, int]]) -> AsyncIterator[tuple[int, int]]:
    for item in items:
        yield item


async def test_integrate_level_carries_the_balance_in() -> None:
    # 2 from before the range, +3 at t=10, -5 at t=20, over [0, 30)
    assert await integrate_level(2, _iter([(10, 3), (20, -5)]), 0, 30) == 2 * 10 + 5 * 10 + 0 * 10


async def test_integrate_level_counts_a_negative_total_as_zero() -> None:
    # a delete whose create was never metered: -4 at t=0, +6 at t=10 -> level 2 from t=10
    assert await integrate_level(0, _iter([(0, -4), (10, 6)]), 0, 20) == 0 * 10 + 2 * 10


async def test_integrate_level_with_no_events() -> None:
    assert await integrate_level(7, _iter([]), 100, 160) == 7 * 60


@pytest.mark.parametrize(
    ("average_bytes_x2", "expected"),
    [(1, "0E-9"), (3, "2E-9"), (5, "2E-9"), (7, "4E-9"), (4, "2E-9")],
)
def test_gb_months_round_half_even_to_a_byte(average_bytes_x2: int, expected: str) -> None:
    month = 2
    # integral / month = average bytes: average_bytes_x2 / 2
    assert gb_months(average_bytes_x2, month) == Decimal(expected)


def test_gb_months_of_a_whole_month() -> None:
    month = 30 * DAY_US
    assert format(gb_months(3 * 10**9 * month // 2, month), "f") == "1.500000000"


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        ("0.0000025", "0.000002"),
        ("0.0000035", "0.000004"),
        ("0.00000250001", "0.000003"),
        ("1.2345", "1.234500"),
        ("-0.0000005", "-0.000000"),
    ],
)
def test_round_money_half_even(amount: str, rounded: str) -> None:
    assert format(round_money(Decimal(amount)), "f") == rounded


def test_line_amount_is_exact_before_rounding() -> None:
    # a float would give 0.1 * 3 = 0.30000000000000004; a huge quantity keeps every digit
    assert line_amount(Decimal(3), Decimal("0.1")) == Decimal("0.300000")
    big = Decimal("123456789012345678901")
    assert line_amount(big, Decimal("0.000000000000000001")) == Decimal("123.456789")


def test_total_is_the_sum_of_rounded_lines() -> None:
    plan = PricePlan(
        "p",
        "USD",
        tuple(MeterPrice(m, Decimal("0.0000005"), "x") for m in ("a", "b", "c")),
    )
    inv = price(
        tenant_id="acme",
        month="2025-04",
        plan=plan,
        quantities={"a": Decimal(1), "b": Decimal(1), "c": Decimal(1)},
        final=True,
    )
    # each line 0.0000005 -> 0.000000 (half-even); the unrounded sum would round to 0.000002
    assert [line.amount for line in inv.lines] == [Decimal("0.000000")] * 3
    assert inv.total == Decimal("0.000000")


def test_normalize_plan_fills_units_and_refuses_duplicates() -> None:
    plan = normalize_plan(
        PricePlan(
            "p", "USD", (MeterPrice("storage_bytes", Decimal(1), ""), MeterPrice("gpu", Decimal(2), ""))
        )
    )
    assert [p.unit for p in plan.prices] == ["GB-month", "unit"]
    with pytest.raises(InvalidArgument):
        normalize_plan(
            PricePlan("p", "USD", (MeterPrice("a", Decimal(1), ""), MeterPrice("a", Decimal(2), "")))
        )


def test_months() -> None:
    dec = Month.parse("2024-12")
    assert (from_us(dec.start_us).isoformat(), from_us(dec.end_us).isoformat()) == (
        "2024-12-01T00:00:00+00:00",
        "2025-01-01T00:00:00+00:00",
    )
    feb = Month.parse("2024-02")
    assert (feb.end_us - feb.start_us) == 29 * DAY_US
    assert str(feb) == "2024-02"
    for bad in ("2024-13", "2024-2", "1969-12", "9999-12", "x", "2024-02-01"):
        with pytest.raises(InvalidArgument):
            Month.parse(bad)

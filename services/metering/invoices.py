"""Monthly invoices: quantities per meter, priced by a plan.

* Counting meters (api_calls, LLM tokens, any other meter a plan prices) bill the sum of the
  month's event values.
* storage_bytes events are signed deltas of bytes stored. Its quantity is GB-month: the
  time-weighted average of bytes stored over the month divided by 10^9, i.e. the integral of the
  running total over the month (starting from the balance carried in from before the month),
  divided by the month's length, divided by 10^9. A running total below zero (a delete whose
  create was never metered) counts as zero. For a month still running, the integral stops at
  now but is still divided by the whole month: the invoice shows what has accrued so far.
  The quantity is rounded (ROUND_HALF_EVEN) to 9 decimal places, i.e. to one byte-month.
* Each line's amount is quantity x unit_price rounded to 6 decimal places with ROUND_HALF_EVEN;
  the total is the sum of the rounded lines. All arithmetic is exact decimal (see pricing.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from decimal import Decimal

from services.common.usage import STORAGE_BYTES
from services.metering.model import Invoice, InvoiceLine, PricePlan
from services.metering.pricing import line_amount, money_sum

BYTES_PER_GB = 10**9
# GB-month quantities are kept to 10^-9 GB-month: one byte-month.
GB_MONTH_PLACES = 9

# Meters whose events are deltas of a level (integrated over time), not counts.
LEVEL_METERS = frozenset({STORAGE_BYTES})


async def integrate_level(
    balance_in: int, deltas: AsyncIterable[tuple[int, int]], start_us: int, end_us: int
) -> int:
    """Integral of max(running total, 0) over [start_us, end_us), in value x microseconds.
    `deltas` are (time_us, delta) ascending within the range; exact integer arithmetic."""
    running = balance_in
    at = start_us
    integral = 0
    async for when, delta in deltas:
        integral += max(running, 0) * (when - at)
        running += delta
        at = when
    if end_us > at:
        integral += max(running, 0) * (end_us - at)
    return integral


def gb_months(byte_microseconds: int, month_us: int) -> Decimal:
    """byte x µs integral -> GB-month, rounded half-even to one byte-month (exact ints)."""
    # average bytes over the month = integral / month_us; round to a whole byte, half to even.
    quotient, remainder = divmod(byte_microseconds, month_us)
    twice = 2 * remainder
    if twice > month_us or (twice == month_us and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-GB_MONTH_PLACES)


def price(
    *,
    tenant_id: str,
    month: str,
    plan: PricePlan,
    quantities: Mapping[str, Decimal],
    final: bool,
) -> Invoice:
    """One line per meter the plan prices (in plan order), quantity 0 where nothing was used."""
    lines = tuple(
        InvoiceLine(
            meter=p.meter,
            quantity=quantities.get(p.meter, Decimal(0)),
            unit=p.unit,
            unit_price=p.unit_price,
            amount=line_amount(quantities.get(p.meter, Decimal(0)), p.unit_price),
        )
        for p in plan.prices
    )
    return Invoice(
        tenant_id=tenant_id,
        month=month,
        currency=plan.currency,
        price_plan_id=plan.plan_id,
        lines=lines,
        total=money_sum(line.amount for line in lines),
        final=final,
        price_plan_effective_from_us=plan.effective_from_us or 0,
    )

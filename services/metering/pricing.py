"""Price plans and money. Money is never a float: prices, quantities and amounts are
decimal.Decimal, computed in a context wide enough to be exact, and rounded only where stated."""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

from services.common.errors import InvalidArgument
from services.common.usage import API_CALLS, LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS, STORAGE_BYTES
from services.metering.model import MeterPrice, PricePlan

DEFAULT_PLAN_ID = "default"
DEFAULT_CURRENCY = "USD"

# Amounts are rounded to this many decimal places (ROUND_HALF_EVEN, "banker's rounding").
MONEY_PLACES = 6
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)

# Wide enough for price (<= 36 digits) x quantity (<= ~30 digits) with no rounding at all.
EXACT = decimal.Context(prec=120, rounding=ROUND_HALF_EVEN, traps=[decimal.Inexact, decimal.InvalidOperation])

DEFAULT_UNITS = {
    API_CALLS: "call",
    STORAGE_BYTES: "GB-month",
    LLM_PROMPT_TOKENS: "token",
    LLM_COMPLETION_TOKENS: "token",
}

# The default plan's prices live in one place: the seed of migration 0001 (plan "default"),
# frozen there as migrations are; change them with SetPricePlan or a new migration.


def round_money(amount: Decimal) -> Decimal:
    """Round to MONEY_PLACES decimal places with ROUND_HALF_EVEN."""
    return amount.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_EVEN, context=decimal.Context(prec=120))


def line_amount(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """quantity x unit_price, computed exactly, then rounded with round_money."""
    return round_money(EXACT.multiply(quantity, unit_price))


def money_sum(amounts: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


def fmt(value: Decimal) -> str:
    """Plain decimal notation, never an exponent ('0.000020', not '2.0E-5')."""
    return format(value, "f")


def parse_price(text: str, field: str) -> Decimal:
    try:
        value = Decimal(text)
    except decimal.InvalidOperation:
        raise InvalidArgument(
            "unit_price must be a decimal string", field_violations=[(field, "not a decimal")]
        ) from None
    if not value.is_finite() or value < 0:
        raise InvalidArgument(
            "unit_price must be a finite, non-negative decimal",
            field_violations=[(field, "must be finite and >= 0")],
        )
    return value


def normalize_plan(plan: PricePlan) -> PricePlan:
    """Refuse a plan that prices a meter twice; fill in the usual unit where none is given."""
    seen: set[str] = set()
    prices: list[MeterPrice] = []
    for i, price in enumerate(plan.prices):
        if price.meter in seen:
            raise InvalidArgument(
                f"meter {price.meter} is priced twice",
                field_violations=[(f"plan.prices[{i}].meter", "duplicate meter")],
            )
        seen.add(price.meter)
        unit = price.unit or DEFAULT_UNITS.get(price.meter, "unit")
        prices.append(MeterPrice(price.meter, price.unit_price, unit))
    return PricePlan(plan.plan_id, plan.currency, tuple(prices), plan.limits)

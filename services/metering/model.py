"""Value types of the metering domain (no I/O, no protobuf)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from services.common.limits.model import Limits


class Window(Enum):
    """Aggregation window of QueryUsage; WHOLE is one window for the whole range."""

    WHOLE = "whole"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True)
class UsageRow:
    window_start_us: int
    window_end_us: int
    group: tuple[tuple[str, str], ...]  # (dimension key, value) in group_by order
    value: int


@dataclass(frozen=True)
class MeterPrice:
    meter: str
    unit_price: Decimal
    unit: str


@dataclass(frozen=True)
class PricePlan:
    plan_id: str
    currency: str
    prices: tuple[MeterPrice, ...]
    limits: Limits = field(default_factory=Limits)
    # The version's first priced microsecond (set on versions read for an invoice).
    effective_from_us: int | None = None

    def price_of(self, meter: str) -> MeterPrice | None:
        return next((p for p in self.prices if p.meter == meter), None)


@dataclass(frozen=True)
class InvoiceLine:
    meter: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    tenant_id: str
    month: str
    currency: str
    price_plan_id: str
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    final: bool
    # Which version of the plan priced it (reproducibility): its first priced microsecond.
    price_plan_effective_from_us: int = 0


@dataclass(frozen=True)
class TenantLimitsView:
    """A tenant's effective limits and where it stands against them this month."""

    tenant_id: str
    plan_id: str
    currency: str
    effective: Limits
    overrides: Limits
    month: str
    llm_tokens_used: int
    llm_spend_used: Decimal
    storage_bytes_used: int
    prompt_price: Decimal
    completion_price: Decimal

"""Names of the shared counters, in one place for the services that write them and
MeteringService, which reports them."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from services.common.limits.counters import SharedCounters

# Budget counters outlive their month a little, so a late settle still lands.
MONTH_TTL_SECONDS = 40 * 24 * 3600
# Stored bytes are a running total: kept while the tenant is active (refreshed on every write).
STORED_TTL_SECONDS = 90 * 24 * 3600
NANOS = Decimal(10**9)


def budget_keys(counters: SharedCounters, tenant_id: str, month: str) -> tuple[str, str]:
    """(tokens used, money used in nano-units of the plan currency) this month."""
    return counters.key("budget", tenant_id, month, "tokens"), counters.key(
        "budget", tenant_id, month, "nanos"
    )


def stored_bytes_key(counters: SharedCounters, tenant_id: str) -> str:
    return counters.key("stored", tenant_id, "bytes")


def to_nanos(amount: Decimal) -> int:
    """Money in nano-units, rounded up (a budget is never under-counted)."""
    return int((amount * NANOS).to_integral_value(rounding=ROUND_CEILING))


def from_nanos(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS

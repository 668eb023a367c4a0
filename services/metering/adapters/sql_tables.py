"""SQLAlchemy Core tables of the metering store. The schema itself is made by the Alembic
migrations in services/metering/migrations (a test checks they agree).

Times are integer microseconds since the epoch (UTC): exact, and bucketing by hour or day is
integer arithmetic that SQLite and PostgreSQL compute the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

usage_events = sa.Table(
    "usage_events",
    metadata,
    # The event id is the idempotency key: a second insert of an id is ignored.
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("type", sa.String(63), nullable=False),
    sa.Column("subject", sa.String(63), nullable=False),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("dimensions", sa.JSON, nullable=False),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.Index("ix_usage_events_subject_type_time", "subject", "type", "time_us"),
)

price_plans = sa.Table(
    "price_plans",
    metadata,
    sa.Column("plan_id", sa.String(63), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    # [{"meter": ..., "unit_price": "<decimal string>", "unit": ...}]: prices stay strings.
    sa.Column("prices", sa.JSON, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    # Limits, budgets and quotas of the plan (services.common.limits.model.Limits JSON); NULL: none.
    sa.Column("limits", sa.JSON, nullable=True),
)

# Every version of a plan's prices, by the first microsecond it prices (migration 0003).
# price_plans holds the plan's latest definition (and its limits); invoices read versions.
price_plan_versions = sa.Table(
    "price_plan_versions",
    metadata,
    sa.Column("plan_id", sa.String(63), primary_key=True),
    sa.Column("effective_from_us", sa.BigInteger, primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("prices", sa.JSON, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

# Per-tenant overrides of the plan's limits.
tenant_limits = sa.Table(
    "tenant_limits",
    metadata,
    sa.Column("tenant_id", sa.String(63), primary_key=True),
    sa.Column("limits", sa.JSON, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
)

# The audit log: one hash chain per tenant (services/common/audit_chain.py). Appended only by
# MeteringService, so each chain has one writer; (tenant_id, seq) is unique, so a second writer
# (a misconfigured replica) fails its insert instead of forking the chain.
audit_records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("tenant_id", sa.String(63), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(128), nullable=False, unique=True),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("principal", sa.String(256), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("method", sa.String(256), nullable=False),
    sa.Column("resource", sa.String(256), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("api_key_id", sa.String(32), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Offboarding (migration 0005): the invoices kept when a tenant's usage is erased (the law keeps
# invoices; the usage behind them goes), as the priced Invoice in JSON (services/metering/kept_invoices.py).
kept_invoices = sa.Table(
    "kept_invoices",
    metadata,
    sa.Column("tenant_id", sa.String(63), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("invoice", sa.JSON, nullable=False),
    sa.Column("kept_at_us", sa.BigInteger, nullable=False),
)

# Tenants whose usage was erased: their late usage events (spooled before the erasure) are dropped.
erased_tenants = sa.Table(
    "erased_tenants",
    metadata,
    sa.Column("tenant_id", sa.String(63), primary_key=True),
    sa.Column("erased_at_us", sa.BigInteger, nullable=False),
)

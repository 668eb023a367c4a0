"""usage_events and price_plans; seed the default price plan.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The architecture document's default prices, frozen here as this revision's seed.
_DEFAULT_PRICES = [
    {"meter": "api_calls", "unit_price": "0.0001", "unit": "call"},
    {"meter": "storage_bytes", "unit_price": "0.023", "unit": "GB-month"},
    {"meter": "llm_prompt_tokens", "unit_price": "0.00002", "unit": "token"},
    {"meter": "llm_completion_tokens", "unit_price": "0.00002", "unit": "token"},
]


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("type", sa.String(63), nullable=False),
        sa.Column("subject", sa.String(63), nullable=False),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("dimensions", sa.JSON, nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_events_subject_type_time", "usage_events", ["subject", "type", "time_us"])
    plans = op.create_table(
        "price_plans",
        sa.Column("plan_id", sa.String(63), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("prices", sa.JSON, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(
        plans,
        [
            {
                "plan_id": "default",
                "currency": "USD",
                "prices": _DEFAULT_PRICES,
                "updated_at_us": time.time_ns() // 1000,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("price_plans")
    op.drop_index("ix_usage_events_subject_type_time", table_name="usage_events")
    op.drop_table("usage_events")

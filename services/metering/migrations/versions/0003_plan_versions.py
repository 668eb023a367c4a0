"""Price plan versions with effective dates: invoices price a month with the version in force
at its start, so changing a plan never re-prices a closed month.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    versions = op.create_table(
        "price_plan_versions",
        sa.Column("plan_id", sa.String(63), primary_key=True),
        # First microsecond (UTC) this version prices; 0 for the plan as it stood before versions.
        sa.Column("effective_from_us", sa.BigInteger, primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("prices", sa.JSON, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    # Every existing plan becomes its own first version, in force since ever: invoices of past
    # months keep the prices they were computed with.
    rows = op.get_bind().execute(sa.text("SELECT plan_id, currency, prices, updated_at_us FROM price_plans"))
    seed = []
    for plan_id, currency, prices, updated in rows:
        seed.append(
            {
                "plan_id": plan_id,
                "effective_from_us": 0,
                "currency": currency,
                # Raw JSON text on SQLite, already decoded on PostgreSQL.
                "prices": json.loads(prices) if isinstance(prices, str) else prices,
                "created_at_us": updated,
            }
        )
    if seed:
        op.bulk_insert(versions, seed)


def downgrade() -> None:
    op.drop_table("price_plan_versions")

"""Limits on price plans and per-tenant limit overrides.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("price_plans") as batch:
        batch.add_column(sa.Column("limits", sa.JSON, nullable=True))
    op.create_table(
        "tenant_limits",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("limits", sa.JSON, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_limits")
    with op.batch_alter_table("price_plans") as batch:
        batch.drop_column("limits")

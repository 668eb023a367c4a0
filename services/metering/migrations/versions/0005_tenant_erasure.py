"""Offboarding: invoices kept after a tenant's usage is erased, and the erased tenants.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_invoices",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("invoice", sa.JSON, nullable=False),
        sa.Column("kept_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "erased_tenants",
        sa.Column("tenant_id", sa.String(63), primary_key=True),
        sa.Column("erased_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_tenants")
    op.drop_table("kept_invoices")

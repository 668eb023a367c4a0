"""Provisioning journal (named steps per tenant) and long-running operations.

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
    op.create_table(
        "provisioning_steps",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("operation_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("preexisting", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "step", name="pk_provisioning_steps"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name="fk_provisioning_steps_tenant_id_tenants"
        ),
    )
    op.create_table(
        "operations",
        sa.Column("operation_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failed_step", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("operation_id", name="pk_operations"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_operations_tenant_id_tenants"),
    )
    op.create_index("ix_operations_tenant_id_operation_id", "operations", ["tenant_id", "operation_id"])


def downgrade() -> None:
    op.drop_index("ix_operations_tenant_id_operation_id", table_name="operations")
    op.drop_table("operations")
    op.drop_table("provisioning_steps")

"""The tenant database's tables (SQLAlchemy Core), shared by the SQL store and the local identity
provider. Migrations in services/tenant/migrations/ create exactly this schema; a unit test
compares the two so they cannot drift.

Storage choices:
- `tenants.bindings` holds the `TenantBindings` message as its proto3 JSON mapping (field names
  as in the .proto). Nothing queries inside it, it grows with the contract (new backends, options),
  and the proto JSON mapping is a stable, language-neutral encoding, so a JSON column beats a
  column per binding field that every proto change would need a migration for.
- `tenants.features` is a JSON list; states, cloud providers and roles are their enum names.
- Times are UTC; SQLite gets naive UTC values, PostgreSQL timestamptz.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Own version table: the tenant and metering services may share one PostgreSQL database.
VERSION_TABLE = "alembic_version_tenant"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the dialect keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant_id", sa.String(63), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_reason", sa.Text(), nullable=False),
    sa.Column("cloud_provider", sa.String(16), nullable=False),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("features", sa.JSON(), nullable=False),
    sa.Column("bindings", sa.JSON(), nullable=False),
    sa.Column("price_plan_id", sa.String(64), nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
)

# request_id of a CreateTenant -> the tenant it created (AIP-155 idempotency).
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.tenant_id"), nullable=False),
    # Stored lower-cased: one person, one user per tenant, however they typed the address.
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("tenant_id", "email", name="uq_users_tenant_id_email"),
    sa.Index("ix_users_tenant_id_user_id", "tenant_id", "user_id"),
)

# Provisioning journal (migration 0002): one row per named step a tenant's provisioning ran.
# `preexisting` is probed before the step first creates anything: a resource that was there
# before (brought by the tenant) is never removed by compensation or offboarding.
provisioning_steps = sa.Table(
    "provisioning_steps",
    metadata,
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.tenant_id"), primary_key=True),
    sa.Column("step", sa.String(255), primary_key=True),
    sa.Column("operation_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("preexisting", sa.Boolean(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
)

# Long-running operations (provisioning, offboarding) with their outcome.
operations = sa.Table(
    "operations",
    metadata,
    sa.Column("operation_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("failed_step", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Index("ix_operations_tenant_id_operation_id", "tenant_id", "operation_id"),
)

# API keys of machine clients. Only a SHA-256 of the secret is kept: the secret is 256 random
# bits, so a fast hash is enough (no password stretching needed) and checking a key stays cheap.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("tenant_id", sa.String(63), sa.ForeignKey("tenants.tenant_id"), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("methods", sa.JSON(), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("expire_time", UtcDateTime(), nullable=False),
    sa.Column("revoke_time", UtcDateTime(), nullable=True),
    sa.Index("ix_api_keys_tenant_id_key_id", "tenant_id", "key_id"),
)

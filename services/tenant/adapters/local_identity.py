"""IdentityProvider for development: tenant users kept in the tenant database itself.

It records who belongs to which tenant with which role; tokens for them come from the dev issuer
(`makoto token`). A Cognito adapter would create the same users in a user pool instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import AlreadyExists, NotFound
from services.tenant.model import UserRecord, UserRole
from services.tenant.schema import users


def _record(row: RowMapping) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        email=row["email"],
        role=UserRole(row["role"]),
        create_time=row["create_time"],
    )


class LocalIdentityProvider:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def invite(self, tenant_id: str, email: str, role: UserRole) -> UserRecord:
        user = UserRecord(
            user_id=f"u-{uuid.uuid4().hex}",
            tenant_id=tenant_id,
            email=email.strip().lower(),
            role=role,
            create_time=datetime.now(UTC),
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    users.insert().values(
                        user_id=user.user_id,
                        tenant_id=user.tenant_id,
                        email=user.email,
                        role=str(user.role),
                        create_time=user.create_time,
                    )
                )
        except IntegrityError as exc:
            # (tenant_id, email) is unique; user ids are random and never collide in practice.
            raise AlreadyExists(
                f"{user.email} is already a user of tenant {tenant_id}", reason="USER_ALREADY_EXISTS"
            ) from exc
        return user

    async def list_users(self, tenant_id: str, *, after: str | None, limit: int) -> Sequence[UserRecord]:
        query = sa.select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.user_id).limit(limit)
        if after is not None:
            query = query.where(users.c.user_id > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(r) for r in rows]

    async def has_user(self, tenant_id: str, user_id: str) -> bool:
        query = sa.select(users.c.user_id).where(users.c.tenant_id == tenant_id, users.c.user_id == user_id)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def remove(self, tenant_id: str, user_id: str) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                users.delete().where(users.c.tenant_id == tenant_id, users.c.user_id == user_id)
            )
        if result.rowcount != 1:
            raise NotFound(f"user {user_id} not found in tenant {tenant_id}", reason="USER_NOT_FOUND")

    async def remove_all(self, tenant_id: str) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(users.delete().where(users.c.tenant_id == tenant_id))
        return int(result.rowcount)

"""UserCheck (services/common/user_check.py): which tokens it narrows, how long answers are
trusted, and what happens while the user store cannot be asked."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common.errors import Unavailable
from services.common.identity import Principal, Role
from services.common.user_check import UserCheck, UserNotInTenant


class Users:
    """An in-memory user store (the TenantUsers port) that counts lookups and can go down."""

    def __init__(self, *members: tuple[str, str]) -> None:
        self.members = set(members)
        self.asked = 0
        self.down = False

    async def has_user(self, tenant_id: str, user_id: str) -> bool:
        self.asked += 1
        if self.down:
            raise Unavailable("tenant users unavailable")
        return (tenant_id, user_id) in self.members


def who(role: Role, tenant: str | None, sub: str, api_key_id: str = "") -> Principal:
    return Principal(subject=sub, issuer="i", role=role, tenant_id=tenant, api_key_id=api_key_id)


async def test_only_user_tokens_of_a_tenant_are_checked() -> None:
    users = Users()
    check = UserCheck(users)
    for principal in (
        who(Role.PLATFORM_ADMIN, None, "ops"),
        who(Role.PLATFORM_ADMIN, "acme", "ops"),
        who(Role.SERVICE, "acme", "storage"),
        who(Role.MEMBER, "acme", "apikey:0123", api_key_id="0123"),
    ):
        await check.check(principal)
    assert users.asked == 0
    for role in (Role.MEMBER, Role.TENANT_ADMIN):
        with pytest.raises(UserNotInTenant) as caught:
            await check.check(who(role, "acme", "u-nobody"))
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert caught.value.reason == "USER_NOT_IN_TENANT"


async def test_answers_are_cached_positive_longer_than_negative() -> None:
    users = Users(("acme", "u-1"))
    check = UserCheck(users, ttl_seconds=30, negative_ttl_seconds=0.1)
    for _ in range(3):
        await check.check(who(Role.MEMBER, "acme", "u-1"))
    assert users.asked == 1
    # Another tenant's claim with the same subject is its own question.
    with pytest.raises(UserNotInTenant):
        await check.check(who(Role.MEMBER, "globex", "u-1"))
    assert users.asked == 2
    # "not a user" is re-asked soon: an invited user gets in shortly after.
    users.members.add(("globex", "u-1"))
    with pytest.raises(UserNotInTenant):
        await check.check(who(Role.MEMBER, "globex", "u-1"))
    await asyncio.sleep(0.15)
    await check.check(who(Role.MEMBER, "globex", "u-1"))
    assert users.asked == 3


async def test_store_down_lets_known_users_in_and_no_one_else() -> None:
    users = Users(("acme", "u-1"))
    check = UserCheck(users, ttl_seconds=0, negative_ttl_seconds=0, max_stale_seconds=60)
    await check.check(who(Role.MEMBER, "acme", "u-1"))
    users.down = True
    await check.check(who(Role.MEMBER, "acme", "u-1"))  # was a user moments ago: served stale
    with pytest.raises(Unavailable):
        await check.check(who(Role.MEMBER, "acme", "u-2"))  # never seen: no answer to lean on

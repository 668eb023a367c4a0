"""Tenant users: invite, list, remove, through the IdentityProvider port.

Who may call is the policy's job (tenant-admin of the tenant or platform-admin); this module
decides what the tenant's state allows: a SUSPENDED tenant keeps its users readable and removable
(taking access away is always allowed) but gets no new ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common import paging
from services.common.errors import FailedPrecondition, PermissionDenied
from services.common.token_state import TokenState
from services.tenant.model import State, UserRecord, UserRole
from services.tenant.ports import IdentityProvider
from services.tenant.tenants import TenantManager


class UserManager:
    def __init__(
        self, tenants: TenantManager, identity: IdentityProvider, token_state: TokenState | None = None
    ) -> None:
        self._tenants = tenants
        self._identity = identity
        self._token_state = token_state

    async def invite(self, tenant_id: str, email: str, role: UserRole) -> UserRecord:
        tenant = await self._tenants.get(tenant_id)
        if tenant.state == State.SUSPENDED:
            raise PermissionDenied(f"tenant {tenant_id} is suspended", reason="TENANT_SUSPENDED")
        if tenant.state != State.ACTIVE:
            raise FailedPrecondition(
                f"tenant {tenant_id} is {tenant.state}; users can be invited once it is ACTIVE",
                reason="TENANT_NOT_ACTIVE",
                metadata={"current_state": str(tenant.state)},
            )
        return await self._identity.invite(tenant_id, email, role)

    async def list(
        self, tenant_id: str, *, page_size: int, page_token: str
    ) -> tuple[Sequence[UserRecord], str]:
        await self._tenants.get(tenant_id)
        scope = f"users:{tenant_id}"
        after = paging.decode(page_token, scope)
        size = paging.page_size(page_size)
        found = await self._identity.list_users(tenant_id, after=after, limit=size + 1)
        page = found[:size]
        next_token = paging.encode(page[-1].user_id, scope) if len(found) > size else ""
        return page, next_token

    async def remove(self, tenant_id: str, user_id: str) -> None:
        """Remove the user and end their access: tokens whose `sub` is the user id are refused
        by every service within token_state_cache_seconds. The mark is written first, so a
        failure leaves the user present (and the call retryable), never removed but still in."""
        await self._tenants.get(tenant_id)
        if self._token_state is not None:
            await self._token_state.user_removed(tenant_id, user_id)
        await self._identity.remove(tenant_id, user_id)

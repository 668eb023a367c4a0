"""Whether a user token's `sub` is one of its tenant's current users (MAKOTO_TOKEN_USER_CHECK).

A signature proves who issued a token, not that the tenant still has (or ever had) that user:
with the check on, tenant-admin and member tokens (not API-key or service tokens, not
platform-admins) are refused with PERMISSION_DENIED / USER_NOT_IN_TENANT unless TenantService's
user store (local table or Cognito pool) holds the subject for the token's tenant. TenantService
asks its store directly; the data-plane services ask TenantDirectoryService.CheckTenantUser.

Answers are cached per (tenant, subject): "is a user" for token_user_cache_seconds (a removal
bites sooner through the revocation store's user mark, services/common/token_state.py), "is not"
for token_user_negative_cache_seconds. While TenantService cannot be asked, a subject that was a
user within max_stale_seconds is still let in (as tenant answers are served stale); one never
seen answers UNAVAILABLE.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

import grpc
import structlog
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc

from services.common import deadline, tls
from services.common.config import MeshSettings
from services.common.dev_issuer import ServiceTokenSource
from services.common.errors import PermissionDenied, Unavailable
from services.common.identity import Principal
from services.common.policy import TENANT_ROLES
from services.common.trace_context import client_interceptors

log = structlog.get_logger("makoto.user_check")

_CACHE_SIZE = 16384
FETCH_TIMEOUT_SECONDS = 2.0


class UserNotInTenant(PermissionDenied, reason="USER_NOT_IN_TENANT"):
    pass


class TenantUsers(Protocol):
    async def has_user(self, tenant_id: str, user_id: str) -> bool:
        """Unavailable when the user store cannot be asked."""
        ...


def applies(principal: Principal) -> bool:
    """User tokens of a tenant; API-key tokens (their key is checked), services and operators not."""
    return principal.role in TENANT_ROLES and bool(principal.tenant_id) and not principal.api_key_id


class UserCheck:
    def __init__(
        self,
        users: TenantUsers,
        *,
        ttl_seconds: float = 30.0,
        negative_ttl_seconds: float = 1.0,
        max_stale_seconds: float = 600.0,
    ) -> None:
        self._users = users
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._max_stale = max_stale_seconds
        # (tenant, subject) -> (is a user, monotonic time of the answer)
        self._seen: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()

    async def check(self, principal: Principal) -> None:
        if not applies(principal):
            return
        key = (principal.tenant_id or "", principal.subject)
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[1] < (self._ttl if seen[0] else self._negative_ttl):
            member = seen[0]
        else:
            try:
                member = await self._users.has_user(*key)
            except Unavailable:
                if seen is not None and seen[0] and now - seen[1] < self._max_stale:
                    log.warning("tenant users unavailable; a known user let in", tenant_id=key[0])
                    return
                raise
            self._seen[key] = (member, now)
            self._seen.move_to_end(key)
            if len(self._seen) > _CACHE_SIZE:
                self._seen.popitem(last=False)
        if not member:
            raise UserNotInTenant(f"the token's subject is not a user of tenant {key[0]}")


class DirectoryUsers:
    """TenantUsers of a data-plane service: TenantDirectoryService.CheckTenantUser (mTLS, a
    service token addressed to TenantService)."""

    def __init__(self, settings: MeshSettings, service: str) -> None:
        self._tokens = ServiceTokenSource(settings, service, "tenant")
        self._channel = tls.open_channel(
            settings,
            "tenant",
            identity=service,
            address=settings.tenant_directory_target or settings.address("tenant"),
            interceptors=client_interceptors(),
        )
        self._stub = directory_pb2_grpc.TenantDirectoryServiceStub(self._channel)

    async def has_user(self, tenant_id: str, user_id: str) -> bool:
        try:
            answer: directory_pb2.CheckTenantUserResponse = await self._stub.CheckTenantUser(
                directory_pb2.CheckTenantUserRequest(tenant_id=tenant_id, user_id=user_id),
                metadata=self._tokens.metadata(),
                timeout=deadline.timeout(FETCH_TIMEOUT_SECONDS),
            )
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return False  # no such tenant, or a subject no user id can be
            raise Unavailable("tenant users unavailable") from err
        return answer.member

    async def close(self) -> None:
        await self._channel.close(None)

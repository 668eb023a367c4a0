"""RevokeToken: end one token of a tenant by its `jti`, through the shared revocation store
(services/common/token_state.py), which every service consults after a token's signature.

The mark is scoped to the tenant (`authn:jti:<tenant>:<jti>`): it refuses only tokens whose
tenant claim is that tenant, so a tenant-admin can end its own tenant's tokens and nobody
else's. A jti names one token; without its expiry the mark is kept for the longest lifetime a
token may have, after which every token it could refuse has expired anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis.exceptions import RedisError

from services.common.errors import FailedPrecondition, Unavailable
from services.common.token_state import TokenState
from services.tenant.tenants import TenantManager


class TokenRevocations:
    def __init__(self, tenants: TenantManager, token_state: TokenState) -> None:
        self._tenants = tenants
        self._token_state = token_state

    async def revoke(self, tenant_id: str, token_id: str) -> datetime:
        """Until when the revocation is kept. NOT_FOUND for an unknown tenant; FAILED_PRECONDITION
        when the mesh runs without a revocation store; UNAVAILABLE when it cannot be written."""
        await self._tenants.get(tenant_id)
        if not self._token_state.enabled:
            raise FailedPrecondition(
                "token revocation needs the revocation store (MAKOTO_REDIS_URL)",
                reason="REVOCATION_STORE_NOT_CONFIGURED",
            )
        try:
            until = await self._token_state.revoke_token(tenant_id, token_id)
        except (RedisError, OSError) as exc:
            raise Unavailable("token revocation store unavailable; try again later") from exc
        return datetime.fromtimestamp(until, UTC).replace(microsecond=0)

"""Whether a verified token still stands: revoked by `jti`, its user removed from the tenant, or
its API key revoked. The answers live in Redis (shared by every replica of every service).

A signature says who a token was issued to; only this store knows what happened since. Keys
(all under MAKOTO_REDIS_PREFIX, each expiring when no token it could refuse is still valid, so
the store stays as small as the set of live revocations):

- `authn:jti:<tenant>:<jti>`         the token was revoked (RevokeToken); scoped to the tenant
                                     claim (`-` for tokens without one), so a tenant-admin's
                                     revocation cannot reach another tenant's tokens
- `authn:user:<tenant>:<sub>`        the user was removed from the tenant (kept for the longest
                                     token lifetime: every token issued before is expired then)
- `authn:key:<key id>`               the API key was revoked (kept for the longest lifetime too)

Cost: one MGET per token per replica every `cache_seconds` (0.5 s by default), so a revocation
bites within that time plus one round trip, while a busy token costs Redis two reads a second.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import redis.asyncio as aioredis
import structlog
from prometheus_client import Gauge
from redis.exceptions import RedisError

from services.common.errors import Unauthenticated, Unavailable
from services.common.identity import Principal, Role

log = structlog.get_logger("makoto.token_state")

STORE_UP = Gauge(
    "makoto_token_state_store_up", "1 while the token revocation store answers, 0 while it fails"
)

# Seconds the store is not asked again after it failed (a dead Redis is not hammered per call).
RETRY_AFTER_SECONDS = 1.0
_CACHE_SIZE = 8192
# Longest a token may be valid past its exp (the verifier's leeway): revocations outlive it.
_LEEWAY_SECONDS = 30


class TokenRevoked(Unauthenticated):
    reason = "TOKEN_REVOKED"


class TokenState:
    def __init__(
        self,
        redis_url: str | None,
        *,
        prefix: str,
        max_token_ttl_seconds: int,
        cache_seconds: float = 0.5,
        fail_closed: bool = False,
    ) -> None:
        self._redis = (
            aioredis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
            if redis_url
            else None
        )
        self._prefix = f"{prefix}authn:"
        self._keep = int(max_token_ttl_seconds) + _LEEWAY_SECONDS
        self._cache_seconds = cache_seconds
        self._fail_closed = fail_closed
        # token id -> monotonic time it was last found standing
        self._ok: OrderedDict[str, float] = OrderedDict()
        # token id -> why it was refused: a refusal is final, so a replayed revoked token costs
        # no Redis round trip.
        self._refused: OrderedDict[str, str] = OrderedDict()
        self._down_until = 0.0

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    def _keys(self, principal: Principal) -> list[str]:
        keys: list[str] = []
        if principal.token_id:
            keys.append(f"{self._prefix}jti:{principal.tenant_id or '-'}:{principal.token_id}")
        if principal.tenant_id and principal.role != Role.SERVICE:
            keys.append(f"{self._prefix}user:{principal.tenant_id}:{principal.subject}")
        if principal.api_key_id:
            keys.append(f"{self._prefix}key:{principal.api_key_id}")
        return keys

    async def check(self, principal: Principal) -> None:
        """Raise TokenRevoked if the token no longer stands (UNAUTHENTICATED: a new token is needed)."""
        if self._redis is None:
            return
        cache_key = principal.token_id or principal.token
        refused = self._refused.get(cache_key)
        if refused is not None:
            raise TokenRevoked(refused)
        now = time.monotonic()
        seen = self._ok.get(cache_key)
        if seen is not None and now - seen < self._cache_seconds:
            return
        keys = self._keys(principal)
        if not keys:
            return
        if now < self._down_until:
            self._degraded(principal, None)
            return
        try:
            found = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            self._down_until = now + RETRY_AFTER_SECONDS
            STORE_UP.set(0)
            self._degraded(principal, exc)
            return
        STORE_UP.set(1)
        for key, value in zip(keys, found, strict=True):
            if value is not None:
                self._ok.pop(cache_key, None)
                what = key[len(self._prefix) :].split(":", 1)[0]
                why = {
                    "jti": "token revoked",
                    "user": "user no longer belongs to the tenant",
                    "key": "API key revoked",
                }[what]
                self._refused[cache_key] = why
                if len(self._refused) > _CACHE_SIZE:
                    self._refused.popitem(last=False)
                raise TokenRevoked(why)
        self._ok[cache_key] = now
        self._ok.move_to_end(cache_key)
        if len(self._ok) > _CACHE_SIZE:
            self._ok.popitem(last=False)

    def _degraded(self, principal: Principal, exc: BaseException | None) -> None:
        if exc is not None:
            log.error(
                "token revocation store unavailable", error=type(exc).__name__, fail_closed=self._fail_closed
            )
        if self._fail_closed:
            raise Unavailable("token revocation store unavailable; try again later")

    # -- writes -----------------------------------------------------------------------------

    async def revoke_token(self, tenant_id: str, token_id: str, expires_at: float | None = None) -> float:
        """Refuse the token `token_id` of `tenant_id` ("" for tokens without a tenant claim).
        Without its expiry (a caller that knows only the jti) the mark is kept for the longest
        token lifetime. Returns until when (epoch seconds) it is kept."""
        ttl = self._keep if expires_at is None else max(1, int(expires_at - time.time()) + _LEEWAY_SECONDS)
        await self._set(f"jti:{tenant_id or '-'}:{token_id}", ttl)
        return time.time() + ttl

    async def user_removed(self, tenant_id: str, subject: str) -> None:
        await self._set(f"user:{tenant_id}:{subject}", self._keep)

    async def api_key_revoked(self, key_id: str) -> None:
        await self._set(f"key:{key_id}", self._keep)

    async def _set(self, suffix: str, ttl: int) -> None:
        if self._redis is None:
            return
        await self._redis.set(f"{self._prefix}{suffix}", b"1", ex=ttl)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

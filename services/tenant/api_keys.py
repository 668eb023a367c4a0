"""API keys for machine clients: created by a tenant's admins, exchanged for short-lived tokens.

A key reads `mk_<key_id>_<secret>`: the key id (16 hex characters) names the key in lists,
logs and revocation; the secret (43 URL-safe characters, 256 random bits) is shown once and
only its SHA-256 is stored. An exchange mints a platform token (role and tenant of the key,
`sub` = `apikey:<key_id>`, `custom:api_key_id`, optional `custom:methods`) valid for
api_key_token_ttl_seconds, never past the key's own expiry. Revoking marks the key in the
revocation store, so its tokens already out are refused within token_state_cache_seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import MeshSettings
from services.common.dev_issuer import mint_token
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    MakotoError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.common.identity import API_KEY_CLAIM, METHODS_CLAIM, Role
from services.common.token_state import TokenState
from services.common.usage import AUDIT, UsageRecorder
from services.tenant.model import State, UserRole
from services.tenant.schema import api_keys
from services.tenant.tenants import TenantManager

log = structlog.get_logger("makoto.api_keys")

_PREFIX = "mk_"
_ROLES = {UserRole.TENANT_ADMIN: Role.TENANT_ADMIN, UserRole.MEMBER: Role.MEMBER}


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant_id: str
    display_name: str
    role: UserRole
    methods: tuple[str, ...]
    created_by: str
    create_time: datetime
    expire_time: datetime
    revoke_time: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record(row: RowMapping) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        display_name=row["display_name"],
        role=UserRole(row["role"]),
        methods=tuple(row["methods"]),
        created_by=row["created_by"],
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        revoke_time=row["revoke_time"],
    )


def parse_key(raw: str) -> tuple[str, str]:
    """(key_id, secret) of a presented key; UNAUTHENTICATED for anything malformed (the same
    answer as a wrong key: a caller learns nothing from the shape)."""
    if raw.startswith(_PREFIX):
        key_id, sep, secret = raw[len(_PREFIX) :].partition("_")
        if sep and len(key_id) == 16 and all(c in "0123456789abcdef" for c in key_id) and secret:
            return key_id, secret
    raise Unauthenticated("invalid API key", reason="API_KEY_INVALID")


class ApiKeyManager:
    def __init__(
        self,
        engine: AsyncEngine,
        tenants: TenantManager,
        settings: MeshSettings,
        token_state: TokenState,
        recorder: UsageRecorder | None = None,
    ) -> None:
        self._engine = engine
        self._tenants = tenants
        self._settings = settings
        self._token_state = token_state
        # Exchanges are audited here: the interceptor sees no principal on that public call.
        self._recorder = recorder

    async def _audit(self, record: ApiKeyRecord, outcome: str) -> None:
        if self._recorder is None:
            return
        try:
            await self._recorder.record(
                meter=AUDIT,
                tenant_id=record.tenant_id,
                value=1,
                dimensions={
                    "principal": f"apikey:{record.key_id}",
                    "role": str(_ROLES[record.role]),
                    "method": "makoto.tenant.v1.TenantService.ExchangeApiKey",
                    "resource": f"key_id={record.key_id}",
                    "outcome": outcome,
                    "api_key_id": record.key_id,
                },
            )
        except Exception:
            log.exception("audit record failed", key_id=record.key_id)

    async def create(
        self,
        tenant_id: str,
        *,
        display_name: str,
        role: UserRole,
        methods: Sequence[str],
        expire_time: datetime,
        created_by: str,
    ) -> tuple[ApiKeyRecord, str]:
        """The new key and its full secret (returned this once)."""
        tenant = await self._tenants.get(tenant_id)
        if tenant.state != State.ACTIVE:
            raise FailedPrecondition(
                f"tenant {tenant_id} is {tenant.state}; API keys can be created once it is ACTIVE",
                reason="TENANT_NOT_ACTIVE",
            )
        now = datetime.now(UTC)
        if expire_time <= now:
            raise InvalidArgument(
                "expire_time must be in the future", field_violations=[("api_key.expire_time", "in the past")]
            )
        if expire_time > now + timedelta(days=self._settings.api_key_max_days):
            raise InvalidArgument(
                f"expire_time may be at most {self._settings.api_key_max_days} days ahead",
                field_violations=[("api_key.expire_time", "too far ahead")],
            )
        live = await self._count_live(tenant_id, now)
        if live >= self._settings.api_keys_per_tenant:
            raise FailedPrecondition(
                f"tenant {tenant_id} already has {live} live API keys; revoke one first",
                reason="API_KEY_LIMIT",
            )
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            key_id=key_id,
            tenant_id=tenant_id,
            display_name=display_name,
            role=role,
            methods=tuple(methods),
            created_by=created_by,
            create_time=now,
            expire_time=expire_time,
            revoke_time=None,
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    tenant_id=tenant_id,
                    display_name=display_name,
                    role=str(role),
                    methods=list(methods),
                    secret_sha256=_digest(secret),
                    created_by=created_by,
                    create_time=now,
                    expire_time=expire_time,
                    revoke_time=None,
                )
            )
        log.info("api key created", tenant_id=tenant_id, key_id=key_id, role=str(role), created_by=created_by)
        return record, f"{_PREFIX}{key_id}_{secret}"

    async def _count_live(self, tenant_id: str, now: datetime) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(api_keys)
            .where(
                api_keys.c.tenant_id == tenant_id,
                api_keys.c.revoke_time.is_(None),
                api_keys.c.expire_time > now,
            )
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def list(self, tenant_id: str) -> list[ApiKeyRecord]:
        await self._tenants.get(tenant_id)
        query = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id).order_by(api_keys.c.create_time)
        async with self._engine.connect() as conn:
            return [_record(r) for r in (await conn.execute(query)).mappings().all()]

    async def _get(self, key_id: str) -> tuple[ApiKeyRecord, str] | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)))
                .mappings()
                .first()
            )
        return None if row is None else (_record(row), str(row["secret_sha256"]))

    async def revoke(self, tenant_id: str, key_id: str, *, revoked_by: str) -> ApiKeyRecord:
        found = await self._get(key_id)
        if found is None or found[0].tenant_id != tenant_id:
            raise NotFound(f"API key {key_id} not found in tenant {tenant_id}", reason="API_KEY_NOT_FOUND")
        record = found[0]
        # The revocation store first: from here on its tokens are refused, whatever happens next.
        await self._token_state.api_key_revoked(key_id)
        if record.revoke_time is None:
            now = datetime.now(UTC)
            async with self._engine.begin() as conn:
                await conn.execute(
                    api_keys.update()
                    .where(api_keys.c.key_id == key_id, api_keys.c.revoke_time.is_(None))
                    .values(revoke_time=now)
                )
            record = ApiKeyRecord(**{**record.__dict__, "revoke_time": now})
            log.info("api key revoked", tenant_id=tenant_id, key_id=key_id, revoked_by=revoked_by)
        return record

    async def exchange(self, raw: str) -> IssuedToken:
        key_id, secret = parse_key(raw)
        found = await self._get(key_id)
        # Compared even when the key is unknown, so timing does not tell which ids exist.
        expected = found[1] if found is not None else "0" * 64
        if not hmac.compare_digest(_digest(secret), expected) or found is None:
            log.warning("api key refused", key_id=key_id, why="unknown key or wrong secret")
            if found is not None:  # a wrong secret for a real key: the tenant should know
                await self._audit(found[0], "UNAUTHENTICATED")
            raise Unauthenticated("invalid API key", reason="API_KEY_INVALID")
        record = found[0]
        try:
            issued = await self._issue(record)
        except MakotoError as exc:
            log.warning("api key refused", key_id=key_id, tenant_id=record.tenant_id, why=exc.reason)
            await self._audit(record, exc.code.name)
            raise
        await self._audit(record, "OK")
        return issued

    async def _issue(self, record: ApiKeyRecord) -> IssuedToken:
        key_id = record.key_id
        now = datetime.now(UTC)
        if record.revoke_time is not None:
            raise Unauthenticated("API key revoked", reason="API_KEY_REVOKED")
        if record.expire_time <= now:
            raise Unauthenticated("API key expired", reason="API_KEY_EXPIRED")
        tenant = await self._tenants.get(record.tenant_id)
        if tenant.state == State.SUSPENDED:
            raise PermissionDenied(f"tenant {record.tenant_id} is suspended", reason="TENANT_SUSPENDED")
        if tenant.state in (State.OFFBOARDING, State.DELETING):
            # Machine clients stop with the data plane; only the export download stays open.
            raise FailedPrecondition(
                f"tenant {record.tenant_id} is {tenant.state}", reason="TENANT_NOT_ACTIVE"
            )
        ttl = int(min(self._settings.api_key_token_ttl_seconds, (record.expire_time - now).total_seconds()))
        if ttl < 1:
            raise Unauthenticated("API key expired", reason="API_KEY_EXPIRED")
        extra: dict[str, object] = {API_KEY_CLAIM: key_id}
        if record.methods:
            extra[METHODS_CLAIM] = list(record.methods)
        token = mint_token(
            self._settings,
            role=_ROLES[record.role],
            tenant_id=record.tenant_id,
            subject=f"apikey:{key_id}",
            ttl_seconds=ttl,
            extra_claims=extra,
        )
        log.info("api key exchanged", tenant_id=record.tenant_id, key_id=key_id, expires_in=ttl)
        return IssuedToken(token=token, expires_in=ttl)

"""Who is calling: roles, claims and the per-request principal."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from enum import StrEnum

TENANT_CLAIM = "custom:tenant_id"
ROLE_CLAIM = "custom:role"
FEATURES_CLAIM = "custom:features"
API_KEY_CLAIM = "custom:api_key_id"
METHODS_CLAIM = "custom:methods"
# The response header (or trailer) naming the tenant a service decided a call was for, once its
# tenant check passed: Envoy's access log records it instead of what its own field extraction
# read (envoy/README.md, "Who decides the tenant").
TENANT_HEADER = "x-makoto-tenant"


def service_audience(audience: str, service: str) -> str:
    """The `aud` of a service token meant for `service` (e.g. "makoto:metering"): a token minted
    for one service is refused by every other one."""
    return f"{audience}:{service}"


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    TENANT_ADMIN = "tenant-admin"
    MEMBER = "member"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """The verified caller, built from a JWT by the auth interceptor."""

    subject: str
    issuer: str
    role: Role
    tenant_id: str | None
    features: frozenset[str] = field(default_factory=frozenset)
    # Whether the token carried a `custom:features` claim at all: without one the token does not
    # narrow the features (the tenant's plan decides); with one, exactly those are enabled.
    features_claimed: bool = False
    # The raw bearer token, kept so a service can forward the caller's identity if needed.
    token: str = field(default="", repr=False)
    # The token's `jti` (revocation is by token id) and its expiry (epoch seconds).
    token_id: str = ""
    expires_at: float = 0.0
    # Set when the token was issued for an API key (`custom:api_key_id`): revoking the key ends it.
    api_key_id: str = ""
    # Methods an API-key token is limited to (empty: any method its role allows).
    methods: frozenset[str] = field(default_factory=frozenset)


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("makoto_principal", default=None)


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def current_principal() -> Principal:
    """The verified caller of the current RPC. Raises if called outside an authenticated RPC."""
    principal = _current.get()
    if principal is None:
        raise RuntimeError("no authenticated principal in this context")
    return principal


def maybe_principal() -> Principal | None:
    return _current.get()

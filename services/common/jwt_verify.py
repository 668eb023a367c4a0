"""JWT verification inside every service (zero trust: same JWKS as Envoy, keys cached)."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from services.common.config import JwtProvider
from services.common.errors import Unauthenticated
from services.common.identity import (
    API_KEY_CLAIM,
    FEATURES_CLAIM,
    METHODS_CLAIM,
    ROLE_CLAIM,
    TENANT_CLAIM,
    Principal,
    Role,
    service_audience,
)

# Only asymmetric signatures: "none" and HS256-with-the-public-key tricks are refused by design.
_ALGORITHMS = ["RS256"]
LEEWAY_SECONDS = 30
# Verified tokens are remembered until they expire (as Envoy's jwt_cache_config does): parsing
# and checking a token costs ~0.5 ms of CPU in PyJWT, more than the rest of a unary call.
_CACHE_SIZE = 4096


@dataclass
class _KeySet:
    keys: dict[str, jwt.PyJWK]
    loaded_at: float


class JwtVerifier:
    def __init__(
        self,
        providers: list[JwtProvider],
        refresh_seconds: float = 300.0,
        *,
        service: str | None = None,
        max_ttl_seconds: int = 3600,
        max_service_ttl_seconds: int = 300,
    ) -> None:
        self._providers = {p.issuer: p for p in providers}
        # The service this verifier guards: service tokens must name it in their audience.
        # None (CLI checks, tools): service tokens are refused outright.
        self._service = service
        self._max_ttl = max_ttl_seconds
        self._max_service_ttl = max_service_ttl_seconds
        self._refresh = refresh_seconds
        self._keys: dict[str, _KeySet] = {}
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    def _load(self, provider: JwtProvider) -> dict[str, jwt.PyJWK]:
        if provider.jwks_path is not None:
            data: Any = json.loads(provider.jwks_path.read_text())
        elif provider.jwks_url:
            import httpx

            data = httpx.get(provider.jwks_url, timeout=5.0).json()
        else:
            return {}
        keys: dict[str, jwt.PyJWK] = {}
        for raw in data.get("keys", []):
            if raw.get("kty") != "RSA":
                continue
            keys[str(raw.get("kid", ""))] = jwt.PyJWK(raw, algorithm="RS256")
        return keys

    def _key(self, provider: JwtProvider, kid: str) -> jwt.PyJWK:
        cached = self._keys.get(provider.issuer)
        now = time.monotonic()
        if (
            cached is None
            or (kid not in cached.keys and now - cached.loaded_at > 5)
            or (now - cached.loaded_at > self._refresh)
        ):
            try:
                cached = _KeySet(self._load(provider), now)
            except Exception as exc:  # unreadable JWKS: nobody gets in
                raise Unauthenticated("signing keys unavailable") from exc
            self._keys[provider.issuer] = cached
        key = cached.keys.get(kid)
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        return key

    def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() < hit[0]:
                self._verified.move_to_end(token)
                return hit[1]
            del self._verified[token]
        principal, expires = self._verify_uncached(token)
        self._verified[token] = (expires, principal)
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify_uncached(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthenticated("malformed token") from exc
        if header.get("alg") not in _ALGORITHMS:
            raise Unauthenticated("token algorithm not allowed")
        provider = self._providers.get(str(unverified.get("iss", "")))
        if provider is None:
            raise Unauthenticated("token issuer not trusted")
        key = self._key(provider, str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=_ALGORITHMS,
                issuer=provider.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("invalid token") from exc
        role_raw = claims.get(ROLE_CLAIM)
        try:
            role = Role(str(role_raw))
        except ValueError as exc:
            raise Unauthenticated("token carries no valid role") from exc
        self._check_lifetime(role, claims)
        if role == Role.SERVICE:
            self._check_service_audience(provider, claims)
        else:
            self._check_audience(provider, claims)
        tenant = claims.get(TENANT_CLAIM)
        if role in (Role.TENANT_ADMIN, Role.MEMBER) and not tenant:
            raise Unauthenticated("token carries no tenant")
        features_claimed = FEATURES_CLAIM in claims
        features = claims.get(FEATURES_CLAIM) or []
        if isinstance(features, str):
            features = [f for f in features.split(",") if f]
        # Cached no longer than the token is valid (exp plus the same leeway decode allowed).
        expires = float(claims["exp"]) + LEEWAY_SECONDS
        principal = Principal(
            subject=str(claims["sub"]),
            issuer=provider.issuer,
            role=role,
            tenant_id=str(tenant) if tenant else None,
            features=frozenset(str(f) for f in features),
            features_claimed=features_claimed,
            token=token,
            token_id=str(claims.get("jti") or ""),
            expires_at=float(claims["exp"]),
            api_key_id=str(claims.get(API_KEY_CLAIM) or ""),
            methods=frozenset(str(m) for m in claims.get(METHODS_CLAIM) or ()),
        )
        return principal, expires

    def _check_lifetime(self, role: Role, claims: dict[str, Any]) -> None:
        """A token may not live longer than the platform allows, whoever signed it: a stolen
        long-lived token is the costliest kind (Envoy applies the user maximum too)."""
        limit = self._max_service_ttl if role == Role.SERVICE else self._max_ttl
        try:
            lifetime = float(claims["exp"]) - float(claims["iat"])
        except (TypeError, ValueError) as exc:
            raise Unauthenticated("invalid token") from exc
        if lifetime > limit:
            raise Unauthenticated(f"token lifetime exceeds the maximum of {limit} seconds")

    def _check_service_audience(self, provider: JwtProvider, claims: dict[str, Any]) -> None:
        """Service tokens are audience-bound: storage's token for MeteringService is refused by
        TenantService, and a plain platform audience is not enough."""
        aud = claims.get("aud")
        auds = {aud} if isinstance(aud, str) else set(aud or [])
        wanted = {service_audience(a, self._service) for a in provider.audiences} if self._service else set()
        if not auds & wanted:
            raise Unauthenticated("service token not addressed to this service")

    @staticmethod
    def _check_audience(provider: JwtProvider, claims: dict[str, Any]) -> None:
        aud = claims.get("aud")
        auds = {aud} if isinstance(aud, str) else set(aud or [])
        if provider.audiences and auds & set(provider.audiences):
            return
        # Cognito access tokens carry client_id instead of aud.
        if provider.client_ids and claims.get("client_id") in provider.client_ids:
            return
        if provider.client_ids and auds & set(provider.client_ids):
            return
        raise Unauthenticated("token audience not accepted")

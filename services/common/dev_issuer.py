"""The platform's own token issuer (dev mode): an RS256 key pair made on first start, its JWKS
written where Envoy and the services read it, and token minting for the CLI and service calls."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.common.config import MeshSettings
from services.common.identity import FEATURES_CLAIM, ROLE_CLAIM, TENANT_CLAIM, Role, service_audience


def _kid(public_jwk: dict[str, str]) -> str:
    # RFC 7638 thumbprint: stable for the same key.
    import base64
    import hashlib

    canonical = json.dumps({"e": public_jwk["e"], "kty": "RSA", "n": public_jwk["n"]}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ensure_signing_key(settings: MeshSettings) -> Path:
    """Create the dev signing key and JWKS once; later calls reuse them."""
    key_path = settings.signing_key_path
    jwks_path = settings.jwks_path
    if key_path.exists() and jwks_path.exists():
        return key_path
    # The home and its keys are the mesh user's alone, whatever the caller's umask.
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(key_path.parent, 0o700)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = key_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, key_path)
    public_jwk: dict[str, str] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    public_jwk.update({"kid": _kid(public_jwk), "alg": "RS256", "use": "sig"})
    tmp_jwks = jwks_path.with_suffix(".tmp")
    fd = os.open(tmp_jwks, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"keys": [public_jwk]}, indent=2))
    os.replace(tmp_jwks, jwks_path)
    return key_path


def _load_key(settings: MeshSettings) -> tuple[bytes, str]:
    ensure_signing_key(settings)
    pem = settings.signing_key_path.read_bytes()
    jwks = json.loads(settings.jwks_path.read_text())
    return pem, str(jwks["keys"][0]["kid"])


def mint_token(
    settings: MeshSettings,
    *,
    role: Role,
    tenant_id: str | None = None,
    subject: str | None = None,
    features: list[str] | None = None,
    ttl_seconds: int | None = None,
    audience: str | list[str] | None = None,
    extra_claims: dict[str, object] | None = None,
) -> str:
    """Sign a platform JWT with the dev key. A `service` token needs `audience`: the service(s)
    it is for (service_audience), since services refuse service tokens not addressed to them."""
    if role in (Role.TENANT_ADMIN, Role.MEMBER) and not tenant_id:
        raise ValueError(f"role {role} needs a tenant")
    if role == Role.SERVICE and audience is None:
        raise ValueError("a service token needs the audience of the service it calls")
    if ttl_seconds is None:  # the longest the services accept for the role
        ttl_seconds = (
            settings.max_service_token_ttl_seconds if role == Role.SERVICE else settings.max_token_ttl_seconds
        )
    pem, kid = _load_key(settings)
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": settings.issuer,
        "aud": audience or settings.audience,
        "sub": subject or f"{role}-{uuid.uuid4().hex[:8]}",
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        ROLE_CLAIM: str(role),
    }
    if tenant_id:
        claims[TENANT_CLAIM] = tenant_id
    if features is not None:  # [] is a claim too: no feature enabled
        claims[FEATURES_CLAIM] = features
    claims.update(extra_claims or {})
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})


class ServiceTokenSource:
    """Service-to-service identity: a short-lived `service` token for one target service
    (its audience), re-minted before it expires."""

    def __init__(
        self, settings: MeshSettings, service_name: str, target: str, ttl_seconds: int | None = None
    ) -> None:
        self._settings = settings
        self._name = service_name
        self._target = target
        self._ttl = ttl_seconds or settings.max_service_token_ttl_seconds
        self._token = ""
        self._expires = 0.0

    @property
    def settings(self) -> MeshSettings:
        return self._settings

    @property
    def service_name(self) -> str:
        """The calling service (also its mTLS identity)."""
        return self._name

    def token(self) -> str:
        now = time.time()
        if now > self._expires - min(60, self._ttl / 4):
            self._token = mint_token(
                self._settings,
                role=Role.SERVICE,
                subject=f"service:{self._name}",
                ttl_seconds=self._ttl,
                audience=service_audience(self._settings.audience, self._target),
            )
            self._expires = now + self._ttl
        return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token()}"),)

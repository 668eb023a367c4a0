"""Signed download links for export archives: HMAC-SHA256 over (tenant, export id, expiry).

The token is `base64url(payload) "." base64url(mac)` with payload `v1|<tenant>|<export>|<unix
expiry>`. It is the download's only credential (the route needs no bearer token), so it binds
the tenant and the archive, expires (MAKOTO_EXPORT_LINK_TTL_SECONDS), and is checked in constant
time. The key is the platform's (MAKOTO_EXPORT_SIGNING_KEY_REF, a secret reference), else a
random key kept under MAKOTO_HOME/keys shared by the replicas of one installation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import PermissionDenied

_VERSION = "v1"


@dataclass(frozen=True)
class LinkTarget:
    tenant_id: str
    export_id: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def local_key(keys_dir: Path) -> bytes:
    """The installation's link key (created once, 0600)."""
    path = keys_dir / "export-links.key"
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # first writer wins; a racing replica keeps the winner's key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("export link key too short")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def token(self, tenant_id: str, export_id: str, expires: int) -> str:
        payload = f"{_VERSION}|{tenant_id}|{export_id}|{expires}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float | None = None) -> LinkTarget:
        """The link's target; PermissionDenied (one reason for every defect) otherwise."""
        refused = PermissionDenied("download link invalid or expired", reason="EXPORT_LINK_INVALID")
        encoded, _, mac = token.partition(".")
        try:
            payload = _unb64(encoded)
            given = _unb64(mac)
        except (ValueError, TypeError):
            raise refused from None
        if not hmac.compare_digest(given, self._mac(payload)):
            raise refused
        parts = payload.decode("utf-8", "replace").split("|")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[3].isdigit():
            raise refused
        expires = int(parts[3])
        if expires <= (time.time() if now is None else now):
            raise refused
        return LinkTarget(tenant_id=parts[1], export_id=parts[2], expires=expires)

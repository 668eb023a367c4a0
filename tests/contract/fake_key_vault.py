"""A small local fake of the Azure Key Vault secrets REST API, for testing the azure-kv://
adapter through the real SDK (azure-keyvault-secrets, its challenge-auth policy and its aiohttp
transport). It is NOT Microsoft's emulator (none exists for Key Vault): it covers only what the
adapter uses, shaped after the public REST reference (api-version 7.x / 2025+):

- HTTPS only (the SDK refuses bearer tokens over http): a self-signed CA certificate for
  127.0.0.1 is generated at test time (`make_tls`); clients trust it through a CA bundle path.
- Every request must carry `api-version` (else 400 BadParameter).
- Challenge authentication: a request without a valid bearer token gets 401 with
  `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
  resource="https://vault.azure.net"` and an `Unauthorized` error body; a token in
  `forbidden_tokens` gets 403 Forbidden (innererror AccessDenied).
- GET /secrets/{name}[/] (latest version) and GET /secrets/{name}/{version}: the SecretBundle
  (value, id, attributes, tags, contentType); 404 `SecretNotFound` for an unknown name or
  version; 403 Forbidden with innererror `SecretDisabled` for a disabled version.
- PUT /secrets/{name}: a new version from {"value", "contentType", "tags", "attributes"};
  400 BadParameter for a name outside [0-9a-zA-Z-]{1,127} or a body without a string value.
- Injected faults (`fail_next`): 429 `Throttled` with Retry-After, or any status/code, for the
  next N authorised requests.

- GET /secrets: every secret's latest version as SecretProperties items (one page, no nextLink).
- DELETE /secrets/{name}: soft-delete (the DeletedSecretBundle, recoveryId under /deletedsecrets);
  GET /deletedsecrets/{name}: the deleted secret, 404 SecretNotFound once purged or never deleted;
  DELETE /deletedsecrets/{name}: purge (204). What provisioning's Key Vault step and offboarding use.

Not covered: paging of lists, recovery, backup/restore, keys and certificates,
managed HSM, CAE claims challenges, PoP tokens, the token's audience/issuer/expiry (only its
exact string is compared), RBAC beyond the forbidden-token list, size limits and real latency.
Every request is recorded (`requests`) so tests can check what the SDK sent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RESOURCE = "https://vault.azure.net"
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_tls(directory: Path) -> TlsFiles:
    """A self-signed CA certificate valid for 127.0.0.1 and localhost (clients trust the file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "makoto fake key vault")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "fake-vault-cert.pem", directory / "fake-vault-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@dataclass
class _Version:
    id: str
    value: str
    enabled: bool = True
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Recorded:
    method: str
    path: str
    api_version: str | None
    authorization: str | None
    status: int


def _error(status: int, code: str, message: str, inner: str | None = None, **headers: str) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner}
    return web.json_response({"error": error}, status=status, headers=headers)


class FakeKeyVault:
    def __init__(self, tls: TlsFiles, *, token: str, forbidden_tokens: tuple[str, ...] = ()) -> None:
        self.tls = tls
        self.token = token
        self.forbidden_tokens = set(forbidden_tokens)
        self.secrets: dict[str, list[_Version]] = {}
        self.deleted: dict[str, list[_Version]] = {}
        self.requests: list[Recorded] = []
        self._faults: deque[web.Response] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- control (tests) -------------------------------------------------------------------

    def put(self, name: str, value: str) -> str:
        """Add a version directly (as another writer would); returns its version id."""
        version = _Version(uuid.uuid4().hex, value)
        self.secrets.setdefault(name, []).append(version)
        return version.id

    def set_enabled(self, name: str, version: str | None, enabled: bool) -> None:
        versions = self.secrets[name]
        target = versions[-1] if version is None else next(v for v in versions if v.id == version)
        target.enabled = enabled

    def fail_next(
        self, count: int, *, status: int = 429, code: str = "Throttled", retry_after: float | None = None
    ) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        message = (
            "Request was not processed because too many requests were received."
            if status == 429
            else "The service is temporarily unavailable."
        )
        for _ in range(count):
            self._faults.append(_error(status, code, message, **headers))

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls.server_context())
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the API ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                request.query.get("api-version"),
                request.headers.get("Authorization"),
                response.status,
            )
        )
        return response

    def _challenge(self, message: str) -> web.Response:
        header = f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="{RESOURCE}"'
        return _error(401, "Unauthorized", message, **{"WWW-Authenticate": header})

    async def _answer(self, request: web.Request) -> web.Response:
        if not request.query.get("api-version"):
            return _error(400, "BadParameter", "The request URI contains an invalid API version parameter.")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        presented = auth.removeprefix("Bearer ")
        if presented in self.forbidden_tokens:
            return _error(
                403,
                "Forbidden",
                "The user, group or application does not have secrets get permission on this key vault.",
                inner="AccessDenied",
            )
        if presented != self.token:
            return self._challenge("AKV10022: Invalid audience.")
        if self._faults:
            return self._faults.popleft()

        parts = [p for p in request.path.split("/") if p]
        if parts == ["secrets"] and request.method == "GET":
            return self._list(request)
        if len(parts) == 2 and parts[0] == "deletedsecrets":
            return self._deleted(request, parts[1])
        if len(parts) == 2 and parts[0] == "secrets" and request.method == "DELETE":
            return self._delete(request, parts[1])
        if not parts or parts[0] != "secrets" or len(parts) not in (2, 3):
            return _error(404, "NotFound", "The requested resource was not found.")
        name = parts[1]
        if not _NAME.match(name):
            return _error(400, "BadParameter", "The secret name is invalid.")
        if request.method == "GET":
            return self._get(request, name, parts[2] if len(parts) == 3 else None)
        if request.method == "PUT" and len(parts) == 2:
            return await self._set(request, name)
        return _error(405, "MethodNotAllowed", "The method is not allowed.")

    def _bundle(self, request: web.Request, name: str, version: _Version) -> dict[str, Any]:
        base = f"https://{request.host}"
        out: dict[str, Any] = {
            "value": version.value,
            "id": f"{base}/secrets/{name}/{version.id}",
            "attributes": {
                "enabled": version.enabled,
                "created": version.created,
                "updated": version.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": version.tags,
        }
        if version.content_type is not None:
            out["contentType"] = version.content_type
        return out

    def _list(self, request: web.Request) -> web.Response:
        items = []
        for name, versions in sorted(self.secrets.items()):
            bundle = self._bundle(request, name, versions[-1])
            bundle.pop("value")
            bundle["id"] = f"https://{request.host}/secrets/{name}"
            items.append(bundle)
        return web.json_response({"value": items, "nextLink": None})

    def _deleted_bundle(self, request: web.Request, name: str, versions: list[_Version]) -> dict[str, Any]:
        bundle = self._bundle(request, name, versions[-1])
        now = int(time.time())
        bundle.update(
            recoveryId=f"https://{request.host}/deletedsecrets/{name}",
            deletedDate=now,
            scheduledPurgeDate=now + 90 * 86400,
        )
        return bundle

    def _delete(self, request: web.Request, name: str) -> web.Response:
        versions = self.secrets.pop(name, None)
        if versions is None:
            return _error(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        self.deleted[name] = versions
        return web.json_response(self._deleted_bundle(request, name, versions))

    def _deleted(self, request: web.Request, name: str) -> web.Response:
        versions = self.deleted.get(name)
        if versions is None:
            return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        if request.method == "GET":
            return web.json_response(self._deleted_bundle(request, name, versions))
        if request.method == "DELETE":
            del self.deleted[name]
            return web.Response(status=204)
        return _error(405, "MethodNotAllowed", "The method is not allowed.")

    def _get(self, request: web.Request, name: str, version_id: str | None) -> web.Response:
        versions = self.secrets.get(name, [])
        found = (
            versions[-1]
            if version_id is None and versions
            else next((v for v in versions if v.id == version_id), None)
        )
        if found is None:
            shown = name if version_id is None else f"{name}/{version_id}"
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {shown} was not found in this key vault. If you recently "
                "deleted this secret you may be able to recover it using the correct recovery command.",
            )
        if not found.enabled:
            return _error(
                403, "Forbidden", "Operation get is not allowed on a disabled secret.", inner="SecretDisabled"
            )
        return web.json_response(self._bundle(request, name, found))

    async def _set(self, request: web.Request, name: str) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return _error(400, "BadParameter", "The request body must carry a string 'value'.")
        attributes = body.get("attributes") or {}
        version = _Version(
            uuid.uuid4().hex,
            body["value"],
            enabled=bool(attributes.get("enabled", True)),
            content_type=body.get("contentType"),
            tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
        )
        self.secrets.setdefault(name, []).append(version)
        return web.json_response(self._bundle(request, name, version))

"""azure-kv://: Azure Key Vault secrets through azure-keyvault-secrets (async SecretClient).

References: `azure-kv://<vault-name-or-host>/<secret-name>[/<version>][#json-key]`.
- A vault name maps to its URL through MAKOTO_AZURE_KV_VAULT_URLS (JSON object name -> URL: private
  endpoints, sovereign clouds, tests) or else MAKOTO_AZURE_KV_URL_TEMPLATE
  (default `https://{vault}.vault.azure.net`).
- A host (`acme.vault.azure.net`) is taken as `https://<host>` only under an allowed suffix
  (MAKOTO_AZURE_KV_ALLOWED_HOST_SUFFIXES, the public Key Vault domains by default): a tenant's
  reference cannot send the platform's token to a host of its choosing.
- Without a version the latest enabled version is read. `#key` picks one field of a JSON object.

Credentials: MAKOTO_AZURE_KV_ACCESS_TOKEN (a bearer token for https://vault.azure.net, e.g. from
`az account get-access-token --resource https://vault.azure.net`; held by `StaticTokenCredential`,
which refuses any other scope) or, when the optional `azure-identity` package is installed,
DefaultAzureCredential (environment, workload / managed identity, Azure CLI). Without either, a
reference answers FailedPrecondition. The SDK's challenge authentication (401 + WWW-Authenticate
first, then the token) runs unchanged; it insists on https and, by default, on the challenge's
resource matching the vault's domain (MAKOTO_AZURE_KV_VERIFY_CHALLENGE_RESOURCE).
MAKOTO_AZURE_KV_CA_BUNDLE trusts an extra CA (a private endpoint's proxy, or the tests' fake vault).

Failures: SecretNotFound (404), a disabled secret, a refused token (401/403) or an untrusted TLS
certificate are FailedPrecondition naming the reference; throttling (429) is retried with backoff
and jitter honouring Retry-After, then ResourceExhausted with RetryInfo; 5xx and connection
failures are retried, then Unavailable. The SDK's own retries are off. No message carries a value
or the service's own text. The SDK is imported on first use.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.backoff import RetryPolicy, Transient, call_with_retries
from services.common.errors import FailedPrecondition, InvalidArgument, MakotoError
from services.common.secrets.ref import SecretRef, not_found, parse_ref
from services.common.secrets.remote import (
    TtlCache,
    exhausted,
    invalid_ref,
    rejected,
    select_json_key,
    split_json_key,
    tls_failure,
)

STORE = "Azure Key Vault"
VAULT_SCOPE = "https://vault.azure.net/.default"
_VAULT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
_HOST = re.compile(r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9]{1,64}$")


class AzureKeyVaultConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_AZURE_KV_", extra="ignore", frozen=True)

    vault_urls: dict[str, str] = Field(default_factory=dict)
    url_template: str = "https://{vault}.vault.azure.net"
    allowed_host_suffixes: tuple[str, ...] = (
        ".vault.azure.net",
        ".vault.azure.cn",
        ".vault.usgovcloudapi.net",
        ".vault.microsoftazure.de",
        ".managedhsm.azure.net",
    )
    access_token: SecretStr | None = None
    token_scope: str = VAULT_SCOPE
    ca_bundle: str | None = None
    verify_challenge_resource: bool = True
    # Seconds a value is served from memory; a rotation is seen at most this late.
    cache_ttl_seconds: float = Field(default=30.0, ge=0)
    max_attempts: int = Field(default=4, ge=1, le=10)
    retry_base_seconds: float = Field(default=0.1, gt=0)
    retry_max_seconds: float = Field(default=2.0, gt=0)
    max_retry_after_seconds: float = Field(default=10.0, ge=0)
    connect_timeout_seconds: float = Field(default=3.0, gt=0)
    read_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("vault_urls")
    @classmethod
    def _https_only(cls, urls: dict[str, str]) -> dict[str, str]:
        # The SDK sends bearer tokens over TLS only; say so at startup rather than per request.
        for name, url in urls.items():
            if not url.lower().startswith("https://"):
                raise ValueError(f"vault {name!r}: the URL must be https://")
        return urls

    @field_validator("url_template")
    @classmethod
    def _template(cls, template: str) -> str:
        if not template.lower().startswith("https://") or "{vault}" not in template:
            raise ValueError("the URL template must be https:// and contain {vault}")
        return template


@dataclass(frozen=True)
class VaultSecret:
    vault_url: str
    name: str
    version: str | None
    json_key: str | None


def target_of(ref: SecretRef, config: AzureKeyVaultConfig) -> VaultSecret:
    body, key = split_json_key(ref, ref.path)
    parts = body.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise invalid_ref(ref, "expected azure-kv://<vault>/<secret-name>[/<version>]")
    vault, name = parts[0], parts[1]
    version = parts[2] if len(parts) == 3 else None
    if not _SECRET_NAME.match(name):
        raise invalid_ref(ref, "a Key Vault secret name is 1-127 letters, digits and dashes")
    if version is not None and not _VERSION.match(version):
        raise invalid_ref(ref, "a Key Vault secret version is letters and digits")
    if vault in config.vault_urls:
        url = config.vault_urls[vault]
    elif "." in vault:
        host = vault.lower()
        if not _HOST.match(host) or not host.endswith(tuple(s.lower() for s in config.allowed_host_suffixes)):
            raise invalid_ref(ref, "the vault host is not under an allowed Key Vault domain")
        url = f"https://{host}"
    elif _VAULT_NAME.match(vault):
        url = config.url_template.format(vault=vault.lower())
    else:
        raise invalid_ref(ref, "a vault name is 3-24 letters, digits and dashes")
    return VaultSecret(url.rstrip("/"), name, version, key)


class StaticTokenCredential:
    """An AsyncTokenCredential holding one bearer token, handed out only for the vault scope:
    if a challenge names another resource, the token is not given away."""

    def __init__(
        self, token: str | SecretStr, *, scopes: tuple[str, ...] = (VAULT_SCOPE,), ttl: float = 3600
    ):
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._scopes = frozenset(scopes)
        self._ttl = ttl

    def __repr__(self) -> str:
        return f"StaticTokenCredential(scopes={sorted(self._scopes)})"

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> Any:
        from azure.core.credentials import AccessToken
        from azure.core.exceptions import ClientAuthenticationError

        if not scopes or not set(scopes) <= self._scopes:
            raise ClientAuthenticationError("the static token is only for the Key Vault scope")
        return AccessToken(self._token.get_secret_value(), int(time.time() + self._ttl))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


# -- error classification -------------------------------------------------------------------


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "status_code", None) or 0)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("Retry-After", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return max(0.0, float(raw) / scale)
            except ValueError:
                continue
    return None


def _error_codes(exc: BaseException) -> tuple[str, str]:
    """(error.code, error.innererror.code) of a Key Vault error body, '' where absent."""
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except Exception:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    inner = error.get("innererror")
    return str(error.get("code") or ""), str(inner.get("code") or "") if isinstance(inner, dict) else ""


def classify(exc: BaseException) -> Transient | None:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if tls_failure(exc):
        return None
    if isinstance(exc, HttpResponseError):
        status = _status(exc)
        if status == 429:
            return Transient(throttled=True, retry_after=_retry_after(exc))
        if status in (500, 502, 503, 504):
            return Transient(throttled=False, retry_after=_retry_after(exc))
        return None
    if isinstance(exc, ServiceRequestError | ServiceResponseError | TimeoutError):
        return Transient(throttled=False)
    return None


def map_error(exc: BaseException, ref: SecretRef, policy: RetryPolicy) -> MakotoError:
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    if isinstance(exc, MakotoError):
        return exc
    if tls_failure(exc):
        return rejected(ref, STORE, "the vault's TLS certificate could not be verified", "SECRET_STORE_TLS")
    verdict = classify(exc)
    code, inner = _error_codes(exc)
    if verdict is not None:
        return exhausted(ref, STORE, verdict, policy, code or str(_status(exc) or type(exc).__name__))
    if isinstance(exc, ResourceNotFoundError) or _status(exc) == 404:
        return not_found(ref)
    if isinstance(exc, ValueError):
        # The SDK refused the vault's authentication challenge (its resource is not the vault's
        # domain), before any token was sent.
        return rejected(ref, STORE, "the vault's authentication challenge names another resource")
    if inner == "SecretDisabled":
        return rejected(ref, STORE, "the secret is disabled", "SECRET_DISABLED")
    if isinstance(exc, ClientAuthenticationError) or _status(exc) in (401, 403):
        return rejected(
            ref, STORE, f"{code or _status(exc) or 'authentication'}: check the platform's credential"
        )
    if isinstance(exc, HttpResponseError):
        return FailedPrecondition(
            f"secret {ref}: {STORE} failed ({code or _status(exc)})",
            reason="SECRET_STORE_ERROR",
            metadata={"secret_ref": str(ref), "backend": ref.scheme},
        )
    return FailedPrecondition(
        f"secret {ref}: {STORE} failed ({type(exc).__name__})",
        reason="SECRET_STORE_ERROR",
        metadata={"secret_ref": str(ref), "backend": ref.scheme},
    )


# -- the backend ----------------------------------------------------------------------------


class AzureKeyVaultBackend:
    """azure-kv:// for the SecretResolver."""

    def __init__(self, config: AzureKeyVaultConfig | None = None, *, credential: Any = None) -> None:
        self.config = config if config is not None else AzureKeyVaultConfig()
        self.cache = TtlCache(self.config.cache_ttl_seconds)
        self.retry = RetryPolicy(
            max_attempts=self.config.max_attempts,
            base_delay=self.config.retry_base_seconds,
            max_delay=self.config.retry_max_seconds,
            max_hint=self.config.max_retry_after_seconds,
        )
        self._credential = credential

    def __repr__(self) -> str:
        return f"AzureKeyVaultBackend(vaults={sorted(self.config.vault_urls)})"

    def _credential_for(self, ref: SecretRef) -> Any:
        if self._credential is None:
            if self.config.access_token is not None:
                self._credential = StaticTokenCredential(
                    self.config.access_token, scopes=(self.config.token_scope,)
                )
            else:
                try:
                    from azure.identity.aio import DefaultAzureCredential
                except ImportError:
                    raise rejected(
                        ref,
                        STORE,
                        "no Azure credential configured: "
                        "set MAKOTO_AZURE_KV_ACCESS_TOKEN or install azure-identity",
                        "SECRET_STORE_CREDENTIALS_MISSING",
                    ) from None
                self._credential = DefaultAzureCredential()
        return self._credential

    @asynccontextmanager
    async def _client(self, ref: SecretRef, vault_url: str) -> AsyncIterator[Any]:
        # A client per fetch: the port has no close hook, and fetches are rare thanks to the cache.
        from azure.keyvault.secrets.aio import SecretClient

        cfg = self.config
        client = SecretClient(
            vault_url,
            self._credential_for(ref),
            verify_challenge_resource=cfg.verify_challenge_resource,
            retry_total=0,  # one retry policy: ours
            connection_timeout=cfg.connect_timeout_seconds,
            read_timeout=cfg.read_timeout_seconds,
            connection_verify=cfg.ca_bundle or True,
            logging_enable=False,
        )
        async with client:
            yield client

    async def get(self, ref: SecretRef) -> SecretStr:
        target = target_of(ref, self.config)
        key = (target.vault_url, target.name, target.version)
        raw = await self.cache.get(key, lambda: self._fetch(ref, target))
        return raw if target.json_key is None else select_json_key(ref, raw, target.json_key)

    async def _fetch(self, ref: SecretRef, target: VaultSecret) -> SecretStr:
        try:
            async with self._client(ref, target.vault_url) as client:
                secret = await call_with_retries(
                    lambda: client.get_secret(target.name, target.version), classify, self.retry
                )
        except Exception as exc:
            raise map_error(exc, ref, self.retry) from None  # the SDK's text is not ours to pass on
        if secret.value is None:
            raise not_found(ref, "has no value")
        return SecretStr(str(secret.value))

    async def set(self, ref: str | SecretRef, value: str | SecretStr) -> str:
        """Write a new version (operators and tests); returns the ref of the secret (no version)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.scheme != "azure-kv":
            raise InvalidArgument("not an azure-kv:// reference", field_violations=[("ref", "not azure-kv")])
        target = target_of(parsed, self.config)
        if target.version is not None or target.json_key is not None:
            raise InvalidArgument(
                "only azure-kv://<vault>/<name> can be written",
                field_violations=[("ref", "has a version or #json-key")],
            )
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        try:
            async with self._client(parsed, target.vault_url) as client:
                await call_with_retries(lambda: client.set_secret(target.name, plain), classify, self.retry)
        except Exception as exc:
            raise map_error(exc, parsed, self.retry) from None
        finally:
            self.cache.invalidate((target.vault_url, target.name, None))
        return str(parsed)

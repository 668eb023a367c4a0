"""aws-sm://: AWS Secrets Manager through aioboto3 (async botocore).

References
- `aws-sm://<secret-id-or-name>[#json-key]`: looked up in the configured region.
- `arn:aws:secretsmanager:<region>:<account>:secret:<name>[#json-key]` (bare, as parse_ref
  accepts it, or after `aws-sm://`, which also takes the aws-cn / aws-us-gov partitions):
  looked up in the ARN's own region.
The value is SecretString, or SecretBinary when that is UTF-8 text. `#key` picks one field of a
secret holding a JSON object (the usual shape of database credentials).

Configuration (environment, prefix MAKOTO_AWS_): ENDPOINT_URL (moto, LocalStack, a VPC
endpoint), REGION (else AWS_REGION / AWS_DEFAULT_REGION / the profile), ACCESS_KEY_ID /
SECRET_ACCESS_KEY / SESSION_TOKEN (else botocore's default chain: AWS_* variables, profiles,
instance and task roles), SM_CACHE_TTL_SECONDS and the retry knobs below.

Failures: a missing secret (or one marked for deletion) and refused credentials
(AccessDenied, UnrecognizedClient, ...) are FailedPrecondition naming the reference; throttling
is retried with backoff and jitter, then ResourceExhausted with RetryInfo; an unreachable
endpoint is retried, then Unavailable. No message carries a value or the store's own text.

botocore logs request and response bodies at DEBUG, which here are secret values: those two
log lines are dropped for the whole process (they carry tenant data for every AWS adapter).
The SDK is imported on first use, so a mesh on local:// never loads it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr
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

STORE = "AWS Secrets Manager"
_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
# Any partition (aws, aws-cn, aws-us-gov, ...) after aws-sm://; parse_ref takes bare `arn:aws:` ones.
_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:secretsmanager:(?P<region>[a-z0-9-]{1,32}):(?P<account>\d{12}):"
    r"secret:(?P<name>[A-Za-z0-9/_+=.@-]{1,512})$"
)
THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
TRANSIENT_CODES = frozenset({"InternalServiceError", "InternalFailure", "ServiceUnavailable"})
CREDENTIAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "ExpiredToken",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)


class AwsSecretsManagerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_AWS_", extra="ignore", frozen=True)

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    # Seconds a value is served from memory; a rotation is seen at most this late.
    sm_cache_ttl_seconds: float = Field(default=30.0, ge=0)
    sm_max_attempts: int = Field(default=4, ge=1, le=10)
    sm_retry_base_seconds: float = Field(default=0.1, gt=0)
    sm_retry_max_seconds: float = Field(default=2.0, gt=0)
    sm_max_retry_after_seconds: float = Field(default=10.0, ge=0)
    connect_timeout_seconds: float = Field(default=3.0, gt=0)
    read_timeout_seconds: float = Field(default=10.0, gt=0)

    def default_region(self) -> str | None:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class SecretTarget:
    secret_id: str  # a name or a full ARN, as GetSecretValue takes it
    region: str | None
    json_key: str | None


def target_of(ref: SecretRef, default_region: str | None) -> SecretTarget:
    body, key = split_json_key(ref, ref.path)
    if body.startswith("arn:"):
        arn = _ARN.match(body)
        if arn is None:
            raise invalid_ref(ref, "not a Secrets Manager secret ARN")
        return SecretTarget(body, arn.group("region"), key)
    if not _NAME.match(body):
        raise invalid_ref(ref, "a secret name is 1-512 characters of letters, digits and / _ + = . @ -")
    return SecretTarget(body, default_region, key)


class _DropBodyLogs(logging.Filter):
    """botocore's DEBUG lines with request parameters / response bodies hold secret values."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        return not (msg.startswith("Response body") or msg.startswith("Making request for"))


_BODY_FILTER = _DropBodyLogs()


def _silence_body_logs() -> None:
    for name in ("botocore.parsers", "botocore.endpoint", "aiobotocore.endpoint", "aiobotocore.parsers"):
        logger = logging.getLogger(name)
        if _BODY_FILTER not in logger.filters:
            logger.addFilter(_BODY_FILTER)


# -- error classification -------------------------------------------------------------------


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    headers: dict[str, Any] = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    raw = next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def classify(exc: BaseException) -> Transient | None:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if tls_failure(exc):
        return None
    code, status = _code(exc), _status(exc)
    if code in THROTTLE_CODES or status == 429:
        return Transient(throttled=True, retry_after=_retry_after(exc))
    if code in TRANSIENT_CODES or status in (500, 502, 503, 504):
        return Transient(throttled=False, retry_after=_retry_after(exc))
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | TimeoutError,
    ):
        return Transient(throttled=False)
    return None


def map_error(exc: BaseException, ref: SecretRef, policy: RetryPolicy) -> MakotoError:
    from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

    if isinstance(exc, MakotoError):
        return exc
    code = _code(exc)
    if tls_failure(exc):
        return rejected(
            ref, STORE, "the endpoint's TLS certificate could not be verified", "SECRET_STORE_TLS"
        )
    verdict = classify(exc)
    if verdict is not None:
        return exhausted(ref, STORE, verdict, policy, code or type(exc).__name__)
    if code == "ResourceNotFoundException":
        return not_found(ref)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return rejected(ref, STORE, "no AWS credentials configured", "SECRET_STORE_CREDENTIALS_MISSING")
    if isinstance(exc, NoRegionError):
        return rejected(ref, STORE, "no AWS region configured (MAKOTO_AWS_REGION or AWS_REGION)")
    if code in CREDENTIAL_CODES or _status(exc) in (401, 403):
        return rejected(
            ref, STORE, f"{code or _status(exc)}: check the platform's AWS credentials and policy"
        )
    if code == "InvalidRequestException":
        # e.g. the secret is scheduled for deletion
        return rejected(
            ref,
            STORE,
            "InvalidRequestException: the secret is not usable in its current state",
            "SECRET_STATE_INVALID",
        )
    if code == "DecryptionFailure":
        return rejected(ref, STORE, "DecryptionFailure: the secret's KMS key cannot be used")
    if code == "InvalidParameterException":
        return invalid_ref(ref, "Secrets Manager rejected the secret id")
    return FailedPrecondition(
        f"secret {ref}: {STORE} failed ({code or type(exc).__name__})",
        reason="SECRET_STORE_ERROR",
        metadata={"secret_ref": str(ref), "backend": ref.scheme},
    )


# -- the backend ----------------------------------------------------------------------------


class AwsSecretsManagerBackend:
    """aws-sm:// and Secrets Manager ARNs for the SecretResolver."""

    def __init__(self, config: AwsSecretsManagerConfig | None = None) -> None:
        self.config = config if config is not None else AwsSecretsManagerConfig()
        self.cache = TtlCache(self.config.sm_cache_ttl_seconds)
        self.retry = RetryPolicy(
            max_attempts=self.config.sm_max_attempts,
            base_delay=self.config.sm_retry_base_seconds,
            max_delay=self.config.sm_retry_max_seconds,
            max_hint=self.config.sm_max_retry_after_seconds,
        )
        self._session: Any = None
        _silence_body_logs()

    def __repr__(self) -> str:
        return (
            f"AwsSecretsManagerBackend(region={self.config.default_region()!r}, "
            f"endpoint_url={self.config.endpoint_url!r})"
        )

    @asynccontextmanager
    async def _client(self, region: str | None) -> AsyncIterator[Any]:
        # A client per fetch: the port has no close hook, and fetches are rare thanks to the cache
        # (the session keeps the loaded service model, so a client costs ~2 ms).
        import aioboto3
        from botocore.config import Config

        cfg = self.config
        if self._session is None:
            self._session = aioboto3.Session(
                aws_access_key_id=cfg.access_key_id,
                aws_secret_access_key=(
                    cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
                ),
                aws_session_token=cfg.session_token.get_secret_value() if cfg.session_token else None,
            )
        botocore_config = Config(
            connect_timeout=cfg.connect_timeout_seconds,
            read_timeout=cfg.read_timeout_seconds,
            retries={"total_max_attempts": 1, "mode": "standard"},  # one retry policy: ours
        )
        async with self._session.client(
            "secretsmanager", region_name=region, endpoint_url=cfg.endpoint_url, config=botocore_config
        ) as client:
            yield client

    async def get(self, ref: SecretRef) -> SecretStr:
        target = target_of(ref, self.config.default_region())
        raw = await self.cache.get((target.region, target.secret_id), lambda: self._fetch(ref, target))
        return raw if target.json_key is None else select_json_key(ref, raw, target.json_key)

    async def _fetch(self, ref: SecretRef, target: SecretTarget) -> SecretStr:
        try:
            async with self._client(target.region) as client:
                resp = await call_with_retries(
                    lambda: client.get_secret_value(SecretId=target.secret_id), classify, self.retry
                )
        except Exception as exc:
            raise map_error(exc, ref, self.retry) from None  # botocore's text is not ours to pass on
        if resp.get("SecretString") is not None:
            return SecretStr(str(resp["SecretString"]))
        binary = resp.get("SecretBinary")
        if isinstance(binary, bytes | bytearray):
            try:
                return SecretStr(bytes(binary).decode("utf-8"))
            except UnicodeDecodeError:
                raise FailedPrecondition(
                    f"secret {ref} is binary, not UTF-8 text",
                    reason="SECRET_NOT_TEXT",
                    metadata={"secret_ref": str(ref), "backend": ref.scheme},
                ) from None
        raise not_found(ref, "has no value")

    async def set(self, ref: str | SecretRef, value: str | SecretStr) -> str:
        """Create the secret or put a new current version (operators and tests); returns the ref."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.scheme != "aws-sm":
            raise InvalidArgument("not an aws-sm:// reference", field_violations=[("ref", "not aws-sm")])
        target = target_of(parsed, self.config.default_region())
        if target.json_key is not None:
            raise InvalidArgument(
                "a #json-key reference cannot be written", field_violations=[("ref", "has a #json-key")]
            )
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        try:
            async with self._client(target.region) as client:
                try:
                    await call_with_retries(
                        lambda: client.put_secret_value(SecretId=target.secret_id, SecretString=plain),
                        classify,
                        self.retry,
                    )
                except Exception as exc:
                    if _code(exc) != "ResourceNotFoundException" or target.secret_id.startswith("arn:"):
                        raise
                    await call_with_retries(
                        lambda: client.create_secret(Name=target.secret_id, SecretString=plain),
                        classify,
                        self.retry,
                    )
        except Exception as exc:
            raise map_error(exc, parsed, self.retry) from None
        finally:
            self.cache.invalidate((target.region, target.secret_id))
        return str(parsed)

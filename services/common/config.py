"""Mesh-wide configuration, read from the environment (prefix MAKOTO_) with pydantic-settings."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.deadline import DEFAULT_SECONDS, MAX_SECONDS


class JwtProvider(BaseModel):
    """One trusted token issuer. The list is data: add Cognito or Entra ID without code changes."""

    name: str
    issuer: str
    # Local JWKS file (dev issuer) or a remote JWKS URL (Cognito: <issuer>/.well-known/jwks.json).
    jwks_path: Path | None = None
    jwks_url: str | None = None
    # Accepted audiences; Cognito access tokens carry client_id instead of aud.
    audiences: list[str] = Field(default_factory=list)
    client_ids: list[str] = Field(default_factory=list)


class MeshSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_", extra="ignore")

    # Everything the embedded defaults write (SQLite files, objects, keys, spools) lives here.
    home: Path = Path(".makoto")
    host: str = "127.0.0.1"
    tenant_port: int = 50051
    storage_port: int = 50052
    llm_port: int = 50053
    metering_port: int = 50054
    envoy_port: int = 8080
    envoy_admin_port: int = 9901
    simulator_port: int = 8090

    issuer: str = "makoto-dev"
    audience: str = "makoto"
    # Extra trusted issuers (JSON list of JwtProvider), e.g. a Cognito user pool.
    extra_jwt_providers: list[JwtProvider] = Field(default_factory=list)

    # Largest gRPC message a server accepts (bytes); object chunks are at most 1 MiB.
    max_message_bytes: int = 8 * 1024 * 1024
    # Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    # Seconds a resolved tenant (bindings) stays cached in data-plane services.
    directory_cache_ttl_seconds: float = 5.0

    # -- call deadlines and circuit breaking (services/common/deadline.py, breaker.py) --
    # Seconds a call may take when the client sent no grpc-timeout, per service; JSON, e.g.
    # {"storage": 20}: services not named keep the built-in value (services/common/deadline.py).
    deadline_default_seconds: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SECONDS))
    # Cap on a client's grpc-timeout, per service (long object streams and LLM answers need more).
    deadline_max_seconds: dict[str, float] = Field(default_factory=lambda: dict(MAX_SECONDS))
    # Consecutive failures/timeouts against one backend endpoint that open its breaker.
    breaker_failure_threshold: int = 5
    # Seconds an open breaker fails calls fast before letting one probe through (half-open).
    breaker_cooldown_seconds: float = 10.0
    # Shared store of rate-limit buckets and budget counters (all replicas of all services).
    # Empty: every replica enforces limits on its own (development without Redis).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Key prefix, so several deployments (or test runs) can share one Redis.
    redis_prefix: str = "makoto:"
    # Per-tenant API rate limits from the plan (off only for benchmarks comparing with/without).
    api_rate_limits: bool = True
    # Seconds a tenant's effective limits stay cached in a replica.
    limits_cache_ttl_seconds: float = 5.0

    @cached_property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def signing_key_path(self) -> Path:
        return self.keys_dir / "signing-key.pem"

    @property
    def jwks_path(self) -> Path:
        return self.keys_dir / "jwks.json"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def address(self, service: str) -> str:
        port = {
            "tenant": self.tenant_port,
            "storage": self.storage_port,
            "llm": self.llm_port,
            "metering": self.metering_port,
        }[service]
        return f"{self.host}:{port}"

    @property
    def simulator_url(self) -> str:
        return f"http://{self.host}:{self.simulator_port}/v1"

    def jwt_providers(self) -> list[JwtProvider]:
        platform = JwtProvider(
            name="makoto",
            issuer=self.issuer,
            jwks_path=self.jwks_path,
            audiences=[self.audience],
        )
        return [platform, *self.extra_jwt_providers]

"""Mesh-wide configuration, read from the environment (prefix MAKOTO_) with pydantic-settings."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    # Envoy's admin interface: a Unix socket (mode 0600) under the home, never a TCP port, so
    # only the mesh's own user can reach it; "" = <home>/run/envoy-admin.sock.
    envoy_admin_socket: str = ""
    simulator_port: int = 8090

    # -- mutual TLS inside the mesh (services/common/tls.py) -----------------------------------
    # Envoy -> services and service -> service over mTLS (client certificates required, the peer's
    # SAN checked). Off only as an explicit opt-out for development tools (MAKOTO_TLS=false).
    tls: bool = True
    # Where the CA and the per-identity certificates are (default <home>/tls, made on first start;
    # Kubernetes mounts them from a Secret).
    tls_dir: Path | None = None
    # A plaintext port serving only grpc.health.v1 (no data, no tokens), for probes that cannot
    # do mTLS: Kubernetes' gRPC probes. 0 = none (`make up` and compose need none).
    health_port: int = 0
    # "development" (what `make up` runs) or "production" (the deploy/ profiles): outside
    # development, server reflection on the service ports needs a token.
    profile: Literal["development", "production"] = "development"
    # Where the platform's own stores (LOCAL objects, SQLite items) and its LLM endpoint keep
    # tenant data: a cloud region or jurisdiction code, checked against a tenant's region
    # (services/tenant/residency.py). Empty: those pass unlocated in development only.
    platform_region: str = ""

    issuer: str = "makoto-dev"
    audience: str = "makoto"
    # Extra trusted issuers (JSON list of JwtProvider), e.g. a Cognito user pool.
    extra_jwt_providers: list[JwtProvider] = Field(default_factory=list)

    # -- token lifecycle (services/common/jwt_verify.py, token_state.py) ------------------------
    # Longest lifetime (exp - iat) accepted for user and operator tokens, at Envoy and in services.
    max_token_ttl_seconds: int = Field(default=3600, ge=60)
    # Longest lifetime accepted for `service` tokens (they are re-minted before they expire).
    max_service_token_ttl_seconds: int = Field(default=300, ge=30)
    # How long a replica trusts "this token is not revoked" before asking Redis again: it bounds
    # how long a revoked token, a removed user or a revoked API key still gets through.
    token_state_cache_seconds: float = Field(default=0.5, ge=0)
    # While Redis (the revocation store) cannot be reached: refuse tokens (UNAVAILABLE) instead
    # of accepting them unchecked. Off by default, like the limits, so Redis is no single point
    # of failure for the whole data plane; the degraded state is logged and exported.
    token_state_fail_closed: bool = False
    # Check a user token's `sub` against the tenant's current users (TenantService's user store:
    # local table or Cognito pool): tenant-admin and member tokens of a subject the tenant does not
    # have are refused (PERMISSION_DENIED, USER_NOT_IN_TENANT). Unset: on under the production
    # profile, off in development, where `makoto token` mints tokens for any subject.
    token_user_check: bool | None = None
    # How long a "this user belongs to the tenant" answer is trusted (removals bite sooner, via
    # the revocation store), and how long a "does not" answer is.
    token_user_cache_seconds: float = Field(default=30.0, ge=0)
    token_user_negative_cache_seconds: float = Field(default=1.0, ge=0)
    # Lifetime of the token an API key is exchanged for (POST /api/v1/auth/token).
    api_key_token_ttl_seconds: int = Field(default=900, ge=30)
    # Keys a tenant may hold at once (revoked and expired ones excluded), and their longest life.
    api_keys_per_tenant: int = Field(default=100, ge=1)
    api_key_max_days: int = Field(default=365, ge=1)

    # Largest gRPC message a server accepts (bytes); object chunks are at most 1 MiB.
    max_message_bytes: int = 8 * 1024 * 1024
    # Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    # Seconds a resolved tenant (state, bindings) is used without asking TenantService again
    # while no push channel is up (no NATS configured, or NATS unreachable): it bounds how long a
    # suspension takes to bite without push.
    directory_cache_ttl_seconds: float = 1.0

    # -- directory failure behaviour and lifecycle push (services/common/tenant_events.py) --
    # NATS server for tenant lifecycle push, e.g. nats://127.0.0.1:4222; "" = no push (poll).
    nats_url: str = ""
    # Subjects are <prefix>.tenants.<tenant_id>.changed (tests use a private prefix).
    nats_subject_prefix: str = "makoto"
    # Freshness of a cached tenant while push is up; a background refetch then re-checks it.
    directory_push_ttl_seconds: float = 30.0
    # Longest a cached answer is served while TenantService cannot be reached; after that
    # data calls for the tenant fail UNAVAILABLE.
    directory_max_stale_seconds: float = 600.0
    # How long "no such tenant" (NOT_FOUND) is remembered.
    directory_negative_ttl_seconds: float = 2.0
    # How long a call waits for an expired entry's refetch before it is served the stale answer.
    directory_refresh_wait_seconds: float = 0.5
    # gRPC target the data plane resolves tenants at; "" = MAKOTO_HOST:MAKOTO_TENANT_PORT.
    # Several TenantService replicas: "ipv4:10.0.0.1:50051,10.0.0.2:50051" or
    # "dns:///tenant.internal:50051" (calls are spread round-robin over the replicas that answer).
    tenant_directory_target: str = ""

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

    # -- replicas (edge) -----------------------------------------------------------------------
    # Data-plane services can run as N processes behind one Envoy cluster of N endpoints.
    storage_replicas: int = Field(default=1, ge=1)
    llm_replicas: int = Field(default=1, ge=1)
    # Ports of the extra replicas (replica 1, 2, ...). Missing ones default to the service's port
    # + 100 * replica (storage: 50152, 50252, ...).
    storage_replica_ports: list[int] = Field(default_factory=list)
    llm_replica_ports: list[int] = Field(default_factory=list)
    # LLMService's OpenAI-compatible HTTP API (Envoy routes /v1/* to it): replica i listens on
    # llm_openai_replica_ports[i-1], else llm_openai_port + 100 * i.
    llm_openai_port: int = 50063
    llm_openai_replica_ports: list[int] = Field(default_factory=list)
    # Which replica this process is (0 = the first); the launcher sets it per child.
    replica_index: int = Field(default=0, ge=0)
    # -- workers (services/common/workers.py) ----------------------------------------------------
    # Worker processes per server process, all on the server's one port (SO_REUSEPORT): a
    # service uses that many cores. 1 = the process serves itself; 0 = one per CPU (what the
    # production profiles in deploy/ set for storage and llm); `make up` keeps 1.
    tenant_workers: int = Field(default=1, ge=0)
    storage_workers: int = Field(default=1, ge=0)
    llm_workers: int = Field(default=1, ge=0)
    metering_workers: int = Field(default=1, ge=0)
    # Which worker this process is (0 = the first); the supervisor sets it per worker.
    worker_index: int = Field(default=0, ge=0)
    # On SIGTERM a replicated service answers NOT_SERVING to health checks for this long before it
    # stops taking calls, so Envoy's health check (1 s interval) moves traffic away first.
    drain_delay_seconds: float = Field(default=2.5, ge=0)

    # -- Envoy timeouts and limits (edge) -------------------------------------------------------
    # Unary route timeouts by cluster (defaults in services/mesh/envoy_config.py), e.g.
    # {"storage": 10}: every unary REST and gRPC call ends within it (504 / DEADLINE_EXCEEDED).
    envoy_route_timeouts: dict[str, float] = Field(default_factory=dict)
    # A client must send all request headers within this.
    envoy_request_headers_timeout_seconds: float = Field(default=10.0, gt=0)
    # A client must send the whole request (headers and body) within this; streaming uploads
    # included. Unary calls are bounded sooner by their route timeout.
    envoy_request_timeout_seconds: float = Field(default=300.0, gt=0)
    # A stream with no bytes either way for this long is reset.
    envoy_stream_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    # A downstream connection with no stream open for this long is closed.
    envoy_idle_connection_timeout_seconds: float = Field(default=120.0, gt=0)
    # Connections the listener holds at once (more are closed at accept), and concurrent
    # HTTP/2 streams per downstream connection.
    envoy_max_connections: int = Field(default=10_000, ge=1)
    envoy_max_streams_per_connection: int = Field(default=100, ge=1)

    # -- fleet (deploy/) ------------------------------------------------------------------------
    # Where other servers are reached when they do not run on `host` (compose, Kubernetes): JSON,
    # e.g. {"tenant": "tenant", "metering": "metering", "simulator": "llm-simulator"}. `host` stays
    # the address this process binds (0.0.0.0 in a container).
    service_hosts: dict[str, str] = Field(default_factory=dict)

    # -- observing (README "Observing") -----------------------------------------------------------
    # OTLP/gRPC collector (host:port) that Envoy and every service send spans to; "" = no export
    # (services then still honour the standard OTEL_EXPORTER_OTLP_* variables).
    otlp_endpoint: str = ""
    # Seconds between span exports (Envoy's flush interval and the services' batch delay).
    otlp_flush_seconds: float = Field(default=5.0, gt=0)
    # Share of requests Envoy starts a sampled trace for (services follow Envoy's decision).
    trace_sample_percent: float = Field(default=100.0, ge=0, le=100)
    # Prometheus /metrics port per service, e.g. {"tenant": 9461, "storage": 9462, "llm": 9463,
    # "metering": 9464, "envoy": 9460} ("envoy": a listener serving Envoy's own stats). A service
    # not named serves no metrics. Replica i of a service uses its port + 100 * i (as gRPC ports).
    metrics_ports: dict[str, int] = Field(default_factory=dict)
    # Tenants a process labels by id in its metrics; later ones are counted as tenant="_other".
    metrics_max_tenants: int = Field(default=200, ge=0)

    # -- usage spool (billing) ---------------------------------------------------------------------
    # Most events one service's spool holds (MeteringService unreachable): past it, new tenant
    # calls are refused with UNAVAILABLE (USAGE_SPOOL_FULL) until delivery makes room.
    usage_spool_max_events: int = Field(default=2_000_000, ge=1)
    # Past this depth an ERROR log line ("usage spool growing") is written, once per crossing.
    usage_spool_warn_events: int = Field(default=100_000, ge=1)
    # Optional cap on the spool file's size in bytes (0: the disk is the limit). Reaching it is
    # handled like a full disk: new tenant calls get UNAVAILABLE (USAGE_SPOOL_UNAVAILABLE).
    usage_spool_max_bytes: int = Field(default=0, ge=0)
    # Where spooled usage goes: "spool" sends it to MeteringService.RecordUsage (the default,
    # nothing external); "jetstream" publishes it to NATS JetStream at nats_url, and every
    # MeteringService replica consumes the stream (services/common/usage_jetstream.py).
    usage_transport: Literal["spool", "jetstream"] = "spool"
    # The JetStream stream, its subject ("" = <nats_subject_prefix>.usage) and the durable
    # consumer MeteringService replicas share. Tests use private names.
    usage_stream: str = Field(default="MAKOTO_USAGE", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    usage_subject: str = ""
    usage_consumer: str = Field(default="metering", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # A message delivered to a consumer that neither acked nor failed it within this is
    # delivered again (to any replica): bounds the delay a killed MeteringService causes.
    usage_ack_wait_seconds: float = Field(default=30.0, gt=0)

    # -- egress (services/common/bindings/egress.py) ---------------------------------------------
    # Endpoints a tenant binding may point at beyond the provider host lists, comma-separated:
    # host, host:port, ip, ip:port, [v6]:port or a CIDR. Empty in production; development names
    # the local emulators and simulator (they live on loopback, which is otherwise refused), e.g.
    # MAKOTO_EGRESS_ALLOW=127.0.0.1:10000,localhost:4566.
    egress_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _split_egress_allow(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):  # the launcher passes lists as JSON
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # -- storage reconciliation (services/storage/reconcile.py) ----------------------------------
    # How often StorageService compares each tenant's metered storage_bytes with the bytes its
    # object backend actually lists, and records the difference as a correction (0: never).
    storage_reconcile_interval_seconds: float = Field(default=3600.0, ge=0)
    # Temp files and unindexed blobs of the local object store older than this are orphans
    # (swept at open and at each reconciliation); never less than a live upload can last.
    storage_orphan_age_seconds: float = Field(default=3600.0, gt=0)

    @property
    def admin_socket_path(self) -> Path:
        if self.envoy_admin_socket:
            return Path(self.envoy_admin_socket)
        return self.home / "run" / "envoy-admin.sock"

    @cached_property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def tls_path(self) -> Path:
        return self.tls_dir if self.tls_dir is not None else self.home / "tls"

    @property
    def signing_key_path(self) -> Path:
        return self.keys_dir / "signing-key.pem"

    @property
    def jwks_path(self) -> Path:
        return self.keys_dir / "jwks.json"

    @property
    def usage_subject_name(self) -> str:
        return self.usage_subject or f"{self.nats_subject_prefix}.usage"

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
        return f"{self.service_hosts.get(service, self.host)}:{port}"

    def checks_token_users(self) -> bool:
        """Whether user tokens' subjects are checked against the tenant's users (token_user_check)."""
        if self.token_user_check is not None:
            return self.token_user_check
        return self.profile == "production"

    def workers(self, service: str) -> int:
        count = {
            "tenant": self.tenant_workers,
            "storage": self.storage_workers,
            "llm": self.llm_workers,
            "metering": self.metering_workers,
        }.get(service, 1)
        return count or len(os.sched_getaffinity(0))

    def replicas(self, service: str) -> int:
        return {"storage": self.storage_replicas, "llm": self.llm_replicas}.get(service, 1)

    def replica_ports(self, service: str) -> list[int]:
        """Every replica's port, replica 0 (the service's own port) first."""
        base = int(self.address(service).rsplit(":", 1)[1])
        extra = {"storage": self.storage_replica_ports, "llm": self.llm_replica_ports}.get(service, [])
        return [base] + [
            extra[i - 1] if i - 1 < len(extra) else base + 100 * i for i in range(1, self.replicas(service))
        ]

    def metrics_port(self, service: str) -> int | None:
        """This process's /metrics port (None: metrics off for it)."""
        base = self.metrics_ports.get(service)
        if not base:
            return None
        return base + 100 * self.replica_index

    def openai_ports(self) -> list[int]:
        """The OpenAI-compatible HTTP port of every LLMService replica, replica 0 first."""
        base, extra = self.llm_openai_port, self.llm_openai_replica_ports
        return [base] + [
            extra[i - 1] if i - 1 < len(extra) else base + 100 * i for i in range(1, self.replicas("llm"))
        ]

    def replica_addresses(self, service: str) -> list[str]:
        return [f"{self.host}:{port}" for port in self.replica_ports(service)]

    @property
    def simulator_url(self) -> str:
        return f"http://{self.service_hosts.get('simulator', self.host)}:{self.simulator_port}/v1"

    def jwt_providers(self) -> list[JwtProvider]:
        platform = JwtProvider(
            name="makoto",
            issuer=self.issuer,
            jwks_path=self.jwks_path,
            audiences=[self.audience],
        )
        return [platform, *self.extra_jwt_providers]

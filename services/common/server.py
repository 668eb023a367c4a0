"""Server bootstrap shared by the four services: grpc.aio server with the Makoto interceptor,
OpenTelemetry instrumentation, grpc.health.v1, reflection, and graceful SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import deadline, tls, workers
from services.common.access import policies_for, rule_of
from services.common.breaker import breakers
from services.common.config import MeshSettings
from services.common.interceptor import MakotoInterceptor
from services.common.jwt_verify import JwtVerifier
from services.common.limits.api_rates import ApiRateLimiter
from services.common.metrics import MetricsServer
from services.common.peer_check import PeerCheckInterceptor
from services.common.policy import MethodPolicy
from services.common.telemetry import configure_logging, configure_tracing, otlp_requested
from services.common.token_state import TokenState
from services.common.usage import DurabilityGate, UsageRecorder
from services.common.user_check import DirectoryUsers, TenantUsers, UserCheck

log = structlog.get_logger("makoto.server")

# How often the health status follows the usage spool's state.
DURABILITY_POLL_SECONDS = 0.5
# After the grace period: how long calls cut by it may take to record their usage.
SHUTDOWN_RECORD_SECONDS = 5.0


@dataclass
class Registration:
    """One gRPC service on a server: how to add it, and its full name for health/reflection."""

    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    full_name: str


class Listener(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServerSpec:
    name: str
    port: int
    registrations: Sequence[Registration]
    # Who may call which method: by default read from the contract's access options of the
    # registered services; tests may pass their own table.
    policies: dict[str, MethodPolicy] | None = None
    recorder: UsageRecorder | None = None
    # The tenant API rate-limit step (None: no API rate limits on this server).
    rate_limiter: ApiRateLimiter | None = None
    # Other listeners of the process (LLMService's OpenAI-compatible HTTP API): started after the
    # gRPC server, stopped (their in-flight requests drained) before it.
    listeners: list[Listener] = field(default_factory=list)
    # Called once the server serves (background work such as the usage consumer).
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # The revocation store; None: one made from the settings (servers that write to it, such as
    # TenantService, pass the instance they share with their servicer).
    token_state: TokenState | None = None
    # Where user tokens' subjects are looked up when MAKOTO_TOKEN_USER_CHECK is on; None:
    # TenantDirectoryService.CheckTenantUser (TenantService passes its own user store).
    users: TenantUsers | None = None
    # Called after the server stopped accepting calls and in-flight calls finished.
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def contract_policies(registrations: Sequence[Registration]) -> dict[str, MethodPolicy]:
    """The interceptor's table for the registered services, from their access options."""
    pool = descriptor_pool.Default()
    return policies_for(*(pool.FindServiceByName(r.full_name) for r in registrations))


def internal_methods(registrations: Sequence[Registration]) -> set[str]:
    """gRPC paths of the contract's `internal` methods: callable by services only (mTLS peer)."""
    pool = descriptor_pool.Default()
    found: set[str] = set()
    for reg in registrations:
        try:
            service = pool.FindServiceByName(reg.full_name)
        except KeyError:
            # Only a test's stand-in servicer without descriptors (it passes its own policies);
            # a real service cannot start without them (contract_policies needs them too).
            continue
        found.update(f"/{service.full_name}/{m.name}" for m in service.methods if rule_of(m).internal)
    return found


def bind(server: grpc.aio.Server, settings: MeshSettings, name: str, port: int) -> int:
    """The service's port: mTLS with this service's certificate (client certificates required),
    or plaintext when TLS is switched off for development."""
    address = f"{settings.host}:{port}"
    if not settings.tls:
        return int(server.add_insecure_port(address))
    return int(server.add_secure_port(address, tls.server_credentials(settings, name)))


def _probe_server(
    settings: MeshSettings, name: str, health_servicer: health.aio.HealthServicer
) -> grpc.aio.Server | None:
    """The plaintext health-only port (settings.health_port) beside the mTLS one: the same
    health states, nothing else (no service, no reflection)."""
    if not settings.tls or not settings.health_port:
        return None
    probe = grpc.aio.server(options=server_options(settings, name))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
    if probe.add_insecure_port(f"{settings.host}:{settings.health_port}") == 0:
        raise SystemExit(f"{name}: cannot bind the health port {settings.host}:{settings.health_port}")
    return probe


class _ReflectionPool:
    """The default descriptor pool, but FindFileContainingSymbol also resolves a method
    ("pkg.Service.Method"): upb's pool does not, so `grpcurl describe pkg.Service.Method`
    failed with "Symbol not found"."""

    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            return self._pool.FindMethodByName(symbol).containing_service.file


def token_state_for(settings: MeshSettings) -> TokenState:
    return TokenState(
        settings.redis_url or None,
        prefix=settings.redis_prefix,
        max_token_ttl_seconds=settings.max_token_ttl_seconds,
        cache_seconds=settings.token_state_cache_seconds,
        fail_closed=settings.token_state_fail_closed,
    )


def server_options(settings: MeshSettings, service: str = "") -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Off for a single process, so a port clash (another mesh on the port) fails loudly;
        # on for workers, which share their port on purpose.
        ("grpc.so_reuseport", 1 if settings.workers(service) > 1 else 0),
    ]


# Files and directories a service creates (SQLite databases, spools, keys, logs) are its own:
# 0600 / 0700, never world-readable.
PRIVATE_UMASK = 0o077


def private_files() -> None:
    os.umask(PRIVATE_UMASK)


async def run_server(
    spec: ServerSpec, settings: MeshSettings, stop_event: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT (or stop_event); then drain in-flight calls and stop."""
    configure_logging(spec.name, settings.log_level)
    configure_tracing(spec.name, settings)
    verifier = JwtVerifier(
        settings.jwt_providers(),
        service=spec.name,
        max_ttl_seconds=settings.max_token_ttl_seconds,
        max_service_ttl_seconds=settings.max_service_token_ttl_seconds,
    )
    token_state = spec.token_state or token_state_for(settings)
    directory_users: DirectoryUsers | None = None
    user_check: UserCheck | None = None
    if settings.checks_token_users():
        users = spec.users
        if users is None:
            users = directory_users = DirectoryUsers(settings, spec.name)
        user_check = UserCheck(
            users,
            ttl_seconds=settings.token_user_cache_seconds,
            negative_ttl_seconds=settings.token_user_negative_cache_seconds,
            max_stale_seconds=settings.directory_max_stale_seconds,
        )
    breakers.configure(settings.breaker_failure_threshold, settings.breaker_cooldown_seconds)
    makoto = MakotoInterceptor(
        service_name=spec.name,
        verifier=verifier,
        policies=spec.policies if spec.policies is not None else contract_policies(spec.registrations),
        recorder=spec.recorder,
        deadlines=deadline.policy_for(
            spec.name, settings.deadline_default_seconds, settings.deadline_max_seconds
        ),
        rate_limiter=spec.rate_limiter,
        worker=settings.worker_index if settings.workers(spec.name) > 1 else None,
        tracing=otlp_requested(settings),
        token_state=token_state,
        user_check=user_check,
        reflection_needs_token=settings.profile != "development",
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [
        # The peer's certificate first: an Envoy connection never reaches an internal method.
        *([PeerCheckInterceptor(internal_methods(spec.registrations))] if settings.tls else []),
        makoto,
    ]
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings, spec.name))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [r.full_name for r in spec.registrations]
    for reg in spec.registrations:
        reg.add(reg.servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
        pool=_ReflectionPool(),
    )
    bound = bind(server, settings, spec.name, spec.port)
    if bound == 0:
        raise SystemExit(f"{spec.name}: cannot bind {settings.host}:{spec.port}")
    probe = _probe_server(settings, spec.name, health_servicer)
    if spec.recorder is not None:
        await spec.recorder.start()
    scrape = MetricsServer(settings, spec.name)
    scrape.start()
    await server.start()
    if probe is not None:
        await probe.start()
    for listener in spec.listeners:
        await listener.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    for hook in spec.on_start:
        await hook()
    log.info("serving", service=spec.name, address=f"{settings.host}:{bound}")
    durability = (
        asyncio.create_task(_report_durability(spec.recorder, health_servicer, ["", *names]))
        if isinstance(spec.recorder, DurabilityGate)
        else None
    )

    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    await stop.wait()
    log.info("stopping", service=spec.name, grace_seconds=settings.shutdown_grace_seconds)
    if durability is not None:
        durability.cancel()
    # Tell health checkers first so Envoy stops routing here, then drain.
    await health_servicer.enter_graceful_shutdown()
    if settings.replicas(spec.name) > 1:
        # Other replicas can take the traffic: keep serving until Envoy's health check has seen
        # NOT_SERVING and moved new calls away, so a rolling restart fails no call.
        await asyncio.sleep(settings.drain_delay_seconds)
    for listener in spec.listeners:
        await listener.stop()
    # Calls still running when the grace period ends are cut by the server: mark them so their
    # api_calls record says so (a little early, so the mark is set before grpc cancels them).
    cut_mark = loop.call_later(max(0.0, settings.shutdown_grace_seconds - 0.1), makoto.begin_shutdown)
    await server.stop(settings.shutdown_grace_seconds)
    if probe is not None:
        await probe.stop(None)
    cut_mark.cancel()
    # Cut calls finish their finally blocks (and record their usage) after grpc cancelled them.
    await makoto.wait_idle(SHUTDOWN_RECORD_SECONDS)
    for hook in spec.on_stop:
        try:
            await hook()
        except Exception:
            log.exception("shutdown hook failed")
    if spec.recorder is not None:
        await spec.recorder.close()
    scrape.stop()
    await token_state.close()
    if directory_users is not None:
        await directory_users.close()
    log.info("stopped", service=spec.name)


async def _report_durability(
    gate: DurabilityGate, health_servicer: health.aio.HealthServicer, names: Sequence[str]
) -> None:
    """NOT_SERVING while the usage spool refuses (cannot write, or full), so Envoy and
    orchestrators route tenant calls to a replica that can record them."""
    serving = True
    while True:
        await asyncio.sleep(DURABILITY_POLL_SECONDS)
        now = gate.refusal() is None
        if now != serving:
            serving = now
            status = (
                health_pb2.HealthCheckResponse.SERVING if now else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in names:
                await health_servicer.set(name, status)
            log.warning("health changed by usage spool", serving=now)


def main(build: Callable[[MeshSettings], Awaitable[ServerSpec]], service: str | None = None) -> None:
    """Entry point used by `python -m services.<name>`. With MAKOTO_<NAME>_WORKERS > 1 this
    process supervises that many workers on its port instead (services/common/workers.py)."""
    private_files()
    settings = MeshSettings()
    name = service or build.__module__.split(".")[1]
    if settings.workers(name) > 1 and not workers.is_worker():
        configure_logging(name, settings.log_level)
        supervisor = workers.Supervisor(name, settings.workers(name), settings.shutdown_grace_seconds)
        raise SystemExit(supervisor.run())

    async def _run() -> None:
        spec = await build(settings)
        await run_server(spec, settings)

    asyncio.run(_run())

"""Helpers shared by the test suites: free ports, settings on a temp home, in-process servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from services.common import tls
from services.common.config import MeshSettings
from services.common.dev_issuer import ensure_signing_key, mint_token
from services.common.identity import Role, service_audience
from services.common.server import ServerSpec, run_server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DEV_EGRESS_ALLOW = ("127.0.0.1", "localhost", "::1")

_TLS_DIR: Path | None = None


def tls_dir() -> Path:
    """The mesh certificates every test of this process shares (made once: each settings'
    own home would mean a new CA per test, and a client could not find the one it needs)."""
    global _TLS_DIR
    if _TLS_DIR is None:
        _TLS_DIR = Path(tempfile.mkdtemp(prefix="makoto-test-tls-")) / "tls"
        tls.ensure_certs(MeshSettings(tls_dir=_TLS_DIR))
    return _TLS_DIR


def tls_settings() -> MeshSettings:
    return MeshSettings(tls_dir=tls_dir())


def direct_channel(
    target: str,
    *,
    identity: str = "tenant",
    options: list[tuple[str, str | int]] | None = None,
    interceptors: list[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A channel to a service's own port (bypassing Envoy) over the mesh's mTLS. The default
    identity is a service's, as a peer service calls; pass identity="envoy" or "operator" for
    what Envoy or an operator's tool may call (no internal methods)."""
    creds = tls.channel_credentials(tls_settings(), identity)
    return grpc.aio.secure_channel(target, creds, options=options, interceptors=interceptors)


def direct_ssl(identity: str = "envoy") -> ssl.SSLContext:
    """For HTTPS to a service's own HTTP listener (LLMService's OpenAI-compatible API): trust
    the mesh CA and present `identity`'s certificate, as Envoy does."""
    return tls.client_ssl_context(tls_settings(), identity)


def bind_tls(server: grpc.aio.Server, address: str, service: str) -> int:
    """A test's own stand-in server for `service` on the mesh's mTLS (the clients under test
    connect with TLS, as in production)."""
    return server.add_secure_port(address, tls.server_credentials(tls_settings(), service))


def make_settings(home: Path, **overrides: object) -> MeshSettings:
    """Settings on a private home with every port free; the dev signing key is created. The
    mesh's mTLS certificates are the process's shared test set (tls_dir())."""
    values: dict[str, object] = {
        "home": home,
        "tls_dir": tls_dir(),
        "tenant_port": free_port(),
        "storage_port": free_port(),
        "llm_port": free_port(),
        "llm_openai_port": free_port(),
        "metering_port": free_port(),
        "envoy_port": free_port(),
        "simulator_port": free_port(),
        "log_level": "WARNING",
        "shutdown_grace_seconds": 2.0,
        # The machine's Redis is shared by every test run: each settings gets its own keys.
        "redis_prefix": f"makoto-test-{uuid.uuid4().hex[:12]}:",
        # The dev egress allow-list the tests run under: every emulator (moto, Azurite, Cosmos,
        # the LLM simulator) listens on loopback, which bindings may otherwise not name.
        "egress_allow": list(DEV_EGRESS_ALLOW),
    }
    values.update(overrides)
    settings = MeshSettings(**values)  # type: ignore[arg-type]
    ensure_signing_key(settings)
    return settings


def bearer(
    settings: MeshSettings, role: Role | str, tenant_id: str | None = None
) -> tuple[tuple[str, str], ...]:
    # Service tokens are audience-bound: the helper's is addressed to every service.
    audience = (
        [service_audience(settings.audience, s) for s in ("tenant", "storage", "llm", "metering")]
        if Role(role) == Role.SERVICE
        else None
    )
    token = mint_token(settings, role=Role(role), tenant_id=tenant_id, audience=audience)
    return (("authorization", f"Bearer {token}"),)


@contextlib.asynccontextmanager
async def running_server(
    build: Callable[[MeshSettings], Awaitable[ServerSpec]], settings: MeshSettings
) -> AsyncIterator[ServerSpec]:
    """Run one service in this event loop (real grpc.aio server on its configured port)."""
    spec = await build(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(run_server(spec, settings, stop_event=stop))
    # wait until the port answers
    host, port = settings.host, spec.port
    for _ in range(200):
        if task.done():
            task.result()
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            break
        except OSError:
            await asyncio.sleep(0.025)
    try:
        yield spec
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_token(claims: dict[str, object], *, alg: str, key: bytes = b"") -> str:
    """Hand-built JWT for attacks libraries refuse to produce: alg "none", or HS256 keyed with
    the issuer's public key (algorithm confusion)."""
    import hashlib
    import hmac
    import json

    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signing_input = f"{header}.{body}".encode()
    if alg == "none":
        return f"{header}.{body}."
    if alg == "HS256":
        return f"{header}.{body}.{_b64(hmac.new(key, signing_input, hashlib.sha256).digest())}"
    raise ValueError(alg)


async def client_stream(call_factory: Any, parts: Iterable[Any] | AsyncIterable[Any], metadata: Any) -> Any:
    """Run a client-streaming RPC by writing messages one by one and return its answer.

    Passing an iterator to a grpc.aio stub races when the server refuses the call early: the
    client's background writer then fails and surfaces INTERNAL "Internal error from Core"
    instead of the server's status. Writing explicitly and stopping once the call is done
    avoids most of that; the rest (a write that loses the race) is replayed for a list.

    ``parts`` may be a list or any iterable or async iterable: a generator is consumed lazily,
    one message at a time, so a large upload is never held in memory.
    """
    import grpc

    # Replaying is safe only for a list (re-iterable) whose first attempt lost the server's
    # answer to grpc's client-side write race; a generator is never replayed.
    attempts = 3 if isinstance(parts, list) else 1
    for attempt in range(attempts):
        call = call_factory(metadata=metadata)
        write_failed = await _write_all(call, parts)
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            lost_race = (
                write_failed
                and err.code() == grpc.StatusCode.INTERNAL
                and err.details() == "Internal error from Core"
            )
            if not lost_race or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def _write_all(call: Any, parts: Iterable[Any] | AsyncIterable[Any]) -> bool:
    """Write every message, stopping once the call is over; True if a write found it over.

    grpc.aio marks the call INTERNAL "Internal error from Core" when a write's batch fails
    before the server's status has arrived (the server refused the call early); the status
    the server sent is lost then, which is why client_stream replays a list once more.
    """
    import grpc

    async def send(part: Any) -> bool:
        """Write one message; False once the call is over (the server answered early)."""
        if call.done():
            return False
        try:
            await call.write(part)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return False
        return True

    try:
        finished = True
        if isinstance(parts, AsyncIterable):
            async for part in parts:
                if not await send(part):
                    finished = False
                    break
        else:
            for part in parts:
                if not await send(part):
                    finished = False
                    break
        if finished and not call.done():
            try:
                await call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return True
    except BaseException:
        call.cancel()  # producing the messages failed (or we were cancelled): end the call too
        raise
    return not finished


def run_gen_check(check: str, descriptor_set: Path) -> subprocess.CompletedProcess[str]:
    """Run one of scripts/gen.py's build checks (`check_access`, `check_field_behavior`) over a
    descriptor set, as `make gen` runs it right after writing one."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, pathlib; sys.path.insert(0, 'scripts'); "
        f"import gen; gen.{check}(pathlib.Path(sys.argv[1]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(descriptor_set)], cwd=root, capture_output=True, text=True
    )

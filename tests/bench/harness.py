"""What every section shares: the run's configuration, the processes it starts (the mesh,
the emulators, a PostgreSQL database) and how a section's failure becomes a row."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.bench.mesh import BenchMesh, start_mesh, stop_mesh

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", file=sys.stderr, flush=True)


@dataclass
class Config:
    getitem_requests: int = 2000
    getitem_concurrency: int = 16
    getitem_warmup: int = 200
    getitem_rounds: int = 5
    transfer_mib: int = 256  # section 2: local object over gRPC vs raw disk
    local_large_mib: int = 1024  # section 3: local backend, and its peak memory
    cloud_mib: int = 256  # section 3: s3 / azure_blob
    cloud_large_mib: int = 1024  # s3 / azure_blob: service-only run for the peak-memory figure
    item_ops: dict[str, int] = field(
        default_factory=lambda: {"sqlite": 1000, "postgres": 1000, "dynamodb": 500, "cosmos": 500}
    )
    # Rounds per backend: the fast local backends are the ones a busy box disturbs most.
    item_rounds: dict[str, int] = field(
        default_factory=lambda: {"sqlite": 3, "postgres": 3, "dynamodb": 1, "cosmos": 1}
    )
    item_warmup: int = 20
    item_concurrency: int = 16
    backend_timeout_s: float = 240.0
    # Section 6 (LLM gateway): chats at c=1 and c=16, streams at c=1, warm-up chats per path.
    llm_requests_c1: int = 300
    llm_requests_c16: int = 2000
    llm_stream_requests: int = 200
    llm_warmup: int = 100
    ingest_events: int = 200_000  # section 6a, per store
    ingest_e2e_events: int = 50_000  # sections 6b, 6c

    @classmethod
    def quick(cls) -> Config:
        """Toy sizes: checks the whole pipeline in well under a minute (numbers mean little)."""
        return cls(
            getitem_requests=200,
            getitem_warmup=20,
            getitem_rounds=1,
            transfer_mib=8,
            local_large_mib=16,
            cloud_mib=16,
            cloud_large_mib=32,
            item_ops={"sqlite": 50, "postgres": 50, "dynamodb": 30, "cosmos": 30},
            item_warmup=5,
            backend_timeout_s=60.0,
            llm_requests_c1=40,
            llm_requests_c16=200,
            llm_stream_requests=20,
            llm_warmup=20,
            ingest_events=5_000,
            ingest_e2e_events=2_000,
        )


@dataclass
class Environment:
    root: Path
    mesh: BenchMesh | None = None
    moto: Any = None
    azurite: Any = None
    cosmos: Any = None
    pg_dsn: str | None = None
    pg_version: str = "not reached"
    missing: dict[str, str] = field(default_factory=dict)  # backend -> why it is not there


# -- starting and stopping -------------------------------------------------------------------


def _start_one(env: Environment, stack: contextlib.ExitStack, name: str, start: Callable[[], Any]) -> Any:
    """Start one emulator; on failure remember why instead of giving up the whole run."""
    say(f"starting {name} ...")
    try:
        started = start()
    except (Exception, pytest.fail.Exception) as exc:
        reason = f"{name} did not start: {str(exc).splitlines()[0][:200]}"
        say(reason)
        return reason
    if isinstance(started, contextlib.AbstractContextManager):
        return stack.enter_context(started)
    stack.callback(started.stop)
    return started


def start_everything(env: Environment, stack: contextlib.ExitStack, emulators: bool = True) -> None:
    """The mesh; and, with `emulators`, the cloud emulators the storage sections use."""
    from tests.contract.emulators import start_azurite, start_moto
    from tests.contract.item_emulators import start_cosmos

    say("starting the mesh (`python -m services.cli up`) ...")
    env.mesh = start_mesh(env.root / "mesh")
    stack.callback(stop_mesh, env.mesh)
    say(f"mesh ready: Envoy {env.mesh.envoy_target}, StorageService {env.mesh.address('storage')}")
    if not emulators:
        return
    for attr, name, start, backends in (
        ("moto", "moto_server", start_moto, ("s3", "dynamodb")),
        ("azurite", "azurite-blob", start_azurite, ("azure_blob",)),
        ("cosmos", "cosmosdb-server", start_cosmos, ("cosmos",)),
    ):
        got = _start_one(env, stack, name, start)
        if isinstance(got, str):
            for backend in backends:
                env.missing[backend] = got
        else:
            setattr(env, attr, got)


@contextlib.asynccontextmanager
async def postgres_database(env: Environment) -> AsyncIterator[None]:
    """A fresh database on the local PostgreSQL for the run, dropped afterwards."""
    import asyncpg

    from tests.contract.item_emulators import PG_ADMIN_DSN

    name = f"makoto_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        env.missing["postgres"] = f"PostgreSQL not reachable at {PG_ADMIN_DSN} ({type(exc).__name__})"
        yield
        return
    try:
        env.pg_version = str(await admin.fetchval("SHOW server_version"))
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    env.pg_dsn = f"{base}/{name}"
    try:
        yield
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def bounded(coro: Awaitable[None], timeout: float) -> str | None:
    """Run one backend's measurements; the reason if they could not finish."""
    try:
        await asyncio.wait_for(coro, timeout)
        return None
    except TimeoutError:
        return f"not measured: did not finish within {timeout:.0f} s"
    except grpc.aio.AioRpcError as exc:
        return f"not measured: {exc.code().name}: {(exc.details() or '')[:200]}"
    except Exception as exc:
        return f"not measured: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"

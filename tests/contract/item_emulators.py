"""Backends the cloud item-store adapters are tested on, found or started by the tests.

- moto server (DynamoDB): `python -m moto.server` on a free port, one per session (other suites
  may run their own moto; each is independent).
- @vercel/cosmosdb-server (Cosmos DB): node_modules/.bin/cosmosdb-server on a free port, HTTPS
  with its self-signed certificate (the adapter's binding option connection_verify=false is
  for this emulator only). `npm install` runs if the package is missing.
- PostgreSQL: found at 127.0.0.1:5432 (user postgres, trust; MAKOTO_TEST_PG_DSN overrides);
  one uniquely named database per session, dropped at the end. No server: the tests fail
  loudly, saying so.

start_moto() / start_cosmos() also serve tests that need an instance of their own (e.g. to stop
it mid-test). Everything listens on 127.0.0.1 and is stopped by whoever started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import pytest
import pytest_asyncio

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
COSMOS_BIN = ROOT / "node_modules" / ".bin" / "cosmosdb-server"
# The well-known key of the Cosmos DB emulators (the fake checks no key at all).
COSMOS_EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
PG_ADMIN_DSN = os.environ.get("MAKOTO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Emulator:
    name: str
    endpoint: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]  # the process's output (a file, so a chatty process never blocks on a pipe)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]


def _wait_for_port(emulator: Emulator, timeout: float = 30.0) -> None:
    proc, port, name = emulator.process, emulator.port, emulator.name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening: {emulator.output()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {timeout}s")


@contextlib.contextmanager
def start_moto(check_credentials: bool = False) -> Iterator[Emulator]:
    """check_credentials: moto then authenticates every request against its own IAM (which
    knows no keys), so any credentials are refused as on AWS with unknown keys."""
    port = free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    log = tempfile.TemporaryFile()  # closed by Emulator.stop
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    emulator = Emulator("moto server", f"http://127.0.0.1:{port}", port, proc, log)
    try:
        _wait_for_port(emulator)
        yield emulator
    finally:
        emulator.stop()


def _ensure_cosmos_installed() -> None:
    if COSMOS_BIN.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("@vercel/cosmosdb-server is not installed and npm is not on PATH (run `npm install`)")
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
    if not COSMOS_BIN.exists():
        pytest.fail(f"npm install did not provide {COSMOS_BIN}")


@contextlib.contextmanager
def start_cosmos() -> Iterator[Emulator]:
    _ensure_cosmos_installed()
    port = free_port()
    log = tempfile.TemporaryFile()  # closed by Emulator.stop
    proc = subprocess.Popen(
        [str(COSMOS_BIN), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    emulator = Emulator("cosmosdb-server", f"https://127.0.0.1:{port}", port, proc, log)
    try:
        _wait_for_port(emulator)
        yield emulator
    finally:
        emulator.stop()


# Fixture names carry "item" so they never shadow the object-store suites' own emulators
# (tests/contract/emulators.py); each suite runs its own instances.


@pytest.fixture(scope="session")
def item_moto() -> Iterator[Emulator]:
    with start_moto() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def item_cosmos() -> Iterator[Emulator]:
    with start_cosmos() as emulator:
        yield emulator


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def item_postgres_dsn() -> AsyncIterator[str]:
    """DSN of a fresh database on the local PostgreSQL, dropped after the session."""
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({type(exc).__name__}: {exc}). The item-store "
            "tests need a PostgreSQL server there (user postgres, trust auth) or MAKOTO_TEST_PG_DSN.",
            pytrace=False,
        )
    name = f"makoto_items_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def unique_tenant(prefix: str = "t") -> str:
    """A tenant id matching ^[a-z][a-z0-9-]{2,62}$, unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"

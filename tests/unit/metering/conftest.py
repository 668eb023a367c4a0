"""Fixtures of the MeteringService suite: a PostgreSQL database per module (created and dropped
here), and a real MeteringService on each store backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import asyncpg
import pytest
from makoto.metering.v1 import metering_pb2_grpc

from services.common.config import MeshSettings
from services.metering.plans import FixedPlanResolver
from services.metering.server import build
from tests.support import direct_channel, make_settings, running_server

PG_ADMIN_DSN = os.environ.get("MAKOTO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is unreachable at {PG_ADMIN_DSN} ({type(exc).__name__}: {exc}). "
            "The metering store must pass its tests on PostgreSQL: start a server on "
            "127.0.0.1:5432 (user postgres, trust auth) or set MAKOTO_TEST_PG_DSN.",
            pytrace=False,
        )


@pytest.fixture(scope="module")
async def pg_url() -> AsyncIterator[str]:
    """A fresh, uniquely named PostgreSQL database for this module, dropped afterwards."""
    name = f"makoto_metering_test_{uuid.uuid4().hex[:12]}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Metering:
    """A running MeteringService and what a test needs to talk to it."""

    backend: str
    settings: MeshSettings
    stub: metering_pb2_grpc.MeteringServiceStub
    plans: FixedPlanResolver


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None: the embedded SQLite default; else a fresh PostgreSQL database's URL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return None


@pytest.fixture(scope="module")
async def metering(
    store_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Metering]:
    settings = make_settings(tmp_path_factory.mktemp("metering"))
    plans = FixedPlanResolver()
    with pytest.MonkeyPatch.context() as mp:
        if store_url:
            # Through the documented variable, so the env path is what gets exercised.
            mp.setenv("MAKOTO_METERING_DB_URL", store_url)
        else:
            mp.delenv("MAKOTO_METERING_DB_URL", raising=False)
        async with running_server(partial(build, plans=plans), settings):
            async with direct_channel(settings.address("metering")) as channel:
                stub = metering_pb2_grpc.MeteringServiceStub(channel)
                yield Metering("postgresql" if store_url else "sqlite", settings, stub, plans)


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"

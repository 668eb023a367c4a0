"""Failure behaviour of the cloud object adapters, one suite over S3 and Azure Blob: the
emulator process gone (UNAVAILABLE naming the tenant, never the secret), and a Retry-After too
long to wait handed to the caller at once (a tiny local HTTP endpoint answers exactly what the
service answers: S3's 503 SlowDown, Blob's 503 ServerBusy). Throttling, rejected credentials
and a link failure mid-upload are in the fault contract suite
(tests/contract/test_object_store_faults.py), run over every network object backend.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from services.common.errors import ResourceExhausted, Unavailable
from tests.unit.storage_cloud_objects.conftest import Cloud
from tests.unit.storage_s3.helpers import chunked

Handler = Callable[[web.Request], web.Response]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve a handler on a free port; returns the server's root URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()

        async def route(request: web.Request) -> web.Response:
            return handler(request)

        app.router.add_route("*", "/{tail:.*}", route)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_unavailable_when_the_endpoint_goes_away(cloud: Cloud) -> None:
    emu = cloud.start_own_emulator()  # our own instance: the session one keeps running
    store = cloud.store_on("t-down", emu)
    try:
        await store.provision()
        await store.put("k", chunked(b"data"), content_type="", user_metadata={})
        assert (await store.head("k")).size == 4
        emu.stop()
        for op in (
            store.head("k"),
            store.get("k"),
            store.list("", 10, ""),
            store.put("k2", chunked(b"x"), content_type="", user_metadata={}),
            store.provision(),
        ):
            with pytest.raises(Unavailable) as err:
                await op
            assert "t-down" in err.value.message and cloud.secret not in err.value.message
    finally:
        emu.stop()
        await store.close()


async def test_long_retry_after_is_handed_to_the_caller(cloud: Cloud, serve: Serve) -> None:
    calls: list[int] = []

    def busy(_: web.Request) -> web.Response:
        calls.append(1)
        return cloud.busy(120)

    store = cloud.fake_store("t-busy", await serve(busy), max_attempts="4")
    try:
        started = time.monotonic()
        with pytest.raises(ResourceExhausted) as err:
            await store.list("", 10, "")
        assert err.value.retry_after_seconds == 120.0 and len(calls) == 1
        assert time.monotonic() - started < 2
    finally:
        await store.close()

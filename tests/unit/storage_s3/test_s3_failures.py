"""Failure behaviour only the S3 adapter's tests show: the emulator process gone, a Retry-After
too long to wait handed to the caller (a tiny local HTTP endpoint answers exactly what S3
answers), and why rejected credentials cannot be shown with moto alone. Throttling, rejected
credentials and a link failure mid-upload are in the fault contract suite
(tests/contract/test_object_store_faults.py), run over every network object backend.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from services.common.errors import ResourceExhausted, Unavailable
from tests.contract.emulators import MOTO_CREDENTIALS, start_moto
from tests.unit.storage_s3.conftest import MakeStore, s3_store
from tests.unit.storage_s3.helpers import chunked

Handler = Callable[[web.Request], web.Response]


@pytest.fixture
async def fake_s3() -> AsyncIterator[Callable[[Handler], str]]:
    """Serve a handler on a free port; returns its endpoint URL."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()

        async def route(request: web.Request) -> web.Response:
            return handler(request)

        app.router.add_route("*", "/{tail:.*}", route)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    serve_fn: Callable[[Handler], str] = serve  # type: ignore[assignment]
    yield serve_fn
    for runner in runners:
        await runner.cleanup()


def s3_error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return web.Response(status=status, body=body.encode(), headers=headers, content_type="application/xml")


async def test_unavailable_when_the_endpoint_goes_away() -> None:
    emu = start_moto()  # our own instance: the session one keeps running for the other tests
    store = s3_store("t-down", emu.endpoint)
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
        ):
            with pytest.raises(Unavailable) as err:
                await op
            assert "t-down" in err.value.message
            assert MOTO_CREDENTIALS["secret_access_key"] not in err.value.message
    finally:
        emu.stop()
        await store.close()


async def test_long_retry_after_is_handed_to_the_caller(fake_s3: Callable[[Handler], str]) -> None:
    calls: list[int] = []

    def busy(_: web.Request) -> web.Response:
        calls.append(1)
        return s3_error(503, "SlowDown", {"Retry-After": "120"})

    endpoint = await fake_s3(busy)  # type: ignore[misc]
    store = s3_store("t-busy", endpoint, max_attempts="4")
    try:
        started = time.monotonic()
        with pytest.raises(ResourceExhausted) as err:
            await store.list("", 10, "")
        assert err.value.retry_after_seconds == 120.0 and len(calls) == 1
        assert time.monotonic() - started < 2
    finally:
        await store.close()


async def test_moto_checks_no_credentials(make_store: MakeStore) -> None:
    """Documents why the bad-credential case above uses a fake endpoint: moto accepts anything."""
    store = await make_store()
    assert (await store.put("k", chunked(b"x"), content_type="", user_metadata={})).size == 1

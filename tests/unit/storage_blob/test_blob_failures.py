"""Failure behaviour only the Azure Blob adapter's tests show: the emulator process gone, and a
Retry-After too long to wait handed to the caller (a tiny local HTTP endpoint answers what Blob
Storage answers: 503 ServerBusy with x-ms-error-code and Retry-After). Throttling, a wrong
account key and a link failure mid-upload are in the fault contract suite
(tests/contract/test_object_store_faults.py), run over every network object backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from services.common.errors import ResourceExhausted, Unavailable
from services.storage.adapters.azure_blob import AzureBlobObjectStore, config_from_binding
from tests.contract.emulators import AZURITE_KEY, start_azurite
from tests.unit.storage_blob.conftest import blob_binding, blob_store
from tests.unit.storage_s3.helpers import chunked

Handler = Callable[[web.Request], web.Response]


@pytest.fixture
async def fake_blob() -> AsyncIterator[Callable[[Handler], str]]:
    """Serve a handler on a free port; returns an account URL on it."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()

        async def route(request: web.Request) -> web.Response:
            return handler(request)

        app.router.add_route("*", "/{tail:.*}", route)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/fakeaccount"

    serve_fn: Callable[[Handler], str] = serve  # type: ignore[assignment]
    yield serve_fn
    for runner in runners:
        await runner.cleanup()


def blob_error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f"<?xml version='1.0' encoding='utf-8'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"x-ms-error-code": code, **(headers or {})},
    )


def fake_store(tenant: str, account_url: str, **options: str) -> AzureBlobObjectStore:
    binding = blob_binding(account_url, **options)
    return AzureBlobObjectStore(config_from_binding(tenant, binding, {"account_key": AZURITE_KEY}))


async def test_unavailable_when_the_endpoint_goes_away() -> None:
    emu = start_azurite()  # our own instance: the session one keeps running for the other tests
    store = blob_store("t-down", emu)
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
            assert "t-down" in err.value.message and AZURITE_KEY not in err.value.message
    finally:
        emu.stop()
        await store.close()


async def test_long_retry_after_is_handed_to_the_caller(fake_blob: Callable[[Handler], str]) -> None:
    calls: list[int] = []

    def busy(_: web.Request) -> web.Response:
        calls.append(1)
        return blob_error(503, "ServerBusy", {"Retry-After": "90"})

    store = fake_store("t-wait", await fake_blob(busy), max_attempts="4")  # type: ignore[misc]
    try:
        with pytest.raises(ResourceExhausted) as err:
            await store.list("", 10, "")
        assert err.value.retry_after_seconds == 90.0 and len(calls) == 1
    finally:
        await store.close()

"""Failure behaviour of the Azure Blob adapter: unreachable endpoint, wrong key, throttling.

Wrong credentials run against Azurite itself (it verifies Shared Key signatures). Azurite never
throttles, so throttling is driven by a tiny local HTTP endpoint answering what Blob Storage
answers (503 ServerBusy with an x-ms-error-code header and Retry-After); the SDK and the
adapter run unmodified against it.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from services.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
from services.storage.adapters.azure_blob import AzureBlobObjectStore, config_from_binding
from tests.contract.emulators import AZURITE_KEY, Azurite, start_azurite
from tests.unit.storage_blob.conftest import MakeStore, blob_binding, blob_store
from tests.unit.storage_s3.helpers import chunked

Handler = Callable[[web.Request], web.Response]
WRONG_KEY = base64.b64encode(b"not the account key, but 64 bytes long......................!!").decode()


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


async def test_wrong_account_key_is_failed_precondition_without_the_key(
    make_store: MakeStore, azurite: Azurite
) -> None:
    good = await make_store()
    await good.put("k", chunked(b"data"), content_type="", user_metadata={})
    bad = blob_store(good.cfg.tenant_id, azurite, {"account_key": WRONG_KEY})
    try:
        for op in (
            bad.head("k"),
            bad.get("k"),
            bad.list("", 10, ""),
            bad.put("k", chunked(b"x"), content_type="", user_metadata={}),
            bad.delete("k"),
            bad.provision(),
        ):
            with pytest.raises(FailedPrecondition) as err:
                await op
            message = err.value.message
            assert good.cfg.tenant_id in message and "object store binding" in message
            assert WRONG_KEY not in message and AZURITE_KEY not in message and "credentials" in message
            assert err.value.reason == "BACKEND_CREDENTIALS_REJECTED"
    finally:
        await bad.close()
    _, stream = await good.get("k")  # nothing changed
    assert b"".join([c async for c in stream]) == b"data"


async def test_throttling_is_retried_then_resource_exhausted(fake_blob: Callable[[Handler], str]) -> None:
    calls: list[float] = []

    def busy(_: web.Request) -> web.Response:
        calls.append(time.monotonic())
        return blob_error(503, "ServerBusy", {"Retry-After": "1"})

    store = fake_store("t-busy", await fake_blob(busy), max_attempts="2")  # type: ignore[misc]
    try:
        with pytest.raises(ResourceExhausted) as err:
            await store.head("k")
        assert err.value.retry_after_seconds == 1.0
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.95  # waited what Retry-After asked
    finally:
        await store.close()


async def test_throttling_then_success(fake_blob: Callable[[Handler], str]) -> None:
    calls: list[str] = []

    def flaky(request: web.Request) -> web.Response:
        calls.append(request.method)
        if len(calls) <= 2:
            return blob_error(503, "ServerBusy", {"x-ms-retry-after-ms": "50"})
        return web.Response(
            status=200,
            headers={
                "Content-Length": "3",
                "Content-Type": "text/plain",
                "ETag": '"0x8D"',
                "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
                "x-ms-blob-type": "BlockBlob",
                "x-ms-meta-makoto_sha256": "f" * 64,
                "x-ms-meta-u_team": "blue",
            },
        )

    store = fake_store("t-flaky", await fake_blob(flaky), max_attempts="3")  # type: ignore[misc]
    try:
        info = await store.head("k")
        assert (info.size, info.etag, info.sha256, dict(info.user_metadata)) == (
            3,
            "0x8D",
            "f" * 64,
            {"team": "blue"},
        )
        assert calls == ["HEAD", "HEAD", "HEAD"]
    finally:
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

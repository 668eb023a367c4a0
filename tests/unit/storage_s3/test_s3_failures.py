"""Failure behaviour of the S3 adapter: unreachable endpoint, throttling, rejected credentials.

moto checks no credentials and never throttles, so those two cases are driven by a tiny local
HTTP endpoint that answers exactly what S3 answers (status, XML error body, Retry-After); the
SDK and the adapter run unmodified against it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from services.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
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


async def test_throttling_is_retried_then_resource_exhausted(fake_s3: Callable[[Handler], str]) -> None:
    calls: list[float] = []

    def slow_down(_: web.Request) -> web.Response:
        calls.append(time.monotonic())
        return s3_error(503, "SlowDown", {"Retry-After": "1"})

    endpoint = await fake_s3(slow_down)  # type: ignore[misc]
    store = s3_store("t-slow", endpoint, max_attempts="2")
    try:
        with pytest.raises(ResourceExhausted) as err:
            await store.head("k")
        assert err.value.retry_after_seconds == 1.0
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.95  # waited what Retry-After asked
    finally:
        await store.close()


async def test_throttling_then_success(fake_s3: Callable[[Handler], str]) -> None:
    calls: list[str] = []

    def flaky(request: web.Request) -> web.Response:
        calls.append(request.method)
        if len(calls) <= 2:
            return s3_error(503, "SlowDown")
        return web.Response(
            status=200,
            headers={
                "Content-Length": "3",
                "Content-Type": "text/plain",
                "ETag": '"abc"',
                "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
                "x-amz-meta-makoto-sha256": "f" * 64,
                "x-amz-meta-u-team": "blue",
            },
        )

    endpoint = await fake_s3(flaky)  # type: ignore[misc]
    store = s3_store("t-flaky", endpoint, max_attempts="3")
    try:
        info = await store.head("k")
        assert (info.size, info.etag, info.sha256) == (3, "abc", "f" * 64)
        assert dict(info.user_metadata) == {"team": "blue"}
        assert calls == ["HEAD", "HEAD", "HEAD"]
    finally:
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


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch"])
async def test_rejected_credentials_name_the_binding_not_the_secret(
    fake_s3: Callable[[Handler], str], code: str
) -> None:
    endpoint = await fake_s3(lambda _: s3_error(403, code))  # type: ignore[misc]
    store = s3_store("t-creds", endpoint)
    try:
        with pytest.raises(FailedPrecondition) as err:
            await store.put("k", chunked(b"x"), content_type="", user_metadata={})
        message = err.value.message
        assert "t-creds" in message and "object store binding" in message and code in message
        assert MOTO_CREDENTIALS["secret_access_key"] not in message
        assert MOTO_CREDENTIALS["access_key_id"] not in message
    finally:
        await store.close()


async def test_moto_checks_no_credentials(make_store: MakeStore) -> None:
    """Documents why the bad-credential case above uses a fake endpoint: moto accepts anything."""
    store = await make_store()
    assert (await store.put("k", chunked(b"x"), content_type="", user_metadata={})).size == 1

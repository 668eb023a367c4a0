"""Fault-injection contract suite: every network object backend (OBJECT_FAULT_BACKENDS in
backends.py) answers the same faults the same way, with its real SDK against its emulator.

- failure mid-upload: the link to the backend breaks (TCP fault proxy, tests/fault_proxy.py)
  while a multipart/staged upload is streaming -> UNAVAILABLE naming the binding; once the link
  is back, the previous version is intact and nothing partial is visible;
- throttling (HTTP fault proxy, http_faults.py, answering what the backend answers when it
  throttles): retried, then served by the emulator; throttling that persists ->
  RESOURCE_EXHAUSTED with the backend's Retry-After as the hint, after waiting it once, and no
  object written;
- rejected credentials: every operation -> FAILED_PRECONDITION BACKEND_CREDENTIALS_REJECTED
  naming the binding, never quoting a credential.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from services.common.errors import FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from services.storage.ports import ObjectStore
from tests.contract.backends import FaultRig
from tests.contract.http_faults import http_fault_proxy
from tests.fault_proxy import FaultProxy, Mode, fault_proxy
from tests.unit.storage_s3.helpers import MIB, chunked, collect, pattern

CHUNK = 256 * 1024


async def _put(store: ObjectStore, key: str, chunks: AsyncIterator[bytes]) -> None:
    await store.put(key, chunks, content_type="text/plain", user_metadata={})


def _upstream(rig: FaultRig) -> tuple[str, int]:
    parts = urlsplit(rig.upstream)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def _breaking(data: bytes, proxy: FaultProxy, break_at: int) -> AsyncIterator[bytes]:
    """The data, with the link to the backend refused once break_at bytes were handed over."""
    sent = 0
    for i in range(0, len(data), CHUNK):
        if sent >= break_at and proxy.mode is Mode.PASS:
            await proxy.set_mode(Mode.REFUSE)
        piece = data[i : i + CHUNK]
        sent += len(piece)
        yield piece


async def test_link_failure_mid_upload_keeps_the_previous_version(fault_rig: FaultRig) -> None:
    async with fault_proxy(*_upstream(fault_rig)) as proxy:
        store = await fault_rig.store_via(proxy.port, False)
        await _put(store, "doc", chunked(b"version one"))
        big = pattern(12 * MIB, seed=7)  # several parts on every backend's rig
        with pytest.raises(Unavailable) as err:
            await _put(store, "doc", _breaking(big, proxy, 6 * MIB))
        assert "object store binding" in err.value.message
        assert not any(secret in err.value.message for secret in fault_rig.secrets)

        await proxy.set_mode(Mode.PASS)
        info, stream = await store.get("doc")
        assert (info.size, await collect(stream)) == (11, b"version one")
        page = await store.list("", 10, "")
        assert [o.key for o in page.objects] == ["doc"]


async def test_throttling_is_retried_then_served(fault_rig: FaultRig) -> None:
    async with http_fault_proxy(fault_rig.upstream) as proxy:
        store = await fault_rig.store_via(proxy.port, False)
        await _put(store, "k", chunked(b"data"))
        proxy.answer(fault_rig.throttled, times=1)
        seen = len(proxy.requests)
        info = await store.head("k")
        assert info.size == 4
        assert len(proxy.requests) - seen == 2  # throttled once, then the emulator answered


async def test_persistent_throttling_is_resource_exhausted_with_the_hint(fault_rig: FaultRig) -> None:
    async with http_fault_proxy(fault_rig.upstream) as proxy:
        store = await fault_rig.store_via(proxy.port, False)
        proxy.answer(fault_rig.throttled)
        seen = len(proxy.requests)
        started = time.monotonic()
        with pytest.raises(ResourceExhausted) as err:
            await _put(store, "never", chunked(b"x"))
        assert err.value.retry_after_seconds == 1.0 and err.value.reason == "BACKEND_THROTTLED"
        assert len(proxy.requests) - seen == 2  # the rig's max_attempts
        assert time.monotonic() - started >= 0.95  # waited what Retry-After asked before retrying
        proxy.forward()
        with pytest.raises(NotFound):
            await store.head("never")


async def test_rejected_credentials_name_the_binding_never_the_secret(fault_rig: FaultRig) -> None:
    async with http_fault_proxy(fault_rig.upstream) as proxy:
        if fault_rig.rejected is not None:
            proxy.answer(fault_rig.rejected)
        store = await fault_rig.store_via(proxy.port, True)
        for name, op in (
            ("head", store.head("k")),
            ("get", store.get("k")),
            ("list", store.list("", 10, "")),
            ("put", store.put("k", chunked(b"x"), content_type="", user_metadata={})),
            ("delete", store.delete("k")),
            ("provision", store.provision()),
        ):
            with pytest.raises(FailedPrecondition) as err:
                await op
            message = err.value.message
            assert err.value.reason == "BACKEND_CREDENTIALS_REJECTED", name
            assert "object store binding" in message and "credentials" in message, name
            assert not any(secret in message for secret in fault_rig.secrets), name
        assert proxy.requests  # the backend was asked each time, nothing was refused locally

"""What the remote secret stores share: the TTL cache, the retry policy, JSON-key selection."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from pydantic import SecretStr

from services.common.backoff import RetryPolicy, Transient, call_with_retries
from services.common.errors import FailedPrecondition
from services.common.secrets import BACKEND_FACTORIES, SecretRef
from services.common.secrets.remote import (
    TtlCache,
    select_json_key,
    split_json_key,
)

REF = SecretRef("aws-sm", "db/creds")
VALUE = "remote-value-Hy6-never-print"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self, *values: str | Exception) -> None:
        self.values = list(values)
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> SecretStr:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        value = self.values[min(self.calls, len(self.values)) - 1]
        if isinstance(value, Exception):
            raise value
        return SecretStr(value)


async def test_cache_serves_within_ttl_and_reloads_after() -> None:
    clock = Clock()
    cache = TtlCache(10, clock=clock)
    load = Loader("v1", "v2")
    assert (await cache.get("k", load)).get_secret_value() == "v1"
    clock.now += 9.9
    assert (await cache.get("k", load)).get_secret_value() == "v1" and load.calls == 1
    clock.now += 0.2
    assert (await cache.get("k", load)).get_secret_value() == "v2" and load.calls == 2


async def test_ttl_zero_never_caches() -> None:
    cache = TtlCache(0)
    load = Loader("v1", "v2")
    await cache.get("k", load)
    assert (await cache.get("k", load)).get_secret_value() == "v2" and len(cache) == 0


async def test_failures_are_not_cached() -> None:
    cache = TtlCache(60)
    load = Loader(FailedPrecondition("boom"), "v2")
    with pytest.raises(FailedPrecondition):
        await cache.get("k", load)
    assert (await cache.get("k", load)).get_secret_value() == "v2"


async def test_concurrent_misses_share_one_load_and_survive_a_cancelled_waiter() -> None:
    cache = TtlCache(60)
    load = Loader("v1")
    load.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    load.gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert {r.get_secret_value() for r in results} == {"v1"} and load.calls == 1
    assert waiters[0].cancelled()


async def test_invalidate_during_a_load_keeps_the_stale_value_out() -> None:
    cache = TtlCache(60)
    stale = Loader("old")
    stale.gate = asyncio.Event()
    first = asyncio.create_task(cache.get("k", stale))
    await asyncio.sleep(0)
    cache.invalidate("k")  # a write happened while the old value was in flight
    stale.gate.set()
    assert (await first).get_secret_value() == "old"  # that caller gets what it asked for
    assert (await cache.get("k", Loader("new"))).get_secret_value() == "new"


async def test_cache_is_bounded() -> None:
    cache = TtlCache(60, max_entries=3)
    for i in range(5):
        await cache.get(i, Loader(f"v{i}"))
    assert len(cache) == 3
    again = Loader("reloaded")
    assert (await cache.get(0, again)).get_secret_value() == "reloaded"  # evicted: the oldest
    assert (await cache.get(4, Loader("x"))).get_secret_value() == "v4"  # kept: the newest


def test_json_key_selection() -> None:
    doc = SecretStr('{"user": "app", "port": 5432, "tls": true, "opts": {"a": "ü"}, "none": null}')
    assert select_json_key(REF, doc, "user").get_secret_value() == "app"
    assert select_json_key(REF, doc, "port").get_secret_value() == "5432"
    assert select_json_key(REF, doc, "tls").get_secret_value() == "true"
    assert select_json_key(REF, doc, "opts").get_secret_value() == '{"a": "ü"}'
    assert select_json_key(REF, doc, "none").get_secret_value() == "null"
    for value, key, reason in (
        (doc, "absent", "SECRET_KEY_MISSING"),
        (SecretStr(VALUE), "k", "SECRET_NOT_JSON"),
        (SecretStr(f'["{VALUE}"]'), "k", "SECRET_NOT_JSON"),
        (SecretStr(f'{{"k": "{VALUE}"'), "k", "SECRET_NOT_JSON"),  # truncated JSON
    ):
        with pytest.raises(FailedPrecondition) as caught:
            select_json_key(REF, value, key)
        assert caught.value.reason == reason
        assert VALUE not in str(caught.value.to_status()) and "5432" not in caught.value.message
        assert caught.value.__cause__ is None


def test_split_json_key() -> None:
    assert split_json_key(REF, "db/creds#password") == ("db/creds", "password")
    assert split_json_key(REF, "db/creds") == ("db/creds", None)
    with pytest.raises(FailedPrecondition):
        split_json_key(REF, "db/creds#")


def test_backoff_has_full_jitter_under_the_cap_and_honours_hints() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=0.5)
    delays = [policy.delay(3, None) for _ in range(200)]
    assert all(0 <= d <= 0.4 for d in delays) and len(set(delays)) > 100
    assert all(policy.delay(10, None) <= 0.5 for _ in range(50))
    assert all(policy.delay(1, 1.5) >= 1.5 for _ in range(50))


async def test_call_with_retries() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002, max_hint=1)
    calls: list[int] = []

    def transient(exc: BaseException) -> Transient | None:
        return (
            Transient(throttled=True, retry_after=getattr(exc, "hint", None)) if "busy" in str(exc) else None
        )

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("busy")
        return "ok"

    assert await call_with_retries(flaky, transient, policy) == "ok" and len(calls) == 3

    calls.clear()

    async def broken() -> str:
        calls.append(1)
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await call_with_retries(broken, transient, policy)
    assert len(calls) == 1  # not retried

    calls.clear()

    async def always_busy() -> str:
        calls.append(1)
        raise RuntimeError("busy")

    with pytest.raises(RuntimeError, match="busy"):
        await call_with_retries(always_busy, transient, policy)
    assert len(calls) == 3

    calls.clear()

    class LongHint(RuntimeError):
        hint = 5.0

    async def long_hint() -> str:
        calls.append(1)
        raise LongHint("busy")

    with pytest.raises(LongHint):
        await call_with_retries(long_hint, transient, policy)
    assert len(calls) == 1  # a hint past max_hint is handed back, not slept through


def test_cloud_backends_are_registered_and_their_sdks_load_lazily() -> None:
    assert {"aws-sm", "azure-kv", "env", "local"} <= set(BACKEND_FACTORIES)
    probe = (
        "import sys, tempfile, pathlib\n"
        "from services.common.config import MeshSettings\n"
        "from services.common.secrets import SecretResolver\n"
        "r = SecretResolver.for_settings(MeshSettings(home=pathlib.Path(tempfile.mkdtemp())))\n"
        "assert {'aws-sm', 'azure-kv'} <= r.schemes, r.schemes\n"
        "loaded = [m for m in ('aioboto3', 'aiobotocore', 'botocore', 'azure.core', 'azure.keyvault') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

"""services/common/adapter_cache.py on its own (storage connections and the LLM registry use it):
LRU bound, TTL expiry, etag/binding-driven rebuild, single-flight builds, closing only after the
last lease, shutdown. The adapters are plain objects that record their close()."""

from __future__ import annotations

import asyncio
import itertools
from contextlib import AsyncExitStack

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.adapter_cache import AdapterCache
from services.common.errors import FailedPrecondition, Unavailable

Binding = tenant_pb2.LlmBinding
OPENAI = Binding(provider=tenant_pb2.LLM_PROVIDER_OPENAI, chat_model="a")
_serial = itertools.count()


class Adapter:
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.serial = next(_serial)
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


class Factory:
    """Builds adapters; can hold builds at a gate and fail the first ones."""

    def __init__(self) -> None:
        self.built: list[Adapter] = []
        self.gate: asyncio.Event | None = None
        self.started = 0
        self.fail_next = 0

    async def __call__(self, tenant_id: str, binding: Binding) -> Adapter:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise FailedPrecondition("llm binding: provider refused", reason="TEST")
        adapter = Adapter(tenant_id)
        self.built.append(adapter)
        return adapter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(
    factory: Factory, *, max_entries: int = 8, ttl: float = 900.0, clock: Clock | None = None
) -> AdapterCache[Adapter, Binding]:
    return AdapterCache(
        "test",
        factory,
        lambda b: tenant_pb2.LlmProvider.Name(b.provider),
        max_entries=max_entries,
        ttl_seconds=ttl,
        clock=clock or Clock(),
    )


async def settle() -> None:
    """Closing runs as a task: let it run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def use(cache: AdapterCache[Adapter, Binding], tenant: str, etag: str = "e1") -> Adapter:
    async with cache.lease(tenant, OPENAI, etag) as lease:
        return lease.store


async def test_lru_bound_evicts_the_least_recently_used_and_closes_it() -> None:
    factory = Factory()
    cache = make_cache(factory, max_entries=2)
    a, b = await use(cache, "a"), await use(cache, "b")
    assert await use(cache, "a") is a  # a is now the most recently used
    c = await use(cache, "c")
    await settle()
    assert len(cache) == 2 and b.closed == 1 and a.closed == 0 and c.closed == 0
    assert await use(cache, "a") is a and await use(cache, "c") is c
    assert await use(cache, "b") is not b  # rebuilt after eviction
    assert cache.builds == 4
    with pytest.raises(ValueError):
        make_cache(factory, max_entries=0)


async def test_ttl_expiry_rebuilds_and_closes_idle_tenants() -> None:
    factory, clock = Factory(), Clock()
    cache = make_cache(factory, ttl=100.0, clock=clock)
    first = await use(cache, "a")
    clock.now += 99.0
    assert await use(cache, "a") is first  # still fresh
    clock.now += 1.0
    second = await use(cache, "a")
    await settle()
    assert second is not first and first.closed == 1 and cache.builds == 2
    # An idle tenant's adapter is closed by the sweep another tenant's call triggers.
    clock.now += 100.0
    await use(cache, "b")
    await settle()
    assert second.closed == 1 and len(cache) == 1


async def test_a_new_etag_or_binding_rebuilds_the_same_reuses() -> None:
    factory = Factory()
    cache = make_cache(factory)
    first = await use(cache, "a", "e1")
    assert await use(cache, "a", "e1") is first
    # The directory's etag changed: rebuilt, the old one closed.
    second = await use(cache, "a", "e2")
    await settle()
    assert second is not first and first.closed == 1
    # Same etag, another binding (e.g. a rotated secret reference): rebuilt as well.
    async with cache.lease("a", Binding(provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC), "e2") as lease:
        third = lease.store
        assert lease.backend == "LLM_PROVIDER_ANTHROPIC"
    await settle()
    assert third is not second and second.closed == 1 and cache.builds == 3
    # An equal binding in a new message object is the same fingerprint: no rebuild.
    async with cache.lease("a", Binding(provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC), "e2") as lease:
        assert lease.store is third


async def test_concurrent_first_calls_share_one_build() -> None:
    factory = Factory()
    factory.gate = asyncio.Event()
    cache = make_cache(factory)
    calls = [asyncio.create_task(use(cache, "a")) for _ in range(20)]
    await settle()
    assert factory.started == 1  # all 20 wait on the one build
    factory.gate.set()
    got = await asyncio.gather(*calls)
    assert {id(x) for x in got} == {id(factory.built[0])} and cache.builds == 1


async def test_a_failed_build_fails_every_waiter_and_is_not_cached() -> None:
    factory = Factory()
    factory.gate, factory.fail_next = asyncio.Event(), 1
    cache = make_cache(factory)
    calls = [asyncio.create_task(use(cache, "a")) for _ in range(5)]
    await settle()
    factory.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, FailedPrecondition) for r in results) and factory.started == 1
    assert len(cache) == 0
    assert (await use(cache, "a")).tenant_id == "a" and factory.started == 2


async def test_a_replaced_adapter_is_closed_only_after_its_last_lease() -> None:
    factory = Factory()
    cache = make_cache(factory, max_entries=1)
    async with AsyncExitStack() as held:
        old = (await held.enter_async_context(cache.lease("a", OPENAI, "e1"))).store
        second_lease = await held.enter_async_context(cache.lease("a", OPENAI, "e1"))
        assert second_lease.store is old
        # Replaced (new etag), evicted (another tenant over the bound) and invalidated while
        # two calls still hold it: none of these closes it under them.
        new = await use(cache, "a", "e2")
        await use(cache, "b")
        cache.invalidate("a", old)
        await settle()
        assert new is not old and old.closed == 0
        await held.aclose()
    await settle()
    assert old.closed == 1  # once, after the last lease


async def test_invalidate_forgets_only_the_named_adapter() -> None:
    factory = Factory()
    cache = make_cache(factory)
    first = await use(cache, "a")
    cache.invalidate("a", Adapter("a"))  # a stale handle: nothing happens
    assert await use(cache, "a") is first
    cache.invalidate("a", first)
    await settle()
    assert first.closed == 1 and await use(cache, "a") is not first


async def test_close_closes_everything_and_refuses_new_leases() -> None:
    factory = Factory()
    cache = make_cache(factory)
    a, b = await use(cache, "a"), await use(cache, "b")
    await cache.close()
    assert a.closed == 1 and b.closed == 1 and len(cache) == 0
    with pytest.raises(Unavailable):
        await use(cache, "a")

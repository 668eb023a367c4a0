"""DirectoryCache: stale serving while TenantService fails, bounded staleness, negative answers,
pushes and invalidation. TenantService is replaced by a scripted fetch function and time by a
hand-moved clock (the cache's own rules are under test here; the gRPC path is covered by the
directory drills in tests/e2e/test_directory_failover.py)."""

from __future__ import annotations

import asyncio

import pytest
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.directory_cache import RETRY_AFTER_SECONDS, SWEEP_EVERY, DirectoryCache
from services.common.errors import NotFound, Unavailable

Answer = directory_pb2.ResolveTenantResponse


def answer(tenant_id: str = "acme", state: int = tenant_pb2.TENANT_STATE_ACTIVE, etag: str = "e1") -> Answer:
    return Answer(tenant_id=tenant_id, state=state, etag=etag)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """What TenantService would answer: an answer, None (NOT_FOUND) or down (Unavailable)."""

    def __init__(self) -> None:
        self.current: Answer | None = answer()
        self.down = False
        self.calls = 0
        self.delay = 0.0
        self.gate: asyncio.Event | None = None

    async def fetch(self, tenant_id: str) -> Answer | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise Unavailable("tenant directory unavailable")
        return self.current


def make(backend: Backend, clock: Clock, **overrides: float) -> DirectoryCache:
    values = {"ttl": 10.0, "max_stale": 600.0, "negative_ttl": 2.0, "refresh_wait": 0.2}
    values.update(overrides)
    return DirectoryCache(backend.fetch, clock=clock, **values)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend() -> Backend:
    return Backend()


async def test_fresh_answer_is_served_from_memory(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    assert (await cache.resolve("acme")).etag == "e1"
    clock.now += 4.9  # under half the TTL: no refresh-ahead either
    assert (await cache.resolve("acme")).etag == "e1"
    await settle()
    assert backend.calls == 1


async def test_refresh_ahead_past_half_ttl_does_not_make_the_call_wait(
    backend: Backend, clock: Clock
) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.current = answer(etag="e2")
    backend.gate = asyncio.Event()  # the refetch hangs until released
    clock.now += 6
    assert (await cache.resolve("acme")).etag == "e1"  # answered at once, refetch in background
    backend.gate.set()
    await settle()
    assert backend.calls == 2
    assert (await cache.resolve("acme")).etag == "e2"


async def test_expired_answer_is_refetched(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.current = answer(state=tenant_pb2.TENANT_STATE_SUSPENDED, etag="e2")
    clock.now += 10.1
    got = await cache.resolve("acme")
    assert got.state == tenant_pb2.TENANT_STATE_SUSPENDED and backend.calls == 2


async def test_stale_answer_is_served_while_tenant_service_is_down(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.down = True
    for step in (11, 60, 300, 599):
        clock.now = 1000.0 + step
        assert (await cache.resolve("acme")).etag == "e1", step
        clock.now += RETRY_AFTER_SECONDS  # let the next call try TenantService again
    # Back up: the next expired read confirms the answer and the staleness clock restarts.
    backend.down = False
    backend.current = answer(etag="e3")
    assert (await cache.resolve("acme")).etag == "e3"


async def test_staleness_is_bounded(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock, max_stale=60.0)
    await cache.resolve("acme")
    backend.down = True
    clock.now += 59
    assert (await cache.resolve("acme")).etag == "e1"
    clock.now += 2  # 61 s since TenantService last confirmed it
    with pytest.raises(Unavailable):
        await cache.resolve("acme")


async def test_unknown_tenant_with_tenant_service_down_is_unavailable(backend: Backend, clock: Clock) -> None:
    backend.down = True
    with pytest.raises(Unavailable):
        await make(backend, clock).resolve("acme")


async def test_a_failed_refetch_is_not_retried_at_call_rate(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.down = True
    clock.now += 11
    for _ in range(50):
        assert (await cache.resolve("acme")).etag == "e1"
    assert backend.calls == 2  # one failed refetch, then stale answers until the retry time
    clock.now += RETRY_AFTER_SECONDS
    await cache.resolve("acme")
    assert backend.calls == 3


async def test_slow_tenant_service_gets_the_stale_answer_after_refresh_wait(
    backend: Backend, clock: Clock
) -> None:
    cache = make(backend, clock, refresh_wait=0.05)
    await cache.resolve("acme")
    backend.current = answer(etag="e2")
    backend.gate = asyncio.Event()
    clock.now += 11
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await cache.resolve("acme")).etag == "e1"
    assert loop.time() - started < 1.0
    backend.gate.set()
    await settle()
    assert (await cache.resolve("acme")).etag == "e2"  # the slow refetch landed afterwards


async def test_not_found_is_remembered_briefly(backend: Backend, clock: Clock) -> None:
    backend.current = None
    cache = make(backend, clock)
    for _ in range(3):
        with pytest.raises(NotFound):
            await cache.resolve("ghost")
    assert backend.calls == 1
    backend.current = answer("ghost")
    clock.now += 2.1
    assert (await cache.resolve("ghost")).tenant_id == "ghost"
    assert backend.calls == 2


async def test_push_replaces_the_answer_at_once(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    cache.put("acme", answer(state=tenant_pb2.TENANT_STATE_SUSPENDED, etag="e2"))
    assert (await cache.resolve("acme")).state == tenant_pb2.TENANT_STATE_SUSPENDED
    cache.put("acme", None)  # deleted
    with pytest.raises(NotFound):
        await cache.resolve("acme")
    assert backend.calls == 1


async def test_refetch_started_before_a_push_cannot_overwrite_it(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.gate = asyncio.Event()
    clock.now += 6  # refresh-ahead starts a refetch that will bring the OLD answer
    await cache.resolve("acme")
    cache.put("acme", answer(state=tenant_pb2.TENANT_STATE_SUSPENDED, etag="e2"))
    backend.gate.set()  # old refetch lands now (TenantService answered before the change)
    await settle()
    assert (await cache.resolve("acme")).state == tenant_pb2.TENANT_STATE_SUSPENDED


async def test_expire_refetches_and_keeps_the_stale_fallback(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.current = answer(etag="e2")
    cache.expire("acme")
    assert (await cache.resolve("acme")).etag == "e2"
    backend.down = True
    cache.expire_all()
    assert (await cache.resolve("acme")).etag == "e2"  # stale, TenantService down


async def test_clamp_shortens_entries_cached_under_a_longer_ttl(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock, ttl=30.0)
    await cache.resolve("acme")
    cache.clamp(1.0)
    backend.current = answer(etag="e2")
    clock.now += 1.1
    assert (await cache.resolve("acme")).etag == "e2"


async def test_concurrent_first_lookups_share_one_fetch(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    backend.delay = 0.02
    results = await asyncio.gather(*(cache.resolve("acme") for _ in range(20)))
    assert {r.etag for r in results} == {"e1"} and backend.calls == 1


async def test_close_cancels_refetches_in_flight(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock)
    await cache.resolve("acme")
    backend.gate = asyncio.Event()
    clock.now += 6
    await cache.resolve("acme")  # background refetch now hangs
    await asyncio.wait_for(cache.close(), 1.0)


async def test_answers_nobody_can_use_any_more_are_swept(backend: Backend, clock: Clock) -> None:
    cache = make(backend, clock, max_stale=60.0)
    for i in range(SWEEP_EVERY - 1):
        await cache.resolve(f"old-{i}")
    clock.now += 61  # every one of them is now past the maximum staleness
    await cache.resolve("new-0")  # the SWEEP_EVERY-th stored answer triggers the sweep
    assert cache.size == 1
    assert (await cache.resolve("old-0")).etag == "e1"  # a forgotten tenant is simply fetched again

"""The data plane's memory of TenantService's answers: fresh, stale-but-servable, or gone.

Why: TenantService must not be a single point of failure for data traffic. A tenant already
known keeps being served from the last confirmed answer while TenantService cannot be reached
(up to `max_stale` seconds), while lifecycle changes pushed from TenantService replace the
cached answer at once.

Rules (times are seconds since the answer was last confirmed by TenantService):
- younger than `ttl`: served; past half of it a background refetch starts (refresh-ahead), so
  busy tenants rarely wait on TenantService.
- past `ttl`: the call waits for a refetch, at most `refresh_wait`; if TenantService fails
  or is slower than that, the stale answer is served, as long as it is younger than `max_stale`.
- no answer, or one older than `max_stale`: the call waits for the fetch, and its error.
- NOT_FOUND is remembered too (`negative_ttl`), so an unknown tenant id cannot make every call
  hit TenantService.
- a push (`put`) replaces the answer and bumps the tenant's generation, so a refetch that started
  before the change cannot overwrite it with older news.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from makoto.tenant.v1 import directory_pb2

from services.common.errors import NotFound, Unavailable

log = structlog.get_logger("makoto.directory")

Answer = directory_pb2.ResolveTenantResponse
# Returns the answer, or None when TenantService says NOT_FOUND; raises Unavailable otherwise.
Fetch = Callable[[str], Awaitable[Answer | None]]

# After a failed refetch, calls keep being served stale for this long before the next attempt,
# so a dead TenantService is not hammered at the data plane's call rate.
RETRY_AFTER_SECONDS = 0.5
# Every this many stored answers, entries older than the maximum staleness are dropped.
SWEEP_EVERY = 256


@dataclass
class _Entry:
    answer: Answer | None  # None: TenantService said NOT_FOUND
    confirmed: float  # clock time TenantService last gave this answer (or a push delivered it)
    expires: float
    generation: int
    retry_at: float = 0.0
    warned: bool = False


def _not_found(tenant_id: str) -> NotFound:
    return NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND")


class DirectoryCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float,
        max_stale: float,
        negative_ttl: float,
        refresh_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self.max_stale = max_stale
        self.negative_ttl = negative_ttl
        self.refresh_wait = refresh_wait
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._generation: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Task[BaseException | None]] = {}
        # Every refetch task, including ones a push made obsolete, so close() can cancel them.
        self._tasks: set[asyncio.Task[BaseException | None]] = set()
        self._stores = 0

    # -- reads -----------------------------------------------------------------------

    async def resolve(self, tenant_id: str) -> Answer:
        now = self._clock()
        entry = self._entries.get(tenant_id)
        if entry is not None and now < entry.expires:
            if now >= entry.confirmed + (entry.expires - entry.confirmed) / 2:
                self._refresh(tenant_id)  # refresh-ahead; this call does not wait
            return self._answer(tenant_id, entry)
        servable = entry is not None and now - entry.confirmed <= self.max_stale
        if servable and entry is not None and now < entry.retry_at:
            return self._stale(tenant_id, entry, "TenantService failed recently")
        task = self._refresh(tenant_id)
        if not servable:
            error = await asyncio.shield(task)
            if error is not None:
                raise error
            return self._current(tenant_id)
        assert entry is not None
        try:
            error = await asyncio.wait_for(asyncio.shield(task), self.refresh_wait)
        except TimeoutError:
            return self._stale(tenant_id, entry, "TenantService is slow")
        if error is not None:
            return self._stale(tenant_id, entry, str(error))
        return self._current(tenant_id)

    def _current(self, tenant_id: str) -> Answer:
        entry = self._entries.get(tenant_id)
        if entry is None:  # forgotten while the fetch ran (close): nothing trustworthy to say
            raise Unavailable("tenant directory unavailable")
        return self._answer(tenant_id, entry)

    def _answer(self, tenant_id: str, entry: _Entry) -> Answer:
        if entry.answer is None:
            raise _not_found(tenant_id)
        return entry.answer

    def _stale(self, tenant_id: str, entry: _Entry, why: str) -> Answer:
        if not entry.warned:
            entry.warned = True
            log.warning(
                "serving stale tenant directory answer",
                tenant_id=tenant_id,
                age_seconds=round(self._clock() - entry.confirmed, 3),
                max_stale_seconds=self.max_stale,
                why=why,
            )
        return self._answer(tenant_id, entry)

    # -- refetch ---------------------------------------------------------------------

    def _refresh(self, tenant_id: str) -> asyncio.Task[BaseException | None]:
        """The tenant's refetch in flight (one per tenant), started if there is none."""
        task = self._inflight.get(tenant_id)
        if task is None:
            generation = self._generation.get(tenant_id, 0)
            task = asyncio.get_running_loop().create_task(self._refetch(tenant_id, generation))
            self._inflight[tenant_id] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    async def _refetch(self, tenant_id: str, generation: int) -> BaseException | None:
        """Fetch and store; the error (Unavailable) is returned, not raised, so a refresh nobody
        awaits never logs "exception was never retrieved"."""
        try:
            try:
                answer = await self._fetch(tenant_id)
            except Unavailable as exc:
                entry = self._entries.get(tenant_id)
                if entry is not None:
                    entry.retry_at = self._clock() + RETRY_AFTER_SECONDS
                return exc
            if self._generation.get(tenant_id, 0) == generation:
                self._store(tenant_id, answer)
            return None
        finally:
            if self._inflight.get(tenant_id) is asyncio.current_task():
                del self._inflight[tenant_id]

    def _store(self, tenant_id: str, answer: Answer | None) -> None:
        now = self._clock()
        self._stores += 1
        if self._stores % SWEEP_EVERY == 0:
            self._sweep(now)
        ttl = self.ttl if answer is not None else min(self.negative_ttl, self.ttl)
        self._entries[tenant_id] = _Entry(
            answer=answer,
            confirmed=now,
            expires=now + ttl,
            generation=self._generation.get(tenant_id, 0),
        )

    def _sweep(self, now: float) -> None:
        """Forget tenants nobody asked about for longer than they could be served (ids of
        deleted tenants, one-off lookups), so the cache does not grow without bound."""
        for tenant_id, entry in list(self._entries.items()):
            if now - entry.confirmed > self.max_stale and tenant_id not in self._inflight:
                del self._entries[tenant_id]
                self._generation.pop(tenant_id, None)

    @property
    def size(self) -> int:
        return len(self._entries)

    # -- pushes and invalidation -------------------------------------------------------

    def put(self, tenant_id: str, answer: Answer | None) -> None:
        """A pushed answer (None: the tenant is gone): it replaces the cached one at once, and
        any refetch that started earlier is ignored when it lands."""
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        self._inflight.pop(tenant_id, None)  # the old task still finishes, its result is dropped
        self._store(tenant_id, answer)

    def expire(self, tenant_id: str) -> None:
        """Next use refetches; the answer stays as the stale fallback."""
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        self._inflight.pop(tenant_id, None)
        entry = self._entries.get(tenant_id)
        if entry is not None:
            entry.expires = min(entry.expires, self._clock())
            entry.retry_at = 0.0

    def expire_all(self) -> None:
        for tenant_id in list(self._entries):
            self.expire(tenant_id)

    def refresh_soon(self, tenant_id: str) -> None:
        """Start a refetch now without waiting for it (the safety check after a push)."""
        self._refresh(tenant_id)

    def clamp(self, ttl: float) -> None:
        """Use `ttl` from now on and shorten entries cached under a longer one."""
        self.ttl = ttl
        for entry in self._entries.values():
            entry.expires = min(entry.expires, entry.confirmed + ttl)

    def forget(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)

    async def close(self) -> None:
        tasks = list(self._tasks)
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

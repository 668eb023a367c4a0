"""Per-tenant adapters (storage backends, LLM provider clients), cached for the calls that use
them -- one implementation for every service:

- a bounded LRU with a TTL per tenant (credentials are re-read now and then);
- an entry is rebuilt when the tenant's directory etag or its binding changes (fingerprint);
- many first calls for one tenant share one build (single flight);
- a replaced, expired, evicted or invalidated adapter is closed once the calls holding a lease
  on it have finished, never under a running call.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import structlog
from google.protobuf.message import Message

from services.common.errors import Unavailable

log = structlog.get_logger("makoto.adapter_cache")


class _Closable(Protocol):
    async def close(self) -> None: ...


A = TypeVar("A", bound=_Closable)
B = TypeVar("B", bound=Message)


@dataclass(frozen=True)
class Lease(Generic[A]):
    """An adapter lent to one call; it stays open until the call returns the lease."""

    store: A
    backend: str  # e.g. "local", "s3": the metering dimension


@dataclass(eq=False)
class _Entry(Generic[A]):
    adapter: A
    backend: str
    fingerprint: str
    built_at: float
    users: int = 0
    retired: bool = False


class AdapterCache(Generic[A, B]):
    """Bounded LRU + TTL cache of one kind of adapter (client), keyed by tenant."""

    def __init__(
        self,
        kind: str,
        factory: Callable[[str, B], Awaitable[A]],
        backend_name: Callable[[B], str],
        *,
        max_entries: int = 256,
        ttl_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._kind = kind
        self._factory = factory
        self._backend_name = backend_name
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[A]] = OrderedDict()
        self._building: dict[tuple[str, str], asyncio.Task[_Entry[A]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._last_sweep = clock()
        self._closed = False
        self.builds = 0  # adapters built so far (observability, tests)
        self._digests: dict[str, tuple[B, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, tenant_id: str, binding: B) -> str:
        """The binding's fingerprint, remembered while the directory hands out the same binding
        object (a SHA-256 of the serialized binding on every call was measurable)."""
        memo = self._digests.get(tenant_id)
        if memo is not None and memo[0] is binding:
            return memo[1]
        digest = hashlib.sha256(binding.SerializeToString(deterministic=True)).hexdigest()[:16]
        if len(self._digests) >= 4 * self._max:
            self._digests.clear()
        self._digests[tenant_id] = (binding, digest)
        return digest

    @asynccontextmanager
    async def lease(self, tenant_id: str, binding: B, etag: str) -> AsyncIterator[Lease[A]]:
        digest = self._digest(tenant_id, binding)
        entry = await self._acquire(tenant_id, binding, f"{etag}:{digest}")
        try:
            yield Lease(entry.adapter, entry.backend)
        finally:
            self._release(entry)

    async def _acquire(self, tenant_id: str, binding: B, fingerprint: str) -> _Entry[A]:
        for _ in range(5):
            if self._closed:
                raise Unavailable("the service is shutting down", retry_after_seconds=1.0)
            now = self._clock()
            self._sweep(now)
            entry = self._entries.get(tenant_id)
            if entry is not None:
                if entry.fingerprint == fingerprint and now - entry.built_at < self._ttl:
                    self._entries.move_to_end(tenant_id)
                    entry.users += 1
                    return entry
                self._drop(tenant_id, entry)
            key = (tenant_id, fingerprint)
            task = self._building.get(key)
            if task is None:
                task = asyncio.create_task(self._build(tenant_id, binding, fingerprint))
                self._building[key] = task
                task.add_done_callback(functools.partial(self._build_done, key))
            entry = await asyncio.shield(task)
            # Evicted between the build and our wake-up (possible under heavy churn): retry.
            if not entry.retired:
                entry.users += 1
                return entry
        raise Unavailable(
            f"{self._kind} adapter for the tenant keeps being replaced", retry_after_seconds=1.0
        )

    def invalidate(self, tenant_id: str, adapter: A) -> None:
        """Forget the tenant's adapter if it is still `adapter` (e.g. its credentials were
        rejected: the next call rebuilds and re-reads the secret); closed after its last lease."""
        entry = self._entries.get(tenant_id)
        if entry is not None and entry.adapter is adapter:
            self._drop(tenant_id, entry)

    def _build_done(self, key: tuple[str, str], task: asyncio.Task[_Entry[A]]) -> None:
        if self._building.get(key) is task:
            del self._building[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter re-raises it itself

    async def _build(self, tenant_id: str, binding: B, fingerprint: str) -> _Entry[A]:
        adapter = await self._factory(tenant_id, binding)
        self.builds += 1
        entry = _Entry(adapter, self._backend_name(binding), fingerprint, self._clock())
        if self._closed:
            await self._close_adapter(adapter)
            raise Unavailable("the service is shutting down", retry_after_seconds=1.0)
        previous = self._entries.pop(tenant_id, None)
        if previous is not None:
            self._retire(previous)
        self._entries[tenant_id] = entry
        while len(self._entries) > self._max:
            _, oldest = self._entries.popitem(last=False)
            self._retire(oldest)
        log.info("adapter built", kind=self._kind, tenant_id=tenant_id, backend=entry.backend)
        return entry

    def _release(self, entry: _Entry[A]) -> None:
        entry.users -= 1
        if entry.retired and entry.users == 0:
            self._schedule_close(entry.adapter)

    def _drop(self, tenant_id: str, entry: _Entry[A]) -> None:
        if self._entries.get(tenant_id) is entry:
            del self._entries[tenant_id]
        self._retire(entry)

    def _retire(self, entry: _Entry[A]) -> None:
        if entry.retired:
            return
        entry.retired = True
        if entry.users == 0:
            self._schedule_close(entry.adapter)

    def _sweep(self, now: float) -> None:
        """Retire expired entries now and then, so idle tenants' clients get closed too."""
        if now - self._last_sweep < min(self._ttl / 4, 30.0):
            return
        self._last_sweep = now
        for tenant_id, entry in list(self._entries.items()):
            if now - entry.built_at >= self._ttl:
                self._drop(tenant_id, entry)

    def _schedule_close(self, adapter: A) -> None:
        task = asyncio.create_task(self._close_adapter(adapter))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_adapter(self, adapter: A) -> None:
        try:
            await adapter.close()
        except Exception:
            log.exception("closing adapter failed", kind=self._kind)

    async def close(self) -> None:
        """Close every adapter (the server has drained its calls by now)."""
        self._closed = True
        for task in list(self._building.values()):
            try:
                await asyncio.shield(task)
            except BaseException:  # noqa: S110 - a failed build left nothing to close
                pass
        for entry in list(self._entries.values()):
            entry.retired = True
            self._schedule_close(entry.adapter)
        self._entries.clear()
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

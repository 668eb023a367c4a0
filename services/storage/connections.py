"""Per-tenant adapters: built from the tenant's bindings, cached, rebuilt, closed.

- The tenant is resolved on every call (TenantResolver; the directory client caches briefly),
  so a suspended tenant is refused at once and a binding change is seen within that TTL.
- Adapters are cached per tenant and kind (objects, items) in a bounded LRU with a TTL (so
  credentials are re-read now and then). An entry is rebuilt when the directory etag or the
  binding changes.
- Many first requests for one tenant share one build (single flight).
- A replaced, expired or evicted adapter is closed once the calls using it have finished
  (leases are counted), never under a running call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import structlog
from google.protobuf.message import Message

from services.common import metrics
from services.common.breaker import breakers
from services.common.config import MeshSettings
from services.common.errors import Unavailable
from services.storage.ports import ItemStore, ObjectStore
from services.storage.registry import (
    AdapterContext,
    BackendRegistry,
    SecretSource,
    item_backend_name,
    object_backend_name,
)
from services.storage.tenants import TenantResolver

log = structlog.get_logger("makoto.storage.connections")


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
    """Bounded LRU + TTL cache of one kind of adapter, keyed by tenant."""

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
                raise Unavailable("storage service is shutting down", retry_after_seconds=1.0)
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
            raise Unavailable("storage service is shutting down", retry_after_seconds=1.0)
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


def _where(binding: Message) -> str:
    """Where a binding points, for breaker keys and messages: scheme://host:port, no user or query."""
    endpoint: str = binding.endpoint  # type: ignore[attr-defined]
    if not endpoint:
        return binding.region or "default"  # type: ignore[attr-defined]
    try:
        parts = urlsplit(endpoint)
        if parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}"
    except ValueError:
        pass
    return endpoint[:200]


# Embedded backends: no network between us and them, nothing a breaker would save (a SQLite
# lock timeout is contention, not a dead backend).
_LOCAL_BACKENDS = frozenset({"local", "sqlite", "unspecified"})


def breaker_key(tenant_id: str, field: str, binding: Message) -> tuple[str, str] | None:
    """(key, label) of a binding's breaker: the tenant, what it is, and where it points;
    None for the embedded backends."""
    kind = "objects" if field == "object_store" else "items"
    number: int = binding.backend  # type: ignore[attr-defined]
    backend = object_backend_name(number) if kind == "objects" else item_backend_name(number)
    if backend in _LOCAL_BACKENDS:
        return None
    where = _where(binding)
    return f"{tenant_id}|{kind}|{backend}|{where}", f"{kind} backend {backend} ({where})"


class TenantConnections:
    """Hands out each tenant's object and item adapters for the duration of one call."""

    def __init__(
        self,
        resolver: TenantResolver,
        registry: BackendRegistry,
        settings: MeshSettings,
        *,
        secrets: SecretSource | None = None,
        max_tenants: int = 256,
        ttl_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._registry = registry
        self._settings = settings
        self._secrets = secrets

        async def build_objects(tenant_id: str, binding: object) -> ObjectStore:
            return await registry.build_objects(self._context(tenant_id), binding)  # type: ignore[arg-type]

        async def build_items(tenant_id: str, binding: object) -> ItemStore:
            return await registry.build_items(self._context(tenant_id), binding)  # type: ignore[arg-type]

        self.object_cache: AdapterCache[ObjectStore, Message] = AdapterCache(
            "objects",
            build_objects,
            lambda b: object_backend_name(b.backend),  # type: ignore[attr-defined]
            max_entries=max_tenants,
            ttl_seconds=ttl_seconds,
            clock=clock,
        )
        self.item_cache: AdapterCache[ItemStore, Message] = AdapterCache(
            "items",
            build_items,
            lambda b: item_backend_name(b.backend),  # type: ignore[attr-defined]
            max_entries=max_tenants,
            ttl_seconds=ttl_seconds,
            clock=clock,
        )
        metrics.watch_cache("storage_objects", self.object_cache.__len__)
        metrics.watch_cache("storage_items", self.item_cache.__len__)

    def _context(self, tenant_id: str) -> AdapterContext:
        return AdapterContext(tenant_id=tenant_id, settings=self._settings, secrets=self._secrets)

    def objects(self, tenant_id: str) -> AbstractAsyncContextManager[Lease[ObjectStore]]:
        return self._lease(self.object_cache, tenant_id, "object_store")

    def items(self, tenant_id: str) -> AbstractAsyncContextManager[Lease[ItemStore]]:
        return self._lease(self.item_cache, tenant_id, "item_store")

    @asynccontextmanager
    async def _lease(
        self, cache: AdapterCache[A, Message], tenant_id: str, field: str
    ) -> AsyncIterator[Lease[A]]:
        resolved = await self._resolver.require_active(tenant_id)
        binding: Message = getattr(resolved.bindings, field)
        # One breaker per tenant binding and endpoint, around building the adapter and the call.
        named = breaker_key(tenant_id, field, binding)
        guard = breakers.guard(*named) if named is not None else contextlib.nullcontext()
        async with guard, cache.lease(tenant_id, binding, resolved.etag) as lease:
            yield lease

    async def close(self) -> None:
        await self.object_cache.close()
        await self.item_cache.close()

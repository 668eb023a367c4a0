"""Per-tenant adapters: built from the tenant's bindings, cached, rebuilt, closed.

- The tenant is resolved on every call (TenantResolver; the directory client caches briefly),
  so a suspended tenant is refused at once and a binding change is seen within that TTL.
- Adapters are cached per tenant and kind (objects, items) in services/common/adapter_cache.py:
  bounded LRU + TTL, rebuilt when the directory etag or the binding changes, single-flight
  builds, closed after the last call holding a lease on them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from google.protobuf.message import Message

from services.common import metrics
from services.common.adapter_cache import AdapterCache, Lease
from services.common.breaker import breakers
from services.common.config import MeshSettings
from services.storage.ports import ItemStore, ObjectStore
from services.storage.registry import (
    AdapterContext,
    BackendRegistry,
    SecretSource,
    item_backend_name,
    object_backend_name,
)
from services.storage.tenants import TenantResolver

A = TypeVar("A", ObjectStore, ItemStore)


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

        def cache(
            kind: str,
            build: Callable[[AdapterContext, Any], Awaitable[A]],
            backend_name: Callable[[int], str],
        ) -> AdapterCache[A, Message]:
            async def build_for(tenant_id: str, binding: Any) -> A:
                return await build(self._context(tenant_id), binding)

            return AdapterCache(
                kind,
                build_for,
                lambda b: backend_name(b.backend),
                max_entries=max_tenants,
                ttl_seconds=ttl_seconds,
                clock=clock,
            )

        self.object_cache: AdapterCache[ObjectStore, Message] = cache(
            "objects", registry.build_objects, object_backend_name
        )
        self.item_cache: AdapterCache[ItemStore, Message] = cache(
            "items", registry.build_items, item_backend_name
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

"""The per-tenant adapter cache: single flight, rebuild on binding change, LRU and TTL eviction,
closing only when no call uses an adapter, unknown backends."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition, NotFound, PermissionDenied
from services.storage.adapters import local_fs_objects
from services.storage.adapters.local_fs_objects import LocalFsObjectStore
from services.storage.connections import TenantConnections
from services.storage.registry import AdapterContext, BackendRegistry, Lazy, default_registry
from services.storage.tenants import StaticTenantResolver, local_bindings
from tests.support import make_settings


class TrackedStore(LocalFsObjectStore):
    """The real local adapter, remembering whether it was closed."""

    closed = False

    async def close(self) -> None:
        self.closed = True
        await super().close()


class Builds:
    def __init__(self, settings: MeshSettings, delay: float = 0.0, fail_first: int = 0) -> None:
        self.settings = settings
        self.delay = delay
        self.fail_first = fail_first
        self.made: list[TrackedStore] = []

    async def __call__(self, ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> TrackedStore:
        await asyncio.sleep(self.delay)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise FailedPrecondition(
                "object_store binding: backend refused", metadata={"binding": "object_store"}
            )
        store = TrackedStore(ctx.settings.data_dir / "tenants", ctx.tenant_id)
        await store.open()
        self.made.append(store)
        return store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connections(
    settings: MeshSettings, builds: Builds, resolver: StaticTenantResolver, **kw: object
) -> TenantConnections:
    registry = BackendRegistry()
    registry.register_objects(tenant_pb2.OBJECT_BACKEND_LOCAL, builds)
    return TenantConnections(resolver, registry, settings, **kw)  # type: ignore[arg-type]


@pytest.fixture
def local_settings(tmp_path: Path) -> MeshSettings:
    return make_settings(tmp_path / "home")


async def test_many_first_requests_share_one_build(local_settings: MeshSettings) -> None:
    builds = Builds(local_settings, delay=0.05)
    conns = connections(local_settings, builds, StaticTenantResolver({"acme": None}))

    async def use() -> object:
        async with conns.objects("acme") as lease:
            await asyncio.sleep(0.01)
            return lease.store

    stores = await asyncio.gather(*[use() for _ in range(25)])
    assert len(builds.made) == 1
    assert all(s is builds.made[0] for s in stores)
    await conns.close()
    assert builds.made[0].closed


async def test_binding_change_rebuilds_and_closes_after_last_use(local_settings: MeshSettings) -> None:
    builds = Builds(local_settings)
    resolver = StaticTenantResolver({"acme": None})
    conns = connections(local_settings, builds, resolver)
    async with conns.objects("acme") as old_lease:
        assert old_lease.backend == "local"
        bindings = local_bindings()
        bindings.object_store.options["note"] = "changed"  # any binding change moves the etag
        resolver.set("acme", bindings)
        async with conns.objects("acme") as new_lease:
            assert new_lease.store is not old_lease.store
            await asyncio.sleep(0)
            assert not builds.made[0].closed  # still in use by the outer call
        # the replaced adapter still serves the call that holds it
        assert list((await old_lease.store.list("", 1, "")).objects) == []
    for _ in range(10):
        await asyncio.sleep(0)
    assert builds.made[0].closed and not builds.made[1].closed
    # unchanged bindings: the cached adapter is reused
    async with conns.objects("acme") as lease:
        assert lease.store is builds.made[1]
    assert len(builds.made) == 2
    await conns.close()


async def test_lru_bound_and_ttl(local_settings: MeshSettings) -> None:
    builds = Builds(local_settings)
    clock = Clock()
    resolver = StaticTenantResolver({t: None for t in ("t-one", "t-two", "t-three")})
    conns = connections(local_settings, builds, resolver, max_tenants=2, ttl_seconds=60.0, clock=clock)
    for tenant in ("t-one", "t-two"):
        async with conns.objects(tenant):
            pass
    async with conns.objects("t-one"):  # t-one becomes the most recently used
        pass
    async with conns.objects("t-three"):  # evicts t-two
        pass
    await asyncio.sleep(0.01)
    by_tenant = {s._tenant_id: s for s in builds.made}
    assert by_tenant["t-two"].closed
    assert not by_tenant["t-one"].closed and not by_tenant["t-three"].closed
    assert len(conns.object_cache) == 2

    clock.now += 61  # past the TTL: rebuilt, the old one closed
    async with conns.objects("t-one") as lease:
        assert lease.store is not by_tenant["t-one"]
    await asyncio.sleep(0.01)
    assert by_tenant["t-one"].closed
    assert by_tenant["t-three"].closed  # swept as expired too
    await conns.close()
    assert all(s.closed for s in builds.made)


async def test_failed_build_is_not_cached(local_settings: MeshSettings) -> None:
    builds = Builds(local_settings, delay=0.02, fail_first=1)
    conns = connections(local_settings, builds, StaticTenantResolver({"acme": None}))

    async def attempt() -> str:
        try:
            async with conns.objects("acme"):
                return "ok"
        except FailedPrecondition:
            return "failed"

    # concurrent first callers share the one failed build
    assert await asyncio.gather(attempt(), attempt(), attempt()) == ["failed"] * 3
    assert await attempt() == "ok"  # the next call builds again
    assert len(builds.made) == 1
    await conns.close()


async def test_tenant_state_and_unknown_backends(local_settings: MeshSettings) -> None:
    resolver = StaticTenantResolver({"acme": None})
    resolver.set("sleepy", state=tenant_pb2.TENANT_STATE_SUSPENDED)
    resolver.set(
        "cloudy",
        tenant_pb2.TenantBindings(
            object_store=tenant_pb2.ObjectStoreBinding(backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB),
            item_store=tenant_pb2.ItemStoreBinding(backend=tenant_pb2.ITEM_BACKEND_COSMOS),
        ),
    )
    registry = BackendRegistry()
    registry.register_objects(tenant_pb2.OBJECT_BACKEND_LOCAL, local_fs_objects.build)

    def missing_module() -> Any:
        # An adapter whose module (or SDK) is not installed on this server.
        return importlib.import_module("services.storage.adapters.no_such_module").build

    registry.register_items(tenant_pb2.ITEM_BACKEND_COSMOS, Lazy(missing_module))
    conns = TenantConnections(resolver, registry, local_settings)
    with pytest.raises(PermissionDenied):
        async with conns.objects("sleepy"):
            pass
    with pytest.raises(NotFound):
        async with conns.objects("nobody"):
            pass
    with pytest.raises(FailedPrecondition) as err:
        async with conns.objects("cloudy"):
            pass
    assert err.value.metadata == {"binding": "object_store", "backend": "azure_blob"}
    assert err.value.reason == "BACKEND_UNSUPPORTED"
    with pytest.raises(FailedPrecondition) as err:
        async with conns.items("cloudy"):
            pass
    assert err.value.reason == "BACKEND_NOT_AVAILABLE"
    assert err.value.metadata == {"binding": "item_store", "backend": "cosmos"}
    async with conns.objects("acme") as lease:
        assert isinstance(lease.store, LocalFsObjectStore)
    await conns.close()


def test_default_registry_serves_the_embedded_defaults() -> None:
    registry = default_registry()
    assert tenant_pb2.OBJECT_BACKEND_LOCAL in registry.object_backends
    assert tenant_pb2.ITEM_BACKEND_SQLITE in registry.item_backends
    # every one-liner names a factory that exists (a typo would only show for that tenant)
    for table in (registry._objects, registry._items):
        for backend, target in table.items():
            assert callable(target.load("binding", str(backend))), backend


def test_adapter_context_refuses_unsafe_tenant_ids(local_settings: MeshSettings) -> None:
    for bad in ("../x", "a/b", "", "UPPER", "x" * 70):
        with pytest.raises(ValueError):
            AdapterContext(tenant_id=bad, settings=local_settings)
    assert AdapterContext(tenant_id="acme", settings=local_settings).tenant_root == (
        local_settings.data_dir / "tenants" / "acme"
    )

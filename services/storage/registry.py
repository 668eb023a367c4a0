"""Which adapter serves which backend: ObjectBackend / ItemBackend enum value -> factory.

Adding a backend is one line in `default_registry()` below, naming the factory through a typed
lazy loader (`Lazy(_s3)`, where `_s3` imports the adapter module and returns its `build`):
editors and mypy follow it, and the module is imported only when a tenant bound to that backend
is first served, so a missing cloud SDK never breaks the local path (it answers
FAILED_PRECONDITION for that tenant instead).

A factory is `async def build(ctx: AdapterContext, binding) -> <adapter>`, where binding is the
tenant's makoto.tenant.v1.ObjectStoreBinding (for object stores) or ItemStoreBinding (for item
stores). It returns a ready adapter (connected, and resources checked or created as the backend
needs); credentials come from `await ctx.secrets.get(binding.credentials_secret_ref)`. Raise
FailedPrecondition naming the binding (metadata {"binding": "object_store"}) for a binding that
cannot work, never quoting a secret.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import structlog
from makoto.tenant.v1 import tenant_pb2
from pydantic import SecretStr

from services.common.bindings.egress import EgressPolicy
from services.common.bindings.registry import check_connect
from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition
from services.storage.ports import ItemStore, ObjectStore

log = structlog.get_logger("makoto.storage.registry")

_TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{2,62}$")


class SecretSource(Protocol):
    """Resolves a secret reference (services.common.secrets.SecretResolver fits)."""

    async def get(self, ref: str) -> SecretStr: ...


@dataclass(frozen=True)
class AdapterContext:
    """What a factory may use besides the binding."""

    tenant_id: str
    settings: MeshSettings
    secrets: SecretSource | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _TENANT_ID.fullmatch(self.tenant_id):
            raise ValueError("invalid tenant id")

    @property
    def tenant_root(self) -> Path:
        """Embedded defaults keep a tenant's data here (<data_dir>/tenants/<tenant_id>)."""
        return self.settings.data_dir / "tenants" / self.tenant_id

    async def secret(self, ref: str, binding: str) -> SecretStr:
        if self.secrets is None:
            raise FailedPrecondition(
                f"{binding} binding: no secret store configured on this server",
                reason="BINDING_SECRET_UNAVAILABLE",
                metadata={"binding": binding},
            )
        try:
            return await self.secrets.get(ref)
        except FailedPrecondition as exc:
            # Data calls come from members: they learn that the secret failed, not its name.
            log.warning(
                "binding secret unreadable", tenant_id=self.tenant_id, binding=binding, error=str(exc)
            )
            raise FailedPrecondition(
                f"{binding} binding: its credentials secret cannot be read ({exc.reason})",
                reason=exc.reason,
                metadata={"binding": binding},
            ) from None

    async def check_endpoint(self, endpoint: str, hosts: tuple[str, ...], binding: str) -> None:
        """Refuse (FAILED_PRECONDITION) an endpoint that points inside, resolved now: DNS may
        have changed since TenantService accepted the binding."""
        await check_connect(endpoint, hosts, EgressPolicy(self.settings.egress_allow), binding)


ObjectFactory = Callable[[AdapterContext, tenant_pb2.ObjectStoreBinding], Awaitable[ObjectStore]]
ItemFactory = Callable[[AdapterContext, tenant_pb2.ItemStoreBinding], Awaitable[ItemStore]]


def object_backend_name(backend: int) -> str:
    """OBJECT_BACKEND_AZURE_BLOB -> "azure_blob" (the metering dimension and log name)."""
    try:
        return tenant_pb2.ObjectBackend.Name(backend).removeprefix("OBJECT_BACKEND_").lower()
    except ValueError:
        return f"unknown({backend})"


def item_backend_name(backend: int) -> str:
    try:
        return tenant_pb2.ItemBackend.Name(backend).removeprefix("ITEM_BACKEND_").lower()
    except ValueError:
        return f"unknown({backend})"


F = TypeVar("F", ObjectFactory, ItemFactory)


@dataclass(frozen=True)
class Lazy(Generic[F]):
    """A factory imported on first use: `load` imports the adapter module and returns its build."""

    load: Callable[[], F]


class _Target(Generic[F]):
    """A registered factory: given directly, or Lazy (loaded once, on first use)."""

    def __init__(self, target: F | Lazy[F]) -> None:
        self._target: F | Lazy[F] = target
        self._loaded: F | None = None if isinstance(target, Lazy) else target

    def load(self, binding: str, backend: str) -> F:
        if self._loaded is not None:
            return self._loaded
        assert isinstance(self._target, Lazy)
        try:
            factory = self._target.load()
        except ImportError as exc:
            log.error("backend adapter unavailable", backend=backend, error=str(exc))
            raise FailedPrecondition(
                f"{binding} binding: backend {backend} is not available on this server",
                reason="BACKEND_NOT_AVAILABLE",
                metadata={"binding": binding, "backend": backend},
            ) from exc
        self._loaded = factory
        return factory


class BackendRegistry:
    def __init__(self) -> None:
        self._objects: dict[int, _Target[ObjectFactory]] = {}
        self._items: dict[int, _Target[ItemFactory]] = {}

    def register_objects(self, backend: int, factory: ObjectFactory | Lazy[ObjectFactory]) -> None:
        self._objects[backend] = _Target(factory)

    def register_items(self, backend: int, factory: ItemFactory | Lazy[ItemFactory]) -> None:
        self._items[backend] = _Target(factory)

    @property
    def object_backends(self) -> frozenset[int]:
        return frozenset(self._objects)

    @property
    def item_backends(self) -> frozenset[int]:
        return frozenset(self._items)

    async def build_objects(self, ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> ObjectStore:
        name = object_backend_name(binding.backend)
        target = self._lookup(self._objects, binding.backend, "object_store", name)
        factory = target.load("object_store", name)
        return await factory(ctx, binding)

    async def build_items(self, ctx: AdapterContext, binding: tenant_pb2.ItemStoreBinding) -> ItemStore:
        name = item_backend_name(binding.backend)
        target = self._lookup(self._items, binding.backend, "item_store", name)
        factory = target.load("item_store", name)
        return await factory(ctx, binding)

    @staticmethod
    def _lookup(table: dict[int, _Target[F]], backend: int, binding: str, name: str) -> _Target[F]:
        if backend == 0:
            raise FailedPrecondition(
                f"{binding} binding names no backend",
                reason="BINDING_INVALID",
                metadata={"binding": binding},
            )
        target = table.get(backend)
        if target is None:
            raise FailedPrecondition(
                f"{binding} binding: backend {name} is not supported by this server",
                reason="BACKEND_UNSUPPORTED",
                metadata={"binding": binding, "backend": name},
            )
        return target


# Typed lazy loaders: each imports its adapter only when a tenant bound to it is first served.


def _local_objects() -> ObjectFactory:
    from services.storage.adapters import local_fs_objects

    return local_fs_objects.build


def _s3() -> ObjectFactory:
    from services.storage.adapters import s3

    return s3.build


def _azure_blob() -> ObjectFactory:
    from services.storage.adapters import azure_blob

    return azure_blob.build


def _sqlite_items() -> ItemFactory:
    from services.storage.adapters import sqlite_items

    return sqlite_items.build


def _dynamodb_items() -> ItemFactory:
    from services.storage.adapters import dynamodb_items

    return dynamodb_items.build


def _cosmos_items() -> ItemFactory:
    from services.storage.adapters import cosmos_items

    return cosmos_items.build


def _postgres_items() -> ItemFactory:
    from services.storage.adapters import postgres_items

    return postgres_items.build


def default_registry() -> BackendRegistry:
    """Every backend this server can serve: one line each."""
    reg = BackendRegistry()
    reg.register_objects(tenant_pb2.OBJECT_BACKEND_LOCAL, Lazy(_local_objects))
    reg.register_objects(tenant_pb2.OBJECT_BACKEND_S3, Lazy(_s3))
    reg.register_objects(tenant_pb2.OBJECT_BACKEND_AZURE_BLOB, Lazy(_azure_blob))
    reg.register_items(tenant_pb2.ITEM_BACKEND_SQLITE, Lazy(_sqlite_items))
    reg.register_items(tenant_pb2.ITEM_BACKEND_DYNAMODB, Lazy(_dynamodb_items))
    reg.register_items(tenant_pb2.ITEM_BACKEND_COSMOS, Lazy(_cosmos_items))
    reg.register_items(tenant_pb2.ITEM_BACKEND_POSTGRES, Lazy(_postgres_items))
    return reg

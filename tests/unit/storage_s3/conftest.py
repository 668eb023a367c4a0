"""S3 adapter tests run against moto server (tests/contract/emulators.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.s3 import S3ObjectStore, config_from_binding
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401

MakeStore = Callable[..., Awaitable[S3ObjectStore]]
_ids = itertools.count()


def s3_binding(endpoint: str, **options: str) -> tenant_pb2.ObjectStoreBinding:
    return tenant_pb2.ObjectStoreBinding(
        backend=tenant_pb2.OBJECT_BACKEND_S3,
        endpoint=endpoint,
        region="us-east-1",
        path_style=True,
        options={"max_attempts": "2", **options},
    )


def s3_store(tenant: str, endpoint: str, **options: str) -> S3ObjectStore:
    return S3ObjectStore(config_from_binding(tenant, s3_binding(endpoint, **options), MOTO_CREDENTIALS))


@pytest.fixture
async def make_store(moto_server: Emulator) -> AsyncIterator[MakeStore]:  # noqa: F811
    """Builds provisioned stores for fresh tenants on the session moto; closes them after."""
    stores: list[S3ObjectStore] = []

    async def make(endpoint: str | None = None, provision: bool = True, **options: str) -> S3ObjectStore:
        tenant = f"t{next(_ids):04d}-s3"
        store = s3_store(tenant, endpoint or moto_server.endpoint, **options)
        stores.append(store)
        if provision:
            await store.provision()
        return store

    yield make
    for store in stores:
        await store.close()

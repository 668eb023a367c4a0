"""Azure Blob adapter tests run against Azurite (tests/contract/emulators.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.azure_blob import AzureBlobObjectStore, config_from_binding
from tests.contract.emulators import Azurite, azurite  # noqa: F401

MakeStore = Callable[..., Awaitable[AzureBlobObjectStore]]
_ids = itertools.count()


def blob_binding(account_url: str, **options: str) -> tenant_pb2.ObjectStoreBinding:
    return tenant_pb2.ObjectStoreBinding(
        backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
        endpoint=account_url,
        options={"max_attempts": "2", **options},
    )


def blob_store(
    tenant: str, emu: Azurite, credentials: Mapping[str, str] | None = None, **options: str
) -> AzureBlobObjectStore:
    creds = credentials if credentials is not None else {"account_key": emu.key}
    return AzureBlobObjectStore(config_from_binding(tenant, blob_binding(emu.account_url, **options), creds))


@pytest.fixture
async def make_store(azurite: Azurite) -> AsyncIterator[MakeStore]:  # noqa: F811
    """Builds provisioned stores for fresh tenants on the session Azurite; closes them after."""
    stores: list[AzureBlobObjectStore] = []

    async def make(
        provision: bool = True, credentials: Mapping[str, str] | None = None, **options: str
    ) -> AzureBlobObjectStore:
        store = blob_store(f"t{next(_ids):04d}-blob", azurite, credentials, **options)
        stores.append(store)
        if provision:
            await store.provision()
        return store

    yield make
    for store in stores:
        await store.close()

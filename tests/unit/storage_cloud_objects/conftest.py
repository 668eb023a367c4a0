"""The cloud object adapters (S3 on moto, Azure Blob on Azurite) as one parameter: the writer
suite (test_cloud_writes.py) runs unchanged over both. What differs is data here: each
backend's part size for the tests, its metadata limit, and how to see in-progress uploads."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.emulators import Azurite, Emulator, azurite, moto_server  # noqa: F401
from tests.unit.storage_blob.conftest import blob_store
from tests.unit.storage_s3.conftest import s3_store
from tests.unit.storage_s3.helpers import MIB

KIB = 1024
_ids = itertools.count()


@dataclass(frozen=True)
class Cloud:
    name: str
    part: int  # the part (block) size the tests configure
    metadata_entries_over_limit: int  # this many 1000-byte values exceed the backend's total
    make: Callable[..., Awaitable[Any]]  # make(**binding options) -> a provisioned store
    # Parts of `key` sitting in the backend but not (yet) in a visible object: S3's pending
    # multipart uploads' parts, Azure's uncommitted blocks.
    staged: Callable[[Any, str], Awaitable[int]]
    # Nothing of a failed or cancelled upload of `key` can ever become visible: S3's multipart
    # upload is aborted; Azure's blocks were never committed (Azure discards them itself).
    aborted: Callable[[Any, str], Awaitable[bool]]
    read_options: dict[str, str]  # binding options that bound a download's chunks


async def _s3_uploads(store: Any, key: str) -> list[dict[str, Any]]:
    client = await store.client()
    resp = await client.list_multipart_uploads(Bucket=store.cfg.bucket)
    return [u for u in resp.get("Uploads", []) if u["Key"] == key]


async def _s3_staged(store: Any, key: str) -> int:
    client = await store.client()
    total = 0
    for upload in await _s3_uploads(store, key):
        parts = await client.list_parts(Bucket=store.cfg.bucket, Key=key, UploadId=upload["UploadId"])
        total += len(parts.get("Parts", []))
    return total


async def _s3_aborted(store: Any, key: str) -> bool:
    return await _s3_uploads(store, key) == []


async def _blob_blocks(store: Any, key: str) -> tuple[int, int]:
    committed, uncommitted = await store.container.get_blob_client(key).get_block_list("all")
    return len(committed), len(uncommitted)


async def _blob_staged(store: Any, key: str) -> int:
    return (await _blob_blocks(store, key))[1]


async def _blob_aborted(store: Any, key: str) -> bool:
    return (await _blob_blocks(store, key))[0] == 0


@pytest.fixture(params=["s3", "azure_blob"])
async def cloud(request: pytest.FixtureRequest) -> AsyncIterator[Cloud]:
    stores: list[Any] = []

    async def make(**options: str) -> Any:
        tenant = f"w{next(_ids):04d}-{request.param.replace('_', '')}"
        if request.param == "s3":
            emu: Emulator = request.getfixturevalue("moto_server")
            store: Any = s3_store(tenant, emu.endpoint, **options)
        else:
            store = blob_store(tenant, request.getfixturevalue("azurite"), **options)
        stores.append(store)
        await store.provision()
        return store

    if request.param == "s3":
        yield Cloud("s3", 5 * MIB, 3, make, _s3_staged, _s3_aborted, {})
    else:
        yield Cloud(
            "azure_blob",
            256 * KIB,
            9,
            make,
            _blob_staged,
            _blob_aborted,
            {"download_chunk_bytes": str(512 * KIB)},
        )
    for store in stores:
        await store.close()

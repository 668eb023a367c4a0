"""The cloud object adapters (S3 on moto server, Azure Blob on Azurite) as one parameter: the
suites here (writer, reads/listing/signing/lifecycle, failures, registry) run unchanged over
both. What differs between the backends is written once per backend below: part sizes and
limits, how to see in-progress uploads, naming, signed-URL PUT details, emulators, the error
answer of a busy service. What only one backend has stays in tests/unit/storage_s3/ and
tests/unit/storage_blob/."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from aiohttp import web
from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.azure_blob import AzureBlobObjectStore
from services.storage.adapters.azure_blob import config_from_binding as blob_config
from services.storage.adapters.s3 import S3ObjectStore
from tests.contract.emulators import (  # noqa: F401
    AZURITE_KEY,
    MOTO_CREDENTIALS,
    Azurite,
    Emulator,
    azurite,
    moto_server,
    start_azurite,
    start_moto,
)
from tests.unit.storage_blob.conftest import blob_binding, blob_store
from tests.unit.storage_s3.conftest import s3_store
from tests.unit.storage_s3.helpers import MIB

KIB = 1024
_ids = itertools.count()


def _error_body(code: str) -> bytes:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return body.encode()


@dataclass
class Cloud:
    """One cloud object backend, as the shared suites see it."""

    name: str
    emulator: Any  # the session emulator this backend's stores talk to
    part: int  # the part (block) size the tests configure
    metadata_entries_over_limit: int  # this many 1000-byte values exceed the backend's total
    read_options: dict[str, str]  # binding options that bound a download's chunks
    ranged_read_options: dict[str, str]  # options that make a 200 KiB read span several chunks
    signed_put_headers: dict[str, str]  # what a plain HTTP client adds to a signed PUT
    signed_put_status: int
    stores: list[Any] = field(default_factory=list)

    store_type: ClassVar[type] = object  # what the registry builds for this backend's binding
    secret: ClassVar[str] = ""  # the credential no error text may show

    def store(self, tenant: str, **options: str) -> Any:
        raise NotImplementedError

    async def make(self, provision: bool = True, **options: str) -> Any:
        """A store for a fresh tenant on the session emulator, provisioned unless asked not to
        (closed by the fixture)."""
        store = self.store(f"w{next(_ids):04d}-{self.name.replace('_', '')}", **options)
        self.stores.append(store)
        if provision:
            await store.provision()
        return store

    # Parts of `key` sitting in the backend but not (yet) in a visible object: S3's pending
    # multipart uploads' parts, Azure's uncommitted blocks.
    async def staged(self, store: Any, key: str) -> int:
        raise NotImplementedError

    # Nothing of a failed or cancelled upload of `key` can ever become visible: S3's multipart
    # upload is aborted; Azure's blocks were never committed (Azure discards them itself).
    async def aborted(self, store: Any, key: str) -> bool:
        raise NotImplementedError

    async def stage_dangling(self, store: Any, key: str) -> None:
        """Leave an unfinished upload of `key` behind (deprovision must still remove all)."""
        raise NotImplementedError

    def container(self, store: Any) -> str:
        """The bucket/container the store is configured with."""
        raise NotImplementedError

    def platform_name(self, tenant_id: str) -> str:
        """The bucket/container name the platform's convention gives a tenant."""
        raise NotImplementedError

    async def containers(self, store: Any) -> list[str]:
        raise NotImplementedError

    def start_own_emulator(self) -> Any:
        raise NotImplementedError

    def store_on(self, tenant: str, emulator: Any, **options: str) -> Any:
        raise NotImplementedError

    def fake_store(self, tenant: str, server_root: str, **options: str) -> Any:
        """A store whose endpoint is a local HTTP server (answers written by the test)."""
        raise NotImplementedError

    def busy(self, retry_after_seconds: int) -> web.Response:
        """The backend's own 503 'slow down' answer with a Retry-After."""
        raise NotImplementedError

    def registry_binding(self) -> tuple[tenant_pb2.ObjectStoreBinding, Mapping[str, str]]:
        """A binding naming a secret reference, and the secrets it resolves to."""
        raise NotImplementedError


class S3Cloud(Cloud):
    store_type = S3ObjectStore
    secret = MOTO_CREDENTIALS["secret_access_key"]

    def store(self, tenant: str, **options: str) -> Any:
        return s3_store(tenant, self.emulator.endpoint, **options)

    async def _uploads(self, store: Any, key: str) -> list[dict[str, Any]]:
        client = await store.client()
        resp = await client.list_multipart_uploads(Bucket=store.cfg.bucket)
        return [u for u in resp.get("Uploads", []) if u["Key"] == key]

    async def staged(self, store: Any, key: str) -> int:
        client = await store.client()
        total = 0
        for upload in await self._uploads(store, key):
            parts = await client.list_parts(Bucket=store.cfg.bucket, Key=key, UploadId=upload["UploadId"])
            total += len(parts.get("Parts", []))
        return total

    async def aborted(self, store: Any, key: str) -> bool:
        return await self._uploads(store, key) == []

    async def stage_dangling(self, store: Any, key: str) -> None:
        client = await store.client()
        await client.create_multipart_upload(Bucket=store.cfg.bucket, Key=key)

    def container(self, store: Any) -> str:
        return str(store.cfg.bucket)

    def platform_name(self, tenant_id: str) -> str:
        return f"makoto-{tenant_id}-assets"

    async def containers(self, store: Any) -> list[str]:
        client = await store.client()
        return [b["Name"] for b in (await client.list_buckets())["Buckets"]]

    def start_own_emulator(self) -> Any:
        return start_moto()

    def store_on(self, tenant: str, emulator: Any, **options: str) -> Any:
        return s3_store(tenant, emulator.endpoint, **options)

    def fake_store(self, tenant: str, server_root: str, **options: str) -> Any:
        return s3_store(tenant, server_root, **options)

    def busy(self, retry_after_seconds: int) -> web.Response:
        return web.Response(
            status=503,
            body=_error_body("SlowDown"),
            headers={"Retry-After": str(retry_after_seconds)},
            content_type="application/xml",
        )

    def registry_binding(self) -> tuple[tenant_pb2.ObjectStoreBinding, Mapping[str, str]]:
        import json

        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=self.emulator.endpoint,
            path_style=True,
            credentials_secret_ref="env://S3_KEYS",
            options={"auto_provision": "true"},
        )
        return binding, {"env://S3_KEYS": json.dumps(MOTO_CREDENTIALS)}


class BlobCloud(Cloud):
    store_type = AzureBlobObjectStore
    secret = AZURITE_KEY

    def store(self, tenant: str, **options: str) -> Any:
        return blob_store(tenant, self.emulator, **options)

    async def _blocks(self, store: Any, key: str) -> tuple[int, int]:
        committed, uncommitted = await store.container.get_blob_client(key).get_block_list("all")
        return len(committed), len(uncommitted)

    async def staged(self, store: Any, key: str) -> int:
        return (await self._blocks(store, key))[1]

    async def aborted(self, store: Any, key: str) -> bool:
        return (await self._blocks(store, key))[0] == 0

    async def stage_dangling(self, store: Any, key: str) -> None:
        await store.container.get_blob_client(key).stage_block("YmxvY2sx", b"uncommitted")

    def container(self, store: Any) -> str:
        return str(store.cfg.container)

    def platform_name(self, tenant_id: str) -> str:
        return f"{tenant_id}-assets"

    async def containers(self, store: Any) -> list[str]:
        return [c.name async for c in store.service.list_containers()]

    def start_own_emulator(self) -> Any:
        return start_azurite()

    def store_on(self, tenant: str, emulator: Any, **options: str) -> Any:
        return blob_store(tenant, emulator, **options)

    def fake_store(self, tenant: str, server_root: str, **options: str) -> Any:
        binding = blob_binding(f"{server_root}/fakeaccount", **options)
        return AzureBlobObjectStore(blob_config(tenant, binding, {"account_key": AZURITE_KEY}))

    def busy(self, retry_after_seconds: int) -> web.Response:
        return web.Response(
            status=503,
            body=_error_body("ServerBusy"),
            content_type="application/xml",
            headers={"x-ms-error-code": "ServerBusy", "Retry-After": str(retry_after_seconds)},
        )

    def registry_binding(self) -> tuple[tenant_pb2.ObjectStoreBinding, Mapping[str, str]]:
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
            endpoint=self.emulator.account_url,
            credentials_secret_ref="local://blob",
            options={"auto_provision": "true"},
        )
        return binding, {"local://blob": AZURITE_KEY}


@pytest.fixture(params=["s3", "azure_blob"])
async def cloud(request: pytest.FixtureRequest) -> AsyncIterator[Cloud]:
    backend: Cloud
    if request.param == "s3":
        emu: Emulator = request.getfixturevalue("moto_server")
        backend = S3Cloud("s3", emu, 5 * MIB, 3, {}, {}, {}, 200)
    else:
        azure: Azurite = request.getfixturevalue("azurite")
        backend = BlobCloud(
            "azure_blob",
            azure,
            256 * KIB,
            9,
            {"download_chunk_bytes": str(512 * KIB)},
            {"download_chunk_bytes": str(64 * KIB)},
            {"x-ms-blob-type": "BlockBlob"},
            201,
        )
    yield backend
    for store in backend.stores:
        await store.close()

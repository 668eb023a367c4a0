"""AzureBlobObjectStore against Azurite: ranged reads, listing, delete, SAS, lifecycle.

The writer (streaming, parts, create-only, aborts, memory) is tested for both cloud adapters
by one parametrised suite: tests/unit/storage_cloud_objects/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.storage.adapters.azure_blob import AzureBlobObjectStore
from services.storage.ports import ObjectInfo
from tests.contract.emulators import Azurite
from tests.unit.storage_blob.conftest import MakeStore
from tests.unit.storage_s3.helpers import (
    chunked,
    collect,
    pattern,
    sha,
)

KIB = 1024
PART = str(256 * KIB)  # small blocks so a few MiB exercise staged-block uploads


async def put_bytes(
    store: AzureBlobObjectStore,
    key: str,
    data: bytes,
    *,
    content_type: str = "application/x-test",
    user_metadata: dict[str, str] | None = None,
    if_none_match: bool = False,
) -> ObjectInfo:
    return await store.put(
        key,
        chunked(data, 64 * KIB),
        content_type=content_type,
        user_metadata=user_metadata or {},
        if_none_match=if_none_match,
    )


async def block_lists(store: AzureBlobObjectStore, key: str) -> tuple[int, int]:
    """(committed, uncommitted) block counts of a blob."""
    blocks = await store.container.get_blob_client(key).get_block_list("all")
    return len(blocks[0]), len(blocks[1])


async def test_ranged_reads(make_store: MakeStore) -> None:
    store = await make_store(download_chunk_bytes=str(64 * KIB))
    data = pattern(200 * KIB, seed=13)
    await put_bytes(store, "r", data)
    cases = [(0, 1), (10, 20), (100 * KIB, None), (200 * KIB - 1, 5), (5, 0), (0, None), (1, 150 * KIB)]
    for start, length in cases:
        info, stream = await store.get("r", start=start, length=length)
        assert info.size == len(data)
        end = None if length is None else start + length
        assert await collect(stream) == data[start:end], (start, length)
    for start in (200 * KIB, 300 * KIB):
        with pytest.raises(InvalidArgument):
            await store.get("r", start=start)
    with pytest.raises(NotFound):
        await store.get("missing", start=3, length=2)


async def test_list_prefix_pagination(make_store: MakeStore) -> None:
    store = await make_store()
    keys = ["p/a", "p/b", "p/B", "p/\u00e9", "p/\U0001f600", "p/z/1", "p/z/2", "q/other", "pa"]
    for k in keys:
        await put_bytes(store, k, k.encode(), user_metadata={"k": "v"})
    expected = sorted((k for k in keys if k.startswith("p/")), key=lambda k: k.encode())
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = await store.list("p/", 3, token)
        pages += 1
        assert len(page.objects) <= 3
        for obj in page.objects:
            assert obj.size == len(obj.key.encode()) and obj.sha256 == sha(obj.key.encode())
            assert obj.content_type == "application/x-test" and dict(obj.user_metadata) == {"k": "v"}
        seen += [o.key for o in page.objects]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected and pages == 3
    first = await store.list("p/", 3, "")
    again = await store.list("p/", 3, first.next_page_token)
    assert [o.key for o in again.objects] == expected[3:6]
    with pytest.raises(InvalidArgument):
        await store.list("q/", 3, first.next_page_token)
    with pytest.raises(InvalidArgument):
        await store.list("p/", 3, "not-a-token!")


async def test_delete(make_store: MakeStore) -> None:
    store = await make_store()
    put = await put_bytes(store, "d/x", b"12345")
    deleted = await store.delete("d/x")
    assert deleted.size == 5 and deleted.etag == put.etag
    for op in (store.delete("d/x"), store.head("d/x"), store.get("d/x")):
        with pytest.raises(NotFound):
            await op


async def test_sas_urls_get_and_put(make_store: MakeStore) -> None:
    store = await make_store()
    assert store.capabilities.sign_url
    await put_bytes(store, "s/file name.bin", b"signed bytes")
    before = datetime.now(UTC)
    signed = await store.sign_url("s/file name.bin", "GET", timedelta(minutes=5))
    assert before + timedelta(minutes=4) < signed.expires <= datetime.now(UTC) + timedelta(minutes=5)
    async with httpx.AsyncClient() as http:
        resp = await http.get(signed.url)
        assert resp.status_code == 200 and resp.content == b"signed bytes"
        # The read SAS does not allow writing, and a tampered signature is refused (Azurite enforces SAS).
        assert (
            await http.put(signed.url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
        ).status_code == 403
        assert (await http.get(signed.url.replace("sig=", "sig=AA"))).status_code == 403
        put_url = await store.sign_url("s/uploaded.bin", "PUT", timedelta(seconds=60))
        resp = await http.put(put_url.url, content=b"via sas put", headers={"x-ms-blob-type": "BlockBlob"})
        assert resp.status_code == 201
    _, stream = await store.get("s/uploaded.bin")
    assert await collect(stream) == b"via sas put"


async def test_sas_only_credential_cannot_sign(make_store: MakeStore, azurite: Azurite) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    owner = await make_store()
    sas = generate_container_sas(
        azurite.account,
        owner.cfg.container,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, write=True, create=True, list=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    from tests.unit.storage_blob.conftest import blob_store

    store = blob_store(owner.cfg.tenant_id, azurite, {"sas_token": sas})
    try:
        assert not store.capabilities.sign_url
        await put_bytes(store, "via-sas", b"written with a SAS")  # the SAS still reads and writes
        assert (await store.head("via-sas")).size == len(b"written with a SAS")
        with pytest.raises(FailedPrecondition) as err:
            await store.sign_url("via-sas", "GET", timedelta(minutes=1))
        assert err.value.metadata["capability"] == "sign_url" and "sign_url" in err.value.message
        assert sas not in err.value.message
    finally:
        await store.close()


async def test_connection_string_credential(make_store: MakeStore, azurite: Azurite) -> None:
    store = await make_store(credentials={"connection_string": azurite.connection_string})
    assert store.capabilities.sign_url and store.cfg.account_name == azurite.account
    await put_bytes(store, "cs", b"ok")
    assert (await store.head("cs")).size == 2


async def test_provision_and_deprovision_are_idempotent(make_store: MakeStore) -> None:
    store = await make_store(provision=False)
    assert store.cfg.container == f"{store.cfg.tenant_id}-assets"
    with pytest.raises(FailedPrecondition):  # container not there yet: a binding problem
        await put_bytes(store, "x", b"1")
    await store.provision()
    await store.provision()
    names = [c.name async for c in store.service.list_containers()]
    assert store.cfg.container in names
    await put_bytes(store, "x", b"1")
    await store.deprovision()
    await store.deprovision()
    names = [c.name async for c in store.service.list_containers()]
    assert store.cfg.container not in names

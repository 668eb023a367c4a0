"""What an attacker would try against StorageService: escaping keys, planted symlinks, another
tenant's id, a suspended tenant. Each is refused with the right code and leaves no trace."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import duration_pb2
from makoto.storage.v1 import items_pb2, objects_pb2
from makoto.tenant.v1 import tenant_pb2

from tests.support import client_stream
from tests.unit.storage.conftest import Storage

BAD_KEYS = [
    "../escape",
    "a/../../escape",
    "..",
    ".",
    "./a",
    "a/.",
    "a/..",
    "/etc/passwd",
    "a/",
    "a//b",
    "a\x00b",
    "x" * 1025,
    "é" * 513,  # 1026 bytes
    # what "%2e%2e/..." and "a/%2E%2E/b" decode to once a proxy unescapes the path
    "../../globex/objects/x",
    "a/../b",
]


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


async def _upload(s: Storage, key: str) -> Any:
    messages = [
        objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id="acme", key=key)),
        objects_pb2.UploadObjectRequest(chunk=b"payload"),
    ]
    return await client_stream(s.stub.UploadObject, messages, s.md())


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


def _calls(s: Storage, key: str) -> dict[str, Callable[[], Any]]:
    md = s.md()
    return {
        "UploadObject": lambda: _upload(s, key),
        "PutObjectContent": lambda: s.stub.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id="acme", key=key, content=httpbody_pb2.HttpBody(data=b"payload")
            ),
            metadata=md,
        ),
        "DownloadObject": lambda: _drain(
            s.stub.DownloadObject(objects_pb2.DownloadObjectRequest(tenant_id="acme", key=key), metadata=md)
        ),
        "GetObjectContent": lambda: _drain(
            s.stub.GetObjectContent(
                objects_pb2.GetObjectContentRequest(tenant_id="acme", key=key), metadata=md
            )
        ),
        "GetObjectMetadata": lambda: s.stub.GetObjectMetadata(
            objects_pb2.GetObjectMetadataRequest(tenant_id="acme", key=key), metadata=md
        ),
        "DeleteObject": lambda: s.stub.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id="acme", key=key), metadata=md
        ),
        "SignObjectUrl": lambda: s.stub.SignObjectUrl(
            objects_pb2.SignObjectUrlRequest(
                tenant_id="acme",
                key=key,
                method=objects_pb2.SIGNED_URL_METHOD_GET,
                ttl=duration_pb2.Duration(seconds=60),
            ),
            metadata=md,
        ),
    }


@pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k)[:24] for k in BAD_KEYS])
async def test_escaping_keys_are_refused_by_every_rpc(storage: Storage, key: str) -> None:
    data_dir = storage.settings.data_dir
    before = _tree(data_dir)
    for name, call in _calls(storage, key).items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.value.details())
    # refused before any backend was touched: not a file more, anywhere
    assert _tree(data_dir) == before
    assert not (data_dir.parent / "escape").exists()
    assert not (storage.settings.home.parent / "escape").exists()


async def test_literal_percent_keys_stay_plain_keys(storage: Storage) -> None:
    # Undecoded escapes are ordinary characters: stored inside the tenant, under that exact name.
    for key in ("%2e%2e/%2e%2e/etc/passwd", "a/%2E%2E/b", "..%2f..%2fx"):
        meta = await storage.stub.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id="acme", key=key, content=httpbody_pb2.HttpBody(data=key.encode())
            ),
            metadata=storage.md(),
        )
        assert meta.key == key
        bodies = [
            b.data
            async for b in storage.stub.GetObjectContent(
                objects_pb2.GetObjectContentRequest(tenant_id="acme", key=key), metadata=storage.md()
            )
        ]
        assert b"".join(bodies) == key.encode()
    outside = storage.settings.data_dir / "tenants"
    assert sorted(p.name for p in outside.iterdir()) <= ["acme", "globex", "meter-co"]


def _blob_path(s: Storage, tenant: str, key: str) -> Path:
    objects = s.tenant_root(tenant) / "objects"
    with sqlite3.connect(objects / "index.sqlite3") as conn:
        (version,) = conn.execute("SELECT version FROM objects WHERE key = ?", (key.encode(),)).fetchone()
    return objects / "blobs" / version[:2] / version


async def _download(s: Storage, key: str, tenant: str = "acme") -> bytes:
    out = bytearray()
    async for message in s.stub.DownloadObject(
        objects_pb2.DownloadObjectRequest(tenant_id=tenant, key=key), metadata=s.md(tenant)
    ):
        out += message.chunk
    return bytes(out)


async def test_symlink_planted_for_an_object_is_not_followed(storage: Storage, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_bytes(b"TOP SECRET")
    await _upload(storage, "victim.txt")
    blob = _blob_path(storage, "acme", "victim.txt")
    blob.unlink()
    blob.symlink_to(secret)
    for read in (
        lambda: _download(storage, "victim.txt"),
        lambda: _drain(
            storage.stub.GetObjectContent(
                objects_pb2.GetObjectContentRequest(tenant_id="acme", key="victim.txt"), metadata=storage.md()
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await read()
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "SECRET" not in (err.value.details() or "")
        assert str(tmp_path) not in (err.value.details() or "")
    # deleting the object removes the link, never the file it points to
    await storage.stub.DeleteObject(
        objects_pb2.DeleteObjectRequest(tenant_id="acme", key="victim.txt"), metadata=storage.md()
    )
    assert secret.read_bytes() == b"TOP SECRET"


async def test_symlinked_directory_inside_the_root_is_not_followed(storage: Storage, tmp_path: Path) -> None:
    await _upload(storage, "dir-victim.txt")
    blob = _blob_path(storage, "acme", "dir-victim.txt")
    shard = blob.parent
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / blob.name).write_bytes(b"payload")  # same size as the real object: a perfect decoy
    # move every object of this shard away and put a link to the outside directory in its place
    moved = tmp_path / "moved-shard"
    shard.rename(moved)
    shard.symlink_to(outside, target_is_directory=True)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _download(storage, "dir-victim.txt")
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert sorted(os.listdir(outside)) == [blob.name]  # nothing read or written there
    finally:
        shard.unlink()
        moved.rename(shard)
    assert await _download(storage, "dir-victim.txt") == b"payload"


async def test_tenant_root_symlink_is_refused(storage: Storage, tmp_path: Path) -> None:
    """A tenant whose objects directory was replaced by a link (before first use) gets nothing."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = storage.tenant_root("linked-co")
    root.mkdir(parents=True)
    (root / "objects").symlink_to(outside, target_is_directory=True)
    storage.resolver.set("linked-co")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.stub.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id="linked-co", key="x", content=httpbody_pb2.HttpBody(data=b"x")
                ),
                metadata=storage.md("linked-co"),
            )
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert list(outside.iterdir()) == []
    finally:
        storage.resolver.remove("linked-co")


async def test_other_tenants_data_is_out_of_reach(storage: Storage) -> None:
    await storage.stub.PutObjectContent(
        objects_pb2.PutObjectContentRequest(
            tenant_id="globex", key="private/plan.txt", content=httpbody_pb2.HttpBody(data=b"globex only")
        ),
        metadata=storage.md("globex"),
    )
    await storage.stub.PutItem(
        items_pb2.PutItemRequest(
            tenant_id="globex",
            item=items_pb2.Item(collection="c", partition_key="p", sort_key="s"),
        ),
        metadata=storage.md("globex"),
    )
    acme = storage.md("acme")
    foreign = {
        "Download": lambda: _drain(
            storage.stub.DownloadObject(
                objects_pb2.DownloadObjectRequest(tenant_id="globex", key="private/plan.txt"), metadata=acme
            )
        ),
        "Upload": lambda: client_stream(
            storage.stub.UploadObject, _single_upload("globex", "private/plan.txt"), acme
        ),
        "Put": lambda: storage.stub.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id="globex", key="private/plan.txt", content=httpbody_pb2.HttpBody(data=b"owned")
            ),
            metadata=acme,
        ),
        "Content": lambda: _drain(
            storage.stub.GetObjectContent(
                objects_pb2.GetObjectContentRequest(tenant_id="globex", key="private/plan.txt"), metadata=acme
            )
        ),
        "Head": lambda: storage.stub.GetObjectMetadata(
            objects_pb2.GetObjectMetadataRequest(tenant_id="globex", key="private/plan.txt"), metadata=acme
        ),
        "Delete": lambda: storage.stub.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id="globex", key="private/plan.txt"), metadata=acme
        ),
        "List": lambda: storage.stub.ListObjects(
            objects_pb2.ListObjectsRequest(tenant_id="globex"), metadata=acme
        ),
        "Sign": lambda: storage.stub.SignObjectUrl(
            objects_pb2.SignObjectUrlRequest(
                tenant_id="globex", key="private/plan.txt", method=objects_pb2.SIGNED_URL_METHOD_GET
            ),
            metadata=acme,
        ),
        "GetItem": lambda: storage.stub.GetItem(
            items_pb2.GetItemRequest(tenant_id="globex", collection="c", partition_key="p", sort_key="s"),
            metadata=acme,
        ),
        "PutItem": lambda: storage.stub.PutItem(
            items_pb2.PutItemRequest(
                tenant_id="globex", item=items_pb2.Item(collection="c", partition_key="p", sort_key="s")
            ),
            metadata=acme,
        ),
        "DeleteItem": lambda: storage.stub.DeleteItem(
            items_pb2.DeleteItemRequest(tenant_id="globex", collection="c", partition_key="p", sort_key="s"),
            metadata=acme,
        ),
        "Query": lambda: storage.stub.QueryItems(
            items_pb2.QueryItemsRequest(tenant_id="globex", collection="c", partition_key="p"), metadata=acme
        ),
        "BatchGet": lambda: storage.stub.BatchGetItems(
            items_pb2.BatchGetItemsRequest(
                tenant_id="globex", keys=[items_pb2.ItemKey(collection="c", partition_key="p", sort_key="s")]
            ),
            metadata=acme,
        ),
        "BatchWrite": lambda: storage.stub.BatchWriteItems(
            items_pb2.BatchWriteItemsRequest(
                tenant_id="globex",
                writes=[
                    items_pb2.BatchWrite(
                        delete=items_pb2.ItemKey(collection="c", partition_key="p", sort_key="s")
                    )
                ],
            ),
            metadata=acme,
        ),
        "Transact": lambda: storage.stub.TransactWriteItems(
            items_pb2.TransactWriteItemsRequest(
                tenant_id="globex",
                writes=[
                    items_pb2.TransactWrite(
                        delete=items_pb2.TransactDelete(
                            key=items_pb2.ItemKey(collection="c", partition_key="p", sort_key="s")
                        )
                    )
                ],
            ),
            metadata=acme,
        ),
    }
    for name, call in foreign.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
    # globex's data is untouched
    assert await _download(storage, "private/plan.txt", tenant="globex") == b"globex only"
    item = await storage.stub.GetItem(
        items_pb2.GetItemRequest(tenant_id="globex", collection="c", partition_key="p", sort_key="s"),
        metadata=storage.md("globex"),
    )
    assert item.sort_key == "s"
    # and the same key in acme is acme's own, separate object
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _download(storage, "private/plan.txt", tenant="acme")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _single_upload(tenant: str, key: str) -> list[objects_pb2.UploadObjectRequest]:
    return [
        objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key=key)),
        objects_pb2.UploadObjectRequest(chunk=b"owned"),
    ]


async def test_tenant_state_is_enforced(storage: Storage) -> None:
    def get() -> Any:
        return storage.stub.GetObjectMetadata(
            objects_pb2.GetObjectMetadataRequest(tenant_id="state-co", key="x"),
            metadata=storage.md("state-co"),
        )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # unknown tenant
    storage.resolver.set("state-co", state=tenant_pb2.TENANT_STATE_SUSPENDED)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    storage.resolver.set("state-co", state=tenant_pb2.TENANT_STATE_PROVISIONING)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    storage.resolver.set("state-co")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # active now: the object is simply absent
    storage.resolver.remove("state-co")


async def test_missing_or_unsupported_binding_is_a_failed_precondition(storage: Storage) -> None:
    storage.resolver.set(
        "unbound-co",
        tenant_pb2.TenantBindings(
            object_store=tenant_pb2.ObjectStoreBinding(backend=tenant_pb2.OBJECT_BACKEND_UNSPECIFIED),
            item_store=tenant_pb2.ItemStoreBinding(backend=99),  # type: ignore[arg-type]
        ),
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.stub.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id="unbound-co", key="x"),
                metadata=storage.md("unbound-co"),
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "object_store" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.stub.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id="unbound-co", collection="c", partition_key="p", sort_key="s"
                ),
                metadata=storage.md("unbound-co"),
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "item_store" in (err.value.details() or "")
    finally:
        storage.resolver.remove("unbound-co")

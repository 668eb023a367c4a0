"""Local filesystem adapter specifics the contract suite cannot see: the on-disk layout, temp
file cleanup, the crash sweep, and refusal of a tampered tree."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.errors import Internal, Unavailable
from services.storage.adapters.local_fs_objects import TMP_MAX_AGE_SECONDS, LocalFsObjectStore
from services.storage.adapters.sqlite_items import SqliteItemStore
from services.storage.ports import ItemKey


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def versions(objects: Path) -> list[str]:
    return sorted(p.name for p in (objects / "blobs").rglob("*") if p.is_file())


async def test_layout_one_file_per_version_and_old_versions_removed(tmp_path: Path) -> None:
    store = LocalFsObjectStore(tmp_path / "tenants", "acme")
    await store.open()
    objects = tmp_path / "tenants" / "acme" / "objects"
    a = await store.put("a", one(b"A"), content_type="x", user_metadata={})
    ab = await store.put("a/b", one(b"AB"), content_type="x", user_metadata={})
    assert versions(objects) == sorted([a.etag, ab.etag])
    # file names are ours (random hex), never derived from keys
    for path in (objects / "blobs").rglob("*"):
        assert path.name == path.name.lower() and all(c in "0123456789abcdef" for c in path.name)
    a2 = await store.put("a", one(b"A2"), content_type="x", user_metadata={})
    assert versions(objects) == sorted([a2.etag, ab.etag])
    await store.delete("a/b")
    assert versions(objects) == [a2.etag]
    assert os.listdir(objects / "tmp") == []
    with sqlite3.connect(objects / "index.sqlite3") as conn:
        assert conn.execute("SELECT key FROM objects").fetchall() == [(b"a",)]
    await store.close()


async def test_cancelled_and_failed_uploads_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalFsObjectStore(tmp_path / "tenants", "acme")
    await store.open()
    tmp = tmp_path / "tenants" / "acme" / "objects" / "tmp"
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * (2 * 1024 * 1024)  # over the write buffer: really reaches the disk
        started.set()
        await asyncio.sleep(3600)
        yield b""

    task = asyncio.create_task(store.put("k", slow(), content_type="x", user_metadata={}))
    await asyncio.wait_for(started.wait(), 10)
    assert len(os.listdir(tmp)) == 1  # the upload in progress
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if not os.listdir(tmp):
            break
        await asyncio.sleep(0.01)
    assert os.listdir(tmp) == []
    assert versions(tmp.parent) == []
    await store.close()


async def test_stale_temp_files_are_swept_on_open(tmp_path: Path) -> None:
    store = LocalFsObjectStore(tmp_path / "tenants", "acme")
    await store.open()
    await store.close()
    tmp = tmp_path / "tenants" / "acme" / "objects" / "tmp"
    stale, live = tmp / "stale.part", tmp / "live.part"
    stale.write_bytes(b"left by a crash")
    live.write_bytes(b"another process uploading")
    old = time.time() - TMP_MAX_AGE_SECONDS - 60
    os.utime(stale, (old, old))
    store = LocalFsObjectStore(tmp_path / "tenants", "acme")
    await store.open()
    assert sorted(os.listdir(tmp)) == ["live.part"]
    await store.close()


async def test_tampered_tree_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tenants = tmp_path / "tenants"
    (tenants / "evil").mkdir(parents=True)
    (tenants / "evil" / "objects").symlink_to(outside, target_is_directory=True)
    with pytest.raises(Internal):
        await LocalFsObjectStore(tenants, "evil").open()
    (tenants / "evil2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(Internal):
        await LocalFsObjectStore(tenants, "evil2").open()
    store = LocalFsObjectStore(tenants, "fine")
    await store.open()
    await store.close()
    index = tenants / "fine" / "objects" / "index.sqlite3"
    index.unlink()
    index.symlink_to(outside / "index.sqlite3")
    with pytest.raises(Internal):
        await LocalFsObjectStore(tenants, "fine").open()
    assert list(outside.iterdir()) == []
    with pytest.raises(ValueError):
        LocalFsObjectStore(tenants, "../escape")


async def test_sqlite_items_schema_is_idempotent_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "acme" / "items.sqlite3"
    path.parent.mkdir()
    sqlite3.connect(path).close()  # what the tenant provisioner leaves: an empty database
    store = SqliteItemStore(path)
    await store.provision()
    await store.provision()
    await store.put(ItemKey("c", "p", "s"), {"v": 1})
    await store.close()
    again = SqliteItemStore(path)
    await again.open()
    assert (await again.get(ItemKey("c", "p", "s"))).attributes == {"v": 1}
    await again.deprovision()
    assert not path.exists()


async def test_sqlite_lock_held_elsewhere_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite3"
    store = SqliteItemStore(path, busy_timeout_ms=100)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Unavailable) as err:
            await store.put(ItemKey("c", "p", "s"), {"v": 1})
        assert err.value.retry_after_seconds == 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.put(ItemKey("c", "p", "s"), {"v": 1})
    await store.close()

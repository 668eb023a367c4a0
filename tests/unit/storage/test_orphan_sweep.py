"""The local object store's orphan sweep: old temp files and unindexed blobs go; young ones (an
upload in flight, a blob just renamed before its index commit) and every indexed blob stay."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from services.storage.adapters.local_fs_objects import LocalFsObjectStore


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_sweep_removes_only_old_orphans(tmp_path: Path) -> None:
    store = LocalFsObjectStore(tmp_path / "tenants", "acme", orphan_age_seconds=600)
    await store.open()
    try:
        info = await store.put("kept", _one(b"k" * 300), content_type="text/plain", user_metadata={})
        root = store.objects_path
        indexed = next(p for p in (root / "blobs").rglob("*") if p.is_file())
        _age(indexed, 7200)  # an old object is still an object
        old_part, young_part = root / "tmp" / "dead.part", root / "tmp" / "live.part"
        old_part.write_bytes(b"p" * 1000)
        young_part.write_bytes(b"p" * 10)
        _age(old_part, 7200)
        (root / "blobs" / "ab").mkdir(exist_ok=True)
        old_blob, young_blob = (
            root / "blobs" / "ab" / ("ab" + "0" * 30),
            root / "blobs" / "ab" / ("ab" + "1" * 30),
        )
        old_blob.write_bytes(b"b" * 2000)
        young_blob.write_bytes(b"b" * 20)
        _age(old_blob, 7200)

        swept = await store.sweep_orphans()

        assert (swept.tmp_files, swept.tmp_bytes, swept.blob_files, swept.blob_bytes) == (1, 1000, 1, 2000)
        assert not old_part.exists() and not old_blob.exists()
        assert young_part.exists() and young_blob.exists() and indexed.exists()
        got, stream = await store.get("kept")
        assert got.size == info.size == 300
        assert b"".join([c async for c in stream]) == b"k" * 300
    finally:
        await store.close()


async def test_open_sweeps_what_a_killed_process_left(tmp_path: Path) -> None:
    store = LocalFsObjectStore(tmp_path / "tenants", "acme", orphan_age_seconds=600)
    await store.open()
    root = store.objects_path
    await store.close()
    part = root / "tmp" / "killed.part"
    part.write_bytes(b"x" * 5000)
    _age(part, 3600)
    (root / "blobs" / "cd").mkdir()
    blob = root / "blobs" / "cd" / ("cd" + "2" * 30)
    blob.write_bytes(b"y" * 700)
    _age(blob, 3600)
    again = LocalFsObjectStore(tmp_path / "tenants", "acme", orphan_age_seconds=600)
    await again.open()
    try:
        assert not part.exists() and not blob.exists()
    finally:
        await again.close()

"""The offboarding export: a tenant's objects and items, read from its bound backends through
the storage adapters, written into one tar.gz in the platform's export location.

Archive layout:
  objects/<key>                the object's bytes (keys are validated by StorageService: no
                               "..", no leading "/"; anything else is refused here too)
  items/<collection>.jsonl     one JSON line per item: collection, partition_key, sort_key,
                               etag, created, updated, attributes (the platform's exact tagged
                               JSON of the attribute map, services/storage/tagged_json.py:
                               {"m": {...}}, ints {"i": ..}, decimals {"d": ..} keep their type)
  manifest.json                tenant, export id, time, and every file above with its size and
                               sha256 (plus each object's content type and user metadata)

The archive is written to a temporary name and renamed when complete, with a sidecar
`<export_id>.json` (size, sha256, counts) written last: a run killed midway leaves no archive,
and a re-run starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import secrets
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.storage.ports import ItemScanner, ItemStore, ObjectStore, StoredItem
from services.storage.registry import AdapterContext, SecretSource, default_registry
from services.storage.tagged_json import attributes_to_document
from services.tenant.provisioning.workflow import StepFailed

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ExportSummary:
    export_id: str
    size_bytes: int
    sha256: str
    object_count: int
    item_count: int


def archive_path(root: Path, tenant_id: str, export_id: str) -> Path:
    return root / tenant_id / f"{export_id}.tar.gz"


def summary_path(root: Path, tenant_id: str, export_id: str) -> Path:
    return root / tenant_id / f"{export_id}.json"


def read_summary(root: Path, tenant_id: str, export_id: str) -> ExportSummary | None:
    try:
        data = json.loads(summary_path(root, tenant_id, export_id).read_text("utf-8"))
    except FileNotFoundError:
        return None
    return ExportSummary(**data)


def object_member(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise StepFailed("an object key cannot be exported as a file name")
    return f"objects/{key}"


def collection_member(collection: str) -> str:
    if not collection or "/" in collection or collection in (".", "..") or "\x00" in collection:
        raise StepFailed("an item collection cannot be exported as a file name")
    return f"items/{collection}.jsonl"


def _item_line(item: StoredItem) -> bytes:
    line = {
        "collection": item.key.collection,
        "partition_key": item.key.partition_key,
        "sort_key": item.key.sort_key,
        "etag": item.etag,
        "created": item.created.isoformat(),
        "updated": item.updated.isoformat(),
        "attributes": attributes_to_document(item.attributes),
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class _Archive:
    """A tar.gz written on a worker thread (tarfile is blocking); members come from spooled files."""

    def __init__(self, path: Path, name: str) -> None:
        self._file = path.open("wb")
        # `name` only labels the gzip header (not the temporary file's name).
        self._tar = tarfile.open(name=name, fileobj=self._file, mode="w:gz")

    async def add(self, name: str, source: IO[bytes], size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o600
        source.seek(0)
        await asyncio.to_thread(self._tar.addfile, info, source)

    async def close(self) -> None:
        def finish() -> None:
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

        await asyncio.to_thread(finish)


class TenantExporter:
    def __init__(self, settings: MeshSettings, secrets: SecretSource, root: Path) -> None:
        self._settings = settings
        self._secrets = secrets
        self._root = root
        self._registry = default_registry()

    @property
    def root(self) -> Path:
        return self._root

    async def export(
        self, tenant_id: str, bindings: tenant_pb2.TenantBindings, export_id: str
    ) -> ExportSummary:
        final = archive_path(self._root, tenant_id, export_id)
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Leftovers of a run that was killed; then a name of this run's own, so two replicas
        # resuming the same export never write into one file.
        for stale in final.parent.glob(f"{final.name}.*.partial"):
            stale.unlink(missing_ok=True)
        partial = final.with_name(f"{final.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
        ctx = AdapterContext(tenant_id=tenant_id, settings=self._settings, secrets=self._secrets)
        archive = _Archive(partial, f"{export_id}.tar")
        manifest: dict[str, Any] = {
            "format": "makoto-export/1",
            "tenant_id": tenant_id,
            "export_id": export_id,
            "objects": [],
            "items": [],
        }
        done = False
        try:
            objects = await self._registry.build_objects(ctx, bindings.object_store)
            try:
                await self._objects(objects, archive, manifest["objects"])
            finally:
                await objects.close()
            items = await self._registry.build_items(ctx, bindings.item_store)
            try:
                await self._items(items, archive, manifest["items"])
            finally:
                await items.close()
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            body = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
            await archive.add("manifest.json", io.BytesIO(body), len(body))
            done = True
        finally:
            await archive.close()
            if not done:
                partial.unlink(missing_ok=True)  # a failed or cancelled run leaves nothing behind
        digest, size = await asyncio.to_thread(_sha256_of, partial)
        await asyncio.to_thread(os.replace, partial, final)
        summary = ExportSummary(
            export_id=export_id,
            size_bytes=size,
            sha256=digest,
            object_count=len(manifest["objects"]),
            item_count=sum(int(c["count"]) for c in manifest["items"]),
        )
        sidecar = summary_path(self._root, tenant_id, export_id)
        tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(asdict(summary)), "utf-8")
        os.replace(tmp, sidecar)
        return summary

    async def _objects(self, store: ObjectStore, archive: _Archive, listed: list[dict[str, Any]]) -> None:
        token = ""
        while True:
            page = await store.list("", 1000, token)
            for meta in page.objects:
                member = object_member(meta.key)
                info, chunks = await store.get(meta.key)
                with tempfile.TemporaryFile() as spool:
                    digest, size = await _spool(chunks, spool)
                    await archive.add(member, spool, size)
                listed.append(
                    {
                        "path": member,
                        "key": info.key,
                        "size": size,
                        "sha256": digest,
                        "content_type": info.content_type,
                        "user_metadata": dict(info.user_metadata),
                    }
                )
            token = page.next_page_token
            if not token:
                return

    async def _items(self, store: ItemStore, archive: _Archive, listed: list[dict[str, Any]]) -> None:
        if not isinstance(store, ItemScanner):
            raise StepFailed("the item store cannot be read whole for the export")
        with contextlib.ExitStack() as stack:
            spools: dict[str, tuple[IO[bytes], Any, list[int]]] = {}
            async for item in store.scan():
                collection = item.key.collection
                if collection not in spools:
                    collection_member(collection)
                    spools[collection] = (
                        stack.enter_context(tempfile.TemporaryFile()),
                        hashlib.sha256(),
                        [0, 0],
                    )
                spool, digest, counts = spools[collection]
                line = _item_line(item)
                spool.write(line)
                digest.update(line)
                counts[0] += len(line)
                counts[1] += 1
            for collection in sorted(spools):
                spool, digest, (size, count) = spools[collection]
                member = collection_member(collection)
                await archive.add(member, spool, size)
                listed.append(
                    {
                        "path": member,
                        "collection": collection,
                        "count": count,
                        "size": size,
                        "sha256": digest.hexdigest(),
                    }
                )

    async def remove(self, tenant_id: str) -> None:
        """Every export of the tenant (erasure)."""

        def remove_all() -> None:
            folder = self._root / tenant_id
            if not folder.is_dir():
                return
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
            folder.rmdir()

        await asyncio.to_thread(remove_all)


async def _spool(chunks: AsyncIterator[bytes], spool: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        await asyncio.to_thread(spool.write, chunk)
    return digest.hexdigest(), size


def _sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def read_chunks(path: Path, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The archive's bytes for a download (file reads on a worker thread)."""
    source = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(source.read, chunk_size):
            yield chunk
    finally:
        await asyncio.to_thread(source.close)

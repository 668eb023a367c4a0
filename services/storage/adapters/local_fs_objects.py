"""Object store on the local filesystem: the embedded default.

On-disk layout under the tenant root (<data_dir>/tenants/<tenant_id>/objects/):

    index.sqlite3            key (UTF-8 BLOB, so listing is byte order) -> version, size,
                             content type, sha256, user metadata, etag, times
    blobs/<vv>/<version>     the bytes of one object version; version = 32 random hex digits,
                             vv its first two (keeps directories small)
    tmp/<random>.part        uploads in progress

Keys never become paths: a key only ever reaches the index, and file names are random hex we
made ourselves. So "a" and "a/b" coexist, and no key ("..", "%2e%2e", very long, odd Unicode)
can name a file outside the root. Symlinks planted inside the root are not followed: every
directory and file is opened relative to a directory descriptor with O_NOFOLLOW, component
by component, from the tenants directory down.

Writes stream into a temp file (bounded memory, sha256 computed on the way), fsync, then one
index transaction renames the file into place and switches the key to the new version; the old
version is unlinked after the commit. A failed or cancelled upload leaves nothing behind and the
previous version intact. Reads open the version file once, so a concurrent overwrite or delete
never tears a download. Leftovers of a crash are swept on open and by `sweep_orphans` (run
periodically by StorageService's reconciler): temp files, and blobs no index row names (renamed
into place by a process killed before its index commit). Only files older than the orphan age
(MAKOTO_STORAGE_ORPHAN_AGE_SECONDS) go: an upload in flight writes its temp file far more often
than that (Envoy bounds a whole request to 300 s), and a blob's index commit follows its rename
at once; the blob check also runs on the index's thread, so this process's own commits never
interleave with it.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.storage.paging import decode_page_token, encode_page_token, prefix_upper_bound, scope_of
from services.storage.ports import (
    ObjectCapabilities,
    ObjectInfo,
    ObjectPage,
    OrphanSweep,
    SignedUrl,
    SignMethod,
)
from services.storage.sqlite_thread import SqliteThread, transaction

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext

T = TypeVar("T")
log = structlog.get_logger("makoto.storage.localfs")

READ_CHUNK = 256 * 1024
# Small client chunks are gathered up to this size before one write in the I/O pool.
WRITE_BUFFER = 1024 * 1024
TMP_MAX_AGE_SECONDS = 24 * 3600

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key          BLOB    PRIMARY KEY,
    version      TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    user_meta    TEXT    NOT NULL,
    created_us   INTEGER NOT NULL,
    updated_us   INTEGER NOT NULL
) WITHOUT ROWID
"""
_COLUMNS = "key, version, size, content_type, sha256, user_meta, created_us, updated_us"
_Row = tuple[bytes, str, int, str, str, str, int, int]

# File I/O runs here, never on the event loop. Shared by all tenants: bounded threads.
_io_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="localfs-io")


def _integrity_error() -> Internal:
    # Someone changed the tree behind our back (e.g. planted a symlink): refuse, say little.
    return Internal("object storage integrity check failed", reason="STORAGE_INTEGRITY")


def _now_us() -> int:
    now = datetime.now(UTC)
    return int(now.timestamp()) * 1_000_000 + now.microsecond


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _info(row: _Row) -> ObjectInfo:
    key, version, size, content_type, sha256, user_meta, created, updated = row
    return ObjectInfo(
        key=key.decode("utf-8"),
        size=size,
        content_type=content_type,
        sha256=sha256,
        etag=version,
        created=_dt(created),
        updated=_dt(updated),
        user_metadata=json.loads(user_meta),
    )


def _open_dir(name: str, dir_fd: int, *, create: bool) -> int:
    """Open one directory below dir_fd without following a symlink (ELOOP/ENOTDIR if it is one)."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _integrity_error() from exc
        raise


class _FdJob:
    """An fd used from the I/O pool. close() may be called at any time (error, cancellation):
    it waits for the operation in flight before closing, so a reused fd number can never be
    written or read by a stale job."""

    def __init__(self, fd: int, on_close: Callable[[], None] | None = None) -> None:
        self.fd = fd
        self._pending: Future[Any] | None = None
        self._on_close = on_close
        self._closed = False
        # An iterator dropped without aclose() still releases its fd when collected.
        self._finalizer = weakref.finalize(self, _close_quietly, fd)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("file is closed")
        job = _io_pool.submit(fn, self.fd, *args)
        self._pending = job
        return await asyncio.wrap_future(job)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending = self._pending
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _f: self._finish())
        else:
            self._finish()

    def _finish(self) -> None:
        self._finalizer()
        if self._on_close is not None:
            self._on_close()


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _write_all(fd: int, data: bytes, digest: Any) -> None:
    digest.update(data)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pread(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


class _RangeReader:
    """Async iterator over [start, end) of an open version file, READ_CHUNK at a time."""

    def __init__(self, job: _FdJob, start: int, end: int) -> None:
        self._job = job
        self._pos = start
        self._end = end

    def __aiter__(self) -> _RangeReader:
        return self

    async def __anext__(self) -> bytes:
        if self._pos >= self._end:
            self._job.close()
            raise StopAsyncIteration
        want = min(READ_CHUNK, self._end - self._pos)
        try:
            data = await self._job.run(_pread, want, self._pos)
        except BaseException:
            self._job.close()
            raise
        if not data:  # the file shrank under us: it was tampered with
            self._job.close()
            raise _integrity_error()
        self._pos += len(data)
        return data

    async def aclose(self) -> None:
        self._job.close()


@dataclass
class _Dirs:
    objects: int
    blobs: int
    tmp: int

    def close(self) -> None:
        for fd in (self.objects, self.blobs, self.tmp):
            _close_quietly(fd)


class LocalFsObjectStore:
    """One tenant's objects under <tenants_dir>/<tenant_id>/objects."""

    def __init__(
        self, tenants_dir: Path, tenant_id: str, orphan_age_seconds: float = TMP_MAX_AGE_SECONDS
    ) -> None:
        if not tenant_id or "/" in tenant_id or tenant_id in (".", "..") or "\x00" in tenant_id:
            raise ValueError("invalid tenant id for a directory name")
        self._tenants_dir = tenants_dir
        self._tenant_id = tenant_id
        self._orphan_age = orphan_age_seconds
        self._dirs: _Dirs | None = None
        self._db: SqliteThread | None = None

    @property
    def capabilities(self) -> ObjectCapabilities:
        return ObjectCapabilities(sign_url=False, if_none_match=True, ranged_read=True)

    @property
    def objects_path(self) -> Path:
        return self._tenants_dir / self._tenant_id / "objects"

    # -- lifecycle --------------------------------------------------------------------

    def _open_dirs(self) -> _Dirs:
        # The tenants directory is the operator's (it may itself be a symlink); everything
        # below it must be real directories.
        self._tenants_dir.mkdir(parents=True, exist_ok=True)
        base = os.open(self._tenants_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opened: list[int] = []
        try:
            tenant = _open_dir(self._tenant_id, base, create=True)
            opened.append(tenant)
            objects = _open_dir("objects", tenant, create=True)
            opened.append(objects)
            blobs = _open_dir("blobs", objects, create=True)
            opened.append(blobs)
            tmp = _open_dir("tmp", objects, create=True)
            opened.append(tmp)
            try:
                index = os.stat("index.sqlite3", dir_fd=objects, follow_symlinks=False)
                if not stat.S_ISREG(index.st_mode):
                    raise _integrity_error()
            except FileNotFoundError:
                pass
            _sweep_tmp(tmp, self._orphan_age)
        except BaseException:
            for fd in opened:
                _close_quietly(fd)
            raise
        finally:
            _close_quietly(base)
        _close_quietly(tenant)
        return _Dirs(objects=objects, blobs=blobs, tmp=tmp)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._dirs = await loop.run_in_executor(_io_pool, self._open_dirs)
        # SQLite opens by path; the checks above made sure no component is a symlink.
        db = SqliteThread(self.objects_path / "index.sqlite3", name="localfs-index")
        await db.open()
        await db.run(lambda conn: conn.execute(_SCHEMA))
        self._db = db
        await self.sweep_orphans()

    async def provision(self) -> None:
        if self._db is None:
            await self.open()

    async def deprovision(self) -> None:
        await self.close()
        path = self.objects_path
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            # rmtree is symlink-safe on Linux (fd based): it never leaves the tree.
            await asyncio.to_thread(shutil.rmtree, path)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()
        dirs, self._dirs = self._dirs, None
        if dirs is not None:
            dirs.close()

    def _ready(self) -> tuple[_Dirs, SqliteThread]:
        if self._dirs is None or self._db is None:
            raise RuntimeError("object store is not open")
        return self._dirs, self._db

    # -- writes -----------------------------------------------------------------------

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        user_metadata: Mapping[str, str],
        if_none_match: bool = False,
    ) -> ObjectInfo:
        dirs, db = self._ready()
        tmp_name = f"{uuid.uuid4().hex}.part"
        fd = os.open(
            tmp_name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dirs.tmp,
        )
        renamed = False

        def drop_tmp() -> None:
            if not renamed:
                try:
                    os.unlink(tmp_name, dir_fd=dirs.tmp)
                except OSError:
                    pass

        job = _FdJob(fd, on_close=drop_tmp)
        try:
            if if_none_match and await self._exists(key):
                # Early answer; the commit below checks again under the write lock.
                raise AlreadyExists("object already exists", reason="OBJECT_EXISTS")
            digest = hashlib.sha256()
            size = 0
            buffer = bytearray()
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    data, buffer = bytes(buffer), bytearray()
                    await job.run(_write_all, data, digest)
                    size += len(data)
            if buffer:
                await job.run(_write_all, bytes(buffer), digest)
                size += len(buffer)
            buffer = bytearray()
            await job.run(os.fsync)
            version = uuid.uuid4().hex
            now = _now_us()
            meta = json.dumps(dict(user_metadata), ensure_ascii=False, sort_keys=True)

            def commit(conn: sqlite3.Connection) -> _Row:
                nonlocal renamed

                def tx() -> tuple[_Row, str | None]:
                    nonlocal renamed
                    current = _select(conn, key)
                    if current is not None and if_none_match:
                        raise AlreadyExists("object already exists", reason="OBJECT_EXISTS")
                    shard = _open_dir(version[:2], dirs.blobs, create=True)
                    try:
                        os.rename(tmp_name, version, src_dir_fd=dirs.tmp, dst_dir_fd=shard)
                        renamed = True
                        try:
                            os.fsync(shard)
                            created = current[6] if current is not None else now
                            row: _Row = (
                                key.encode("utf-8"),
                                version,
                                size,
                                content_type,
                                digest.hexdigest(),
                                meta,
                                created,
                                now,
                            )
                            conn.execute(
                                f"INSERT OR REPLACE INTO objects ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",  # noqa: S608
                                row,
                            )
                        except BaseException:
                            _unlink_quietly(version, shard)
                            raise
                    finally:
                        _close_quietly(shard)
                    return row, (current[1] if current is not None else None)

                try:
                    row, replaced = transaction(conn, tx)
                except BaseException:
                    if renamed:  # COMMIT itself failed after the rename
                        _unlink_version(dirs.blobs, version)
                    raise
                # Here, in the same job, so a caller cancelled after the commit still frees it.
                if replaced is not None:
                    _unlink_version(dirs.blobs, replaced)
                return row

            row = await db.run(commit)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ResourceExhausted(
                    "no space left for objects", reason="STORAGE_FULL", retry_after_seconds=None
                ) from exc
            raise
        finally:
            job.close()
        return _info(row)

    async def _exists(self, key: str) -> bool:
        _, db = self._ready()
        return await db.run(lambda conn: _select(conn, key)) is not None

    async def delete(self, key: str) -> ObjectInfo:
        dirs, db = self._ready()

        def body(conn: sqlite3.Connection) -> _Row:
            def tx() -> _Row:
                current = _select(conn, key)
                if current is None:
                    raise NotFound("object not found", reason="OBJECT_NOT_FOUND")
                conn.execute("DELETE FROM objects WHERE key = ?", (key.encode("utf-8"),))
                return current

            deleted = transaction(conn, tx)
            _unlink_version(dirs.blobs, deleted[1])
            return deleted

        return _info(await db.run(body))

    # -- reads ------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo:
        _, db = self._ready()
        row = await db.run(lambda conn: _select(conn, key))
        if row is None:
            raise NotFound("object not found", reason="OBJECT_NOT_FOUND")
        return _info(row)

    async def get(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        dirs, db = self._ready()
        if start < 0 or (length is not None and length < 0):
            raise InvalidArgument(
                "range must not be negative", field_violations=[("range_start", "negative")]
            )
        loop = asyncio.get_running_loop()
        # An overwrite or delete may unlink the version between the index read and the
        # open; read the index again then (a few times at most).
        for _attempt in range(5):
            row = await db.run(lambda conn: _select(conn, key))
            if row is None:
                raise NotFound("object not found", reason="OBJECT_NOT_FOUND")
            info = _info(row)
            fd = await loop.run_in_executor(_io_pool, _open_version, dirs.blobs, info.etag, info.size)
            if fd is not None:
                break
        else:
            raise NotFound("object not found", reason="OBJECT_NOT_FOUND")
        job = _FdJob(fd)
        if start > info.size:
            job.close()
            raise InvalidArgument(
                f"range_start {start} is past the end of the object ({info.size} bytes)",
                field_violations=[("range_start", "past the end of the object")],
                reason="RANGE_NOT_SATISFIABLE",
            )
        end = info.size if length is None else min(info.size, start + length)
        return info, _RangeReader(job, start, end)

    async def list(self, prefix: str, page_size: int, page_token: str) -> ObjectPage:
        _, db = self._ready()
        scope = scope_of("localfs-list", prefix)
        where = ["key >= ?"]
        low = prefix.encode("utf-8")
        params: list[object] = [low]
        high = prefix_upper_bound(low)
        if high is not None:
            where.append("key < ?")
            params.append(high)
        if page_token:
            where.append("key > ?")
            params.append(decode_page_token(page_token, scope).encode("utf-8"))
        page_size = max(1, page_size)
        params.append(page_size + 1)
        sql = f"SELECT {_COLUMNS} FROM objects WHERE {' AND '.join(where)} ORDER BY key LIMIT ?"  # noqa: S608
        rows: list[_Row] = await db.run(lambda conn: conn.execute(sql, params).fetchall())
        objects = [_info(r) for r in rows[:page_size]]
        token = encode_page_token(objects[-1].key, scope) if len(rows) > page_size else ""
        return ObjectPage(objects=objects, next_page_token=token)

    async def sign_url(self, key: str, method: SignMethod, ttl: timedelta) -> SignedUrl:
        raise FailedPrecondition(
            "the local object store cannot sign URLs (capability sign_url)",
            reason="CAPABILITY_UNSUPPORTED",
            metadata={"capability": "sign_url", "backend": "local"},
        )

    async def sweep_orphans(self, min_age_seconds: float | None = None) -> OrphanSweep:
        """Remove orphan temp files and unindexed blobs older than the orphan age."""
        dirs, db = self._ready()
        age = self._orphan_age if min_age_seconds is None else min_age_seconds

        def sweep(conn: sqlite3.Connection) -> OrphanSweep:
            tmp_files, tmp_bytes = _sweep_tmp(dirs.tmp, age)
            blob_files, blob_bytes = _sweep_blobs(conn, dirs.blobs, age)
            return OrphanSweep(tmp_files, tmp_bytes, blob_files, blob_bytes)

        swept = await db.run(sweep)
        if swept.files:
            log.info("orphans swept", tenant_id=self._tenant_id, **swept.as_log())
        return swept


def _select(conn: sqlite3.Connection, key: str) -> _Row | None:
    row: _Row | None = conn.execute(
        f"SELECT {_COLUMNS} FROM objects WHERE key = ?",  # noqa: S608
        (key.encode("utf-8"),),
    ).fetchone()
    return row


def _open_at(name: str, flags: int, dir_fd: int) -> int | None:
    """os.open below dir_fd; None if it vanished; a symlink or non-directory on the way is an
    integrity error (the store never makes one)."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _integrity_error() from exc
        raise


def _open_version(blobs_fd: int, version: str, size: int) -> int | None:
    """Open a version file read-only without following symlinks; None if it vanished."""
    shard = _open_at(version[:2], _DIR_FLAGS, blobs_fd)
    if shard is None:
        return None
    try:
        fd = _open_at(version, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, shard)
    finally:
        _close_quietly(shard)
    if fd is None:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        _close_quietly(fd)
        raise _integrity_error()
    return fd


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _unlink_version(blobs_fd: int, version: str) -> None:
    try:
        shard = os.open(version[:2], _DIR_FLAGS, dir_fd=blobs_fd)
    except OSError:
        return
    try:
        _unlink_quietly(version, shard)
    finally:
        _close_quietly(shard)


def _sweep_tmp(tmp_fd: int, min_age: float) -> tuple[int, int]:
    """Remove temp files older than min_age (a crashed or killed upload's); (files, bytes)."""
    cutoff = time.time() - min_age
    files = size = 0
    for entry in os.scandir(tmp_fd):
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_mtime < cutoff:
                os.unlink(entry.name, dir_fd=tmp_fd)
                files, size = files + 1, size + info.st_size
        except OSError:
            pass
    return files, size


def _sweep_blobs(conn: sqlite3.Connection, blobs_fd: int, min_age: float) -> tuple[int, int]:
    """Remove version files older than min_age that no index row names; (files, bytes)."""
    cutoff = time.time() - min_age
    indexed = {str(v) for (v,) in conn.execute("SELECT version FROM objects")}
    files = size = 0
    for shard in os.scandir(blobs_fd):
        if not shard.is_dir(follow_symlinks=False):
            continue
        shard_fd = os.open(shard.name, _DIR_FLAGS, dir_fd=blobs_fd)
        try:
            for entry in os.scandir(shard_fd):
                try:
                    info = entry.stat(follow_symlinks=False)
                    if entry.name not in indexed and info.st_mtime < cutoff:
                        os.unlink(entry.name, dir_fd=shard_fd)
                        files, size = files + 1, size + info.st_size
                except OSError:
                    pass
        finally:
            _close_quietly(shard_fd)
    return files, size


async def build(ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> LocalFsObjectStore:
    """Registry factory: objects under <data_dir>/tenants/<tenant_id>/objects."""
    store = LocalFsObjectStore(
        ctx.settings.data_dir / "tenants", ctx.tenant_id, ctx.settings.storage_orphan_age_seconds
    )
    await store.open()
    return store

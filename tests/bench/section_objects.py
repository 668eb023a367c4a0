"""Sections 2 and 3 (issues 2 and 3): objects through StorageService vs raw disk and vs each
backend's SDK used directly, with the storage server's memory."""

from __future__ import annotations

import json
import uuid
from typing import Any

from makoto.storage.v1 import storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2

from services.common.identity import Role
from tests.bench.harness import Config, Environment, bounded, say
from tests.bench.objects import DirectBlob, DirectS3, RawDisk, ServiceObjects, Transfer, timed
from tests.bench.payload import MiB, Payload
from tests.bench.report import Table, mib, rate, ratio
from tests.bench.tenants import create_tenant, store_secret, tenant_id
from tests.support import direct_channel


async def _transfer_pair(
    label: str,
    key: str,
    payload: Payload,
    service: Any,
    baseline: Any,
    pid: int,
) -> tuple[Transfer, Transfer, Transfer, Transfer]:
    size = payload.size
    say(f"{label}: upload {size // MiB} MiB (baseline, then StorageService) ...")
    up_base = await timed(size, lambda: baseline.upload(key, payload))
    up_svc = await timed(size, lambda: service.upload(key, payload), pid)
    say(f"{label}: upload {up_svc.mib_s:.0f} MiB/s via service, {up_base.mib_s:.0f} MiB/s baseline")
    down_base = await timed(size, lambda: baseline.download(key, payload))
    down_svc = await timed(size, lambda: service.download(key, payload), pid)
    say(f"{label}: download {down_svc.mib_s:.0f} MiB/s via service, {down_base.mib_s:.0f} MiB/s baseline")
    await baseline.delete(key)
    await service.delete(key)
    return up_svc, up_base, down_svc, down_base


def rss_cell(t: Transfer) -> str:
    return f"{mib(t.rss_growth)} (peak {mib(t.rss_peak)})"


def _object_rows(
    table: Table, backend: str, size: int, results: tuple[Transfer, ...], base_name: str
) -> None:
    up_svc, up_base, down_svc, down_base = results
    for direction, svc, base in (("upload", up_svc, up_base), ("download", down_svc, down_base)):
        table.add(
            backend,
            f"{size // MiB} MiB",
            direction,
            rate(svc.mib_s),
            f"{rate(base.mib_s)} ({base_name})",
            ratio(svc.mib_s, base.mib_s),
            rss_cell(svc),
        )


async def bench_objects(cfg: Config, env: Environment) -> tuple[Table, Table]:
    mesh = env.mesh
    assert mesh is not None
    pid = mesh.server_pid("storage")
    t2 = Table(
        f"2. A {cfg.transfer_mib} MiB object over gRPC vs raw disk (issue 2)",
        [
            "direction",
            "size",
            "StorageService gRPC MiB/s",
            "raw disk MiB/s",
            "ratio (service / disk)",
            "server RSS growth (peak RSS)",
        ],
    )
    t3 = Table(
        "3. Objects per backend: through StorageService vs the same SDK call direct (issue 3)",
        [
            "backend",
            "object",
            "direction",
            "via StorageService MiB/s",
            "direct MiB/s (baseline)",
            "ratio (service / direct)",
            "server RSS growth (peak RSS)",
        ],
    )
    async with direct_channel(mesh.address("storage")) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)

        # local: section 2 (256 MiB) and the 1 GiB row of section 3, against raw disk
        tid = await create_tenant(mesh, "bench-local")
        service = ServiceObjects(stub, mesh.metadata(Role.MEMBER, tid), tid)
        disk = RawDisk(env.root / "rawdisk")
        warm = Payload(MiB)
        await service.upload("warm-up", warm)  # builds the tenant's adapter before anything is timed

        async def local() -> None:
            payload = Payload(cfg.transfer_mib * MiB)
            _ = payload.sha256
            up_svc, up_base, down_svc, down_base = await _transfer_pair(
                "local", "big/object.bin", payload, service, disk, pid
            )
            for direction, svc, base in (("upload", up_svc, up_base), ("download", down_svc, down_base)):
                t2.add(
                    direction,
                    f"{cfg.transfer_mib} MiB",
                    rate(svc.mib_s),
                    rate(base.mib_s),
                    ratio(svc.mib_s, base.mib_s),
                    rss_cell(svc),
                )
            large = Payload(cfg.local_large_mib * MiB)
            _ = large.sha256
            res = await _transfer_pair("local", "big/large.bin", large, service, disk, pid)
            _object_rows(t3, "local", large.size, res, "raw disk")

        reason = await bounded(local(), cfg.backend_timeout_s)
        if reason:
            t2.add(reason)
            t3.add("local", "", "", reason)

        for backend in ("s3", "azure_blob"):
            if backend in env.missing:
                t3.add(backend, "", "", f"not measured: {env.missing[backend]}")
                continue
            reason = await bounded(
                _cloud_objects(cfg, env, stub, backend, t3, pid),
                cfg.backend_timeout_s * 2,
            )
            if reason:
                t3.add(backend, "", "", reason)
    t2.notes += [
        "Upload: client streaming (header, then 1 MiB chunks) from an in-memory generator; the service "
        "hashes (SHA-256), writes a temp file, fsyncs and renames. Raw disk: the same chunks from the same "
        "generator written to a file on the same disk, then fsync. Download: server streaming (the service "
        "sends 256 KiB messages) vs reading the file back 1 MiB at a time; both come from the page cache.",
        "Server RSS growth: the storage server's RSS sampled with psutil every ~20 ms during the "
        "transfer, peak minus the value just before it started (in brackets the peak itself; the "
        "allocator keeps some memory from earlier transfers, so the baseline creeps up over the run).",
    ]
    t3.notes += [
        f"local: the service vs raw disk as in section 2, with a {cfg.local_large_mib} MiB object.",
        "s3: the service's S3 adapter vs aioboto3 `upload_fileobj` (multipart, 8 MiB parts, 4 in flight: the "
        "adapter's defaults) and `get_object` + `iter_chunks(1 MiB)`, both against the same moto_server. The "
        "adapter also stamps the SHA-256 into the object's metadata with a CopyObject onto itself after "
        "CompleteMultipartUpload, which the baseline does not do.",
        "azure_blob: the service's Blob adapter vs `BlobClient.upload_blob` (staged 8 MiB blocks, "
        "max_concurrency 4) and `download_blob().chunks()` (4 MiB ranged GETs), same Azurite.",
        f"The {cfg.cloud_large_mib} MiB s3 / azure_blob rows move the object through the service only, for "
        "the server's memory with a large object (a baseline run of that size would add minutes). Server "
        "RSS columns as in section 2.",
        "Each tenant is bound to its backend through TenantService (bindings with auto_provision=true); "
        "credentials sit in the mesh's local secret store and the bindings name them as local:// refs.",
    ]
    return t2, t3


async def _cloud_objects(
    cfg: Config,
    env: Environment,
    stub: storage_service_pb2_grpc.StorageServiceStub,
    backend: str,
    table: Table,
    pid: int,
) -> None:
    mesh = env.mesh
    assert mesh is not None
    from tests.contract.emulators import MOTO_CREDENTIALS

    direct: DirectS3 | DirectBlob
    if backend == "s3":
        tid = tenant_id("bench-s3")
        ref = store_secret(mesh, "bench-s3", json.dumps(MOTO_CREDENTIALS), tid)
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=env.moto.endpoint,
            region="us-east-1",
            path_style=True,
            credentials_secret_ref=ref,
            options={"auto_provision": "true"},
        )
        tid = await create_tenant(
            mesh, "bench-s3", tid=tid, cloud=tenant_pb2.CLOUD_PROVIDER_AWS, object_store=binding
        )
        direct = DirectS3(env.moto.endpoint, MOTO_CREDENTIALS, f"bench-direct-{uuid.uuid4().hex[:8]}")
        base_name = "aioboto3"
    else:
        tid = tenant_id("bench-blob")
        ref = store_secret(mesh, "bench-blob", env.azurite.connection_string, tid)
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
            endpoint=env.azurite.account_url,
            credentials_secret_ref=ref,
            options={"auto_provision": "true"},
        )
        tid = await create_tenant(
            mesh, "bench-blob", tid=tid, cloud=tenant_pb2.CLOUD_PROVIDER_AZURE, object_store=binding
        )
        direct = DirectBlob(env.azurite.connection_string, f"bench-direct-{uuid.uuid4().hex[:8]}")
        base_name = "azure-storage-blob"
    service = ServiceObjects(stub, mesh.metadata(Role.MEMBER, tid), tid)
    await direct.open()
    try:
        warm = Payload(MiB)
        await service.upload("warm-up", warm)  # builds the adapter (and the bucket / container)
        await direct.upload("warm-up", warm)
        payload = Payload(cfg.cloud_mib * MiB)
        _ = payload.sha256
        res = await _transfer_pair(backend, "big/object.bin", payload, service, direct, pid)
        _object_rows(table, backend, payload.size, res, base_name)
    finally:
        await direct.close()
    if cfg.cloud_large_mib:
        # The peak-memory figure for a large object: the service path only (no baseline run, to
        # keep the whole benchmark within minutes).
        large = Payload(cfg.cloud_large_mib * MiB)
        _ = large.sha256
        say(f"{backend}: {cfg.cloud_large_mib} MiB through the service only (peak memory) ...")
        key = "big/large.bin"
        up = await timed(large.size, lambda: service.upload(key, large), pid)
        down = await timed(large.size, lambda: service.download(key, large), pid)
        await service.delete(key)
        for direction, t in (("upload", up), ("download", down)):
            table.add(
                backend,
                f"{cfg.cloud_large_mib} MiB",
                direction,
                rate(t.mib_s),
                "not run (service-only peak-memory run)",
                "",
                rss_cell(t),
            )

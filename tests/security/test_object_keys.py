"""Object keys that try to escape the tenant's object root (.., encoded dots, leading or doubled
slashes, NUL, trailing slash, too long) over REST and gRPC. Each is refused with 400 /
INVALID_ARGUMENT, or — over REST — normalized by Envoy into a harmless key of the same tenant
before any service sees it. Afterwards the mesh's data directory is searched byte by byte: the
content of a refused upload is nowhere, the content of an accepted one only in that tenant's
object store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.api import httpbody_pb2
from makoto.storage.v1 import objects_pb2

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import API, create_tenant, object_keys_on_disk, refused, stubs, tenant_root
from tests.support import client_stream

pytestmark = pytest.mark.e2e

INVALID = grpc.StatusCode.INVALID_ARGUMENT

# Raw path after ".../objects/" -> (status, key stored or None). Envoy normalizes the URL first
# (RFC 3986 dot segments, %2e, merged slashes; %2F stays encoded), so some attempts never name a
# key at all (404: no route) and some become a plain key of the same tenant.
REST_CASES: dict[str, tuple[int, str | None]] = {
    "../escape": (404, None),
    "a/../../escape": (404, None),
    "%2e%2e/escape": (404, None),
    "a/%2e%2e/%2e%2e/escape": (404, None),
    "..%2f..%2fescape": (200, "..%2f..%2fescape"),  # %2F is not a separator: one literal segment
    "%2e%2e%2fescape": (200, "..%2fescape"),
    "/leading": (200, "leading"),
    "dou//ble": (200, "dou/ble"),
    "trailing/": (200, "trailing"),
    "nul%00byte": (400, None),
    ".": (400, None),
    "k" * 1025: (400, None),
    "é" * 513: (400, None),  # 1026 bytes
}

# Over gRPC nothing rewrites the key: every one of these reaches the service and is refused.
GRPC_REFUSED = [
    "../escape",
    "../../other-tenant/objects/escape",
    "a/../../escape",
    "..",
    ".",
    "a/..",
    "a/./b",
    "/leading",
    "/etc/passwd",
    "dou//ble",
    "trailing/",
    "nul\x00byte",
    "k" * 1025,
    "é" * 513,
]
# ...and these are plain keys for gRPC (no URL decoding, no backslash separators): stored as is.
GRPC_LITERAL = ["%2e%2e%2fescape", "..\\..\\escape", "...", "a/..b/c"]


def markers_found(root: Path, markers: dict[str, bytes]) -> dict[str, list[Path]]:
    """Which files under root contain each marker (one pass over the files)."""
    found: dict[str, list[Path]] = {name: [] for name in markers}
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for name, marker in markers.items():
            if marker in data:
                found[name].append(path)
    return found


def _upload(tenant: str, key: str, data: bytes) -> list[objects_pb2.UploadObjectRequest]:
    return [
        objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key=key)),
        objects_pb2.UploadObjectRequest(chunk=data),
    ]


async def _drain(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


async def test_escaping_keys_stay_in_the_tenant_root(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "sec-keys")
    blobs = tenant_root(mesh, tenant) / "objects" / "blobs"
    markers: dict[str, bytes] = {}
    expected_keys: set[str] = set()

    async with httpx.AsyncClient(
        base_url=mesh.base_url, headers=mesh.headers(Role.TENANT_ADMIN, tenant), timeout=30
    ) as c:
        for raw, (status, stored) in REST_CASES.items():
            marker = f"rest-{uuid.uuid4().hex}".encode()
            markers[f"rest {raw[:30]!r}"] = marker
            r = await c.put(
                f"{API}/tenants/{tenant}/objects/{raw}",
                content=marker,
                headers={"content-type": "text/plain"},
            )
            assert r.status_code == status, (raw, r.status_code, r.text)
            if status == 400 and r.headers.get("content-type", "").startswith("application/json"):
                assert r.json()["code"] == 3
            # The reading and deleting routes normalize the same way: they reach the same key
            # of the same tenant, or nothing.
            get = await c.get(f"{API}/tenants/{tenant}/objects/{raw}")
            delete = await c.delete(f"{API}/tenants/{tenant}/objects/{raw}")
            if stored is None:
                assert delete.status_code in (400, 404), raw
                if get.status_code == 200:  # ".../objects/." is ".../objects/": the tenant's own list
                    assert "objects" in get.json(), raw
                else:
                    assert get.status_code in (400, 404), raw
            else:
                assert r.json()["key"] == stored
                assert get.status_code == 200 and get.content == marker, raw
                assert delete.status_code == 200, raw

    md = mesh.metadata(Role.TENANT_ADMIN, tenant)
    for via, target in enumerate((mesh.address("storage"), mesh.grpc_target)):
        async with mesh.channel(target) as channel:
            storage = stubs(channel).storage
            for key in GRPC_REFUSED:
                marker = f"grpc-{uuid.uuid4().hex}".encode()
                markers[f"grpc {key[:30]!r} via {target}"] = marker
                content = httpbody_pb2.HttpBody(content_type="text/plain", data=marker)
                err = await refused(
                    storage.PutObjectContent(
                        objects_pb2.PutObjectContentRequest(tenant_id=tenant, key=key, content=content),
                        metadata=md,
                    ),
                    INVALID,
                )
                assert "key" in (err.details() or ""), key
                await refused(client_stream(storage.UploadObject, _upload(tenant, key, marker), md), INVALID)
                await refused(
                    storage.GetObjectMetadata(
                        objects_pb2.GetObjectMetadataRequest(tenant_id=tenant, key=key), metadata=md
                    ),
                    INVALID,
                )
                await refused(
                    _drain(
                        storage.DownloadObject(
                            objects_pb2.DownloadObjectRequest(tenant_id=tenant, key=key), metadata=md
                        )
                    ),
                    INVALID,
                )
                await refused(
                    storage.DeleteObject(
                        objects_pb2.DeleteObjectRequest(tenant_id=tenant, key=key), metadata=md
                    ),
                    INVALID,
                )
                await refused(
                    storage.SignObjectUrl(
                        objects_pb2.SignObjectUrlRequest(
                            tenant_id=tenant, key=key, method=objects_pb2.SIGNED_URL_METHOD_GET
                        ),
                        metadata=md,
                    ),
                    INVALID,
                )
            for literal in GRPC_LITERAL:
                key = f"{literal}-{via}"  # one version per route (an overwrite unlinks the old one)
                marker = f"literal-{uuid.uuid4().hex}".encode()
                markers[f"literal {key!r} via {target}"] = marker
                meta = await client_stream(storage.UploadObject, _upload(tenant, key, marker), md)
                assert meta.key == key
                expected_keys.add(key)

    # The index holds exactly the accepted keys, verbatim.
    assert set(object_keys_on_disk(mesh, tenant)) == expected_keys
    found = markers_found(mesh.home, markers)
    for name, paths in found.items():
        if name.startswith("literal"):
            # An accepted upload lives in exactly one file: a blob of this tenant.
            assert len(paths) == 1 and paths[0].parent.parent == blobs, (name, paths)
        else:
            # Refused (or deleted) uploads left their bytes nowhere.
            assert paths == [], (name, paths)
    # Nothing was created next to the tenant roots or the data directory.
    for stray in ("escape", "etc", "leading", "other-tenant"):
        assert not (mesh.settings.data_dir / stray).exists()
        assert not (mesh.settings.data_dir / "tenants" / stray).exists()
        assert not (tenant_root(mesh, tenant) / stray).exists()

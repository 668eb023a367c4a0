"""What the security tests share: forged tokens, tenants made for one test, stubs on a port, and
ways to prove an attack left no trace (the tenant's own reads, the usage ledger, and the files
on disk under the mesh's data directory)."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.llm.v1 import llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import storage_service_pb2_grpc
from makoto.tenant.v1 import directory_pb2_grpc, tenant_pb2_grpc

from services.common.dev_issuer import mint_token
from services.common.identity import ROLE_CLAIM, TENANT_CLAIM, Role, service_audience
from tests.e2e.conftest import RunningMesh
from tests.support import forge_token

API = "/api/v1"
SERVICES = ("tenant", "storage", "llm", "metering")
BAD_TOKEN_KINDS = (
    "missing",
    "expired",
    "wrong-issuer",
    "foreign-key",
    "alg-none",
    "hs256-public-key",
    "wrong-audience",
    "no-role",
    "garbage",
)


def new_tenant_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_tenant(mesh: RunningMesh, prefix: str, tenant_id: str = "", **fields: Any) -> str:
    tenant = tenant_id or new_tenant_id(prefix)
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        r = c.post(f"{API}/admin/tenants", json={"tenantId": tenant, **fields})
        assert r.status_code == 200, r.text
    return tenant


def bearer_md(token: str | None) -> tuple[tuple[str, str], ...]:
    return () if token is None else (("authorization", f"Bearer {token}"),)


# -- forged tokens ---------------------------------------------------------------------------


def _kid(mesh: RunningMesh) -> str:
    return str(json.loads(mesh.settings.jwks_path.read_text())["keys"][0]["kid"])


def public_pem(mesh: RunningMesh) -> bytes:
    private = serialization.load_pem_private_key(mesh.settings.signing_key_path.read_bytes(), password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(mesh: RunningMesh, role: Role, tenant: str | None, **over: object) -> dict[str, object]:
    now = int(time.time())
    out: dict[str, object] = {
        "iss": mesh.settings.issuer,
        "aud": mesh.settings.audience,
        "sub": "attacker",
        "iat": now,
        "exp": now + 600,
        ROLE_CLAIM: str(role),
    }
    if tenant:
        out[TENANT_CLAIM] = tenant
    out.update(over)
    return out


@functools.cache
def _foreign_key() -> bytes:
    """An RSA key the mesh never trusted (made once: key generation is slow)."""
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return foreign.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def bad_token(mesh: RunningMesh, kind: str, role: Role, tenant: str | None) -> str | None:
    """A token of `kind` that claims `role` (and `tenant`): none of them may be honoured."""
    real_key = mesh.settings.signing_key_path.read_bytes()
    kid = {"kid": _kid(mesh)}
    if kind == "missing":
        return None
    if kind == "expired":
        # Right in every way (a service token addressed to every service) but expired.
        audience = (
            [service_audience(mesh.settings.audience, s) for s in SERVICES] if role == Role.SERVICE else None
        )
        return mint_token(mesh.settings, role=role, tenant_id=tenant, ttl_seconds=-3600, audience=audience)
    if kind == "wrong-issuer":
        return jwt.encode(claims(mesh, role, tenant, iss="https://evil.example"), real_key, "RS256", kid)
    if kind == "foreign-key":
        return jwt.encode(claims(mesh, role, tenant), _foreign_key(), "RS256", kid)
    if kind == "alg-none":
        return forge_token(claims(mesh, role, tenant), alg="none")
    if kind == "hs256-public-key":
        return forge_token(claims(mesh, role, tenant), alg="HS256", key=public_pem(mesh))
    if kind == "wrong-audience":
        return mint_token(mesh.settings, role=role, tenant_id=tenant, audience="someone-else")
    if kind == "no-role":
        return jwt.encode({**claims(mesh, role, tenant), ROLE_CLAIM: "root"}, real_key, "RS256", kid)
    if kind == "garbage":
        return "not.a.jwt"
    raise ValueError(kind)


# -- stubs and expected refusals -------------------------------------------------------------


@dataclass
class Stubs:
    tenants: tenant_pb2_grpc.TenantServiceStub
    directory: directory_pb2_grpc.TenantDirectoryServiceStub
    storage: storage_service_pb2_grpc.StorageServiceStub
    llm: llm_pb2_grpc.LLMServiceStub
    metering: metering_pb2_grpc.MeteringServiceStub


def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(
        tenants=tenant_pb2_grpc.TenantServiceStub(channel),
        directory=directory_pb2_grpc.TenantDirectoryServiceStub(channel),
        storage=storage_service_pb2_grpc.StorageServiceStub(channel),
        llm=llm_pb2_grpc.LLMServiceStub(channel),
        metering=metering_pb2_grpc.MeteringServiceStub(channel),
    )


async def refused(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, (caught.value.code(), caught.value.details())
    return caught.value


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None, err.details()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


# -- proving "no trace" ----------------------------------------------------------------------


def tenant_root(mesh: RunningMesh, tenant: str) -> Path:
    return mesh.settings.data_dir / "tenants" / tenant


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def _rows(path: Path, table: str, query: str) -> list[Any]:
    """Rows of a service's SQLite file, read-only; none while the service has not made it yet
    (the provisioner creates the file, the storage service its tables on first use)."""
    if not path.exists():
        return []
    with _read_only(path) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone():
            return []
        return db.execute(query).fetchall()


def items_on_disk(mesh: RunningMesh, tenant: str) -> dict[tuple[str, str, str], tuple[str, str]]:
    """The tenant's item database as the storage service wrote it: key -> (attributes, etag)."""
    rows = _rows(
        tenant_root(mesh, tenant) / "items.sqlite3",
        "items",
        "SELECT collection, partition_key, sort_key, attributes, etag FROM items",
    )
    return {(c, bytes(p).decode(), bytes(s).decode()): (a, e) for c, p, s, a, e in rows}


def object_keys_on_disk(mesh: RunningMesh, tenant: str) -> dict[str, str]:
    """The tenant's object index as the storage service wrote it: key -> sha256."""
    rows = _rows(
        tenant_root(mesh, tenant) / "objects" / "index.sqlite3", "objects", "SELECT key, sha256 FROM objects"
    )
    return {bytes(k).decode(): sha for k, sha in rows}


def files_containing(root: Path, marker: bytes) -> list[Path]:
    """Every regular file under root whose bytes contain marker."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if marker in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


async def usage_by_method(mesh: RunningMesh, tenant: str, meter: str = "api_calls") -> dict[str, int]:
    """Platform-admin read of the tenant's usage this month, grouped by method."""
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        answer = await metering_pb2_grpc.MeteringServiceStub(channel).QueryUsage(
            metering_pb2.QueryUsageRequest(tenant_id=tenant, meter=meter, group_by=["method"]),
            metadata=mesh.metadata(Role.PLATFORM_ADMIN),
        )
    return {row.group.get("method", ""): row.value for row in answer.rows}


async def wait_for_method(
    mesh: RunningMesh, tenant: str, method: str, timeout: float = 15.0
) -> dict[str, int]:
    """Wait until a sentinel call's api_calls event arrived. Events of one service travel one
    spool in order, so whatever that service recorded before the sentinel has arrived too."""
    deadline = time.monotonic() + timeout
    while True:
        usage = await usage_by_method(mesh, tenant)
        if usage.get(method):
            return usage
        assert time.monotonic() < deadline, f"sentinel {method} never reached metering: {usage}"
        await asyncio.sleep(0.2)

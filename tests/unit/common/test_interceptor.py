"""The shared call pipeline (auth, tenant check, validation, error mapping, metering) on a real
grpc.aio server, with a small servicer defined here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.common.access import policies_for
from services.common.config import MeshSettings
from services.common.dev_issuer import mint_token
from services.common.errors import Aborted, ResourceExhausted
from services.common.identity import Role, current_principal
from services.common.server import Registration, ServerSpec
from services.common.usage import AUDIT
from tests.support import bearer, client_stream, direct_channel, forge_token, running_server


class Recorder:
    """In-memory UsageRecorder: a real implementation of the port, for assertions."""

    def __init__(self) -> None:
        self.audit: list[dict[str, str]] = []
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def record(
        self,
        *,
        meter: str,
        tenant_id: str,
        value: int,
        dimensions: Mapping[str, str] | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> None:
        if meter == AUDIT:  # audit events are kept apart: tests count usage in `events`
            self.audit.append({"tenant": tenant_id, **(dimensions or {})})
            return
        self.events.append({"meter": meter, "tenant": tenant_id, "value": value, **(dimensions or {})})

    async def close(self) -> None:
        return None


class Servicer(storage_service_pb2_grpc.StorageServiceServicer):
    async def GetItem(self, request: items_pb2.GetItemRequest, context: Any) -> items_pb2.Item:
        if request.sort_key == "conflict":
            raise Aborted("etag mismatch")
        if request.sort_key == "busy":
            raise ResourceExhausted("slow down", retry_after_seconds=2.5)
        if request.sort_key == "slow":
            await asyncio.sleep(30)
        if request.sort_key == "bug":
            raise RuntimeError("secret-internal-detail")
        who = current_principal()
        return items_pb2.Item(
            collection=request.collection,
            partition_key=who.tenant_id or "",
            sort_key=request.sort_key,
        )

    async def DownloadObject(
        self, request: objects_pb2.DownloadObjectRequest, context: Any
    ) -> AsyncIterator[objects_pb2.DownloadObjectResponse]:
        yield objects_pb2.DownloadObjectResponse(chunk=b"one")
        if request.key == "slow":
            await asyncio.sleep(30)
        if request.key == "fail-midway":
            raise Aborted("changed while reading")
        yield objects_pb2.DownloadObjectResponse(chunk=b"two")

    async def UploadObject(self, request_iterator: Any, context: Any) -> objects_pb2.ObjectMetadata:
        size = 0
        key = ""
        async for part in request_iterator:
            if part.HasField("header"):
                key = part.header.key
            else:
                size += len(part.chunk)
        return objects_pb2.ObjectMetadata(key=key, size_bytes=size)


@pytest.fixture
async def server(
    settings: MeshSettings,
) -> AsyncIterator[tuple[storage_service_pb2_grpc.StorageServiceStub, Recorder]]:
    recorder = Recorder()

    async def build(s: MeshSettings) -> ServerSpec:
        return ServerSpec(
            name="storage",
            port=s.storage_port,
            registrations=[
                Registration(
                    storage_service_pb2_grpc.add_StorageServiceServicer_to_server,
                    Servicer(),
                    "makoto.storage.v1.StorageService",
                )
            ],
            # The contract's policies but DeleteObject's: a method without one is refused.
            policies={
                path: policy
                for path, policy in policies_for(
                    storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"]
                ).items()
                if not path.endswith("/DeleteObject")
            },
            recorder=recorder,
        )

    async with running_server(build, settings):
        async with direct_channel(settings.address("storage")) as channel:
            yield storage_service_pb2_grpc.StorageServiceStub(channel), recorder


def get(tenant: str = "acme", sort_key: str = "s") -> items_pb2.GetItemRequest:
    return items_pb2.GetItemRequest(tenant_id=tenant, collection="c", partition_key="p", sort_key=sort_key)


async def test_valid_call_sees_principal_and_is_metered(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    item = await stub.GetItem(get(), metadata=bearer(settings, Role.MEMBER, "acme"))
    assert item.partition_key == "acme"
    assert recorder.events == [
        {
            "meter": "api_calls",
            "tenant": "acme",
            "value": 1,
            "service": "storage",
            "method": "GetItem",
            "status": "OK",
        }
    ]


async def test_missing_and_bad_tokens_are_unauthenticated(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    for metadata in [
        (),
        (("authorization", "Bearer not-a-jwt"),),
        (("authorization", "Basic abc"),),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(get(), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert recorder.events == []


async def test_expired_and_forged_tokens(server: Any, settings: MeshSettings, tmp_path: Any) -> None:
    stub, _ = server
    expired = mint_token(settings, role=Role.MEMBER, tenant_id="acme", ttl_seconds=-120)
    claims = {
        "iss": settings.issuer,
        "aud": "makoto",
        "sub": "x",
        "exp": 9999999999,
        "custom:role": "member",
        "custom:tenant_id": "acme",
    }
    none_alg = forge_token(claims, alg="none")
    hs256 = forge_token(claims, alg="HS256", key=settings.jwks_path.read_bytes())
    from tests.support import make_settings

    other = make_settings(tmp_path / "other")  # a different key pair, same issuer name
    foreign = mint_token(other, role=Role.MEMBER, tenant_id="acme")
    wrong_aud = mint_token(settings, role=Role.MEMBER, tenant_id="acme", audience="someone-else")
    for token in [expired, none_alg, hs256, foreign, wrong_aud]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(get(), metadata=(("authorization", f"Bearer {token}"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, token


async def test_other_tenant_and_wrong_role_are_denied(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(get("globex"), metadata=bearer(settings, Role.MEMBER, "acme"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for role in (Role.PLATFORM_ADMIN, Role.SERVICE):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(get("acme"), metadata=bearer(settings, role))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert recorder.events == []
    # Not billed, but audited: under the tenant the request named, with who tried what. The
    # operator refused for its role is in acme's log too (services' calls are plumbing: none).
    refused, operator = recorder.audit
    assert refused["tenant"] == "globex" and refused["outcome"] == "PERMISSION_DENIED"
    assert refused["method"] == "makoto.storage.v1.StorageService.GetItem" and refused["role"] == "member"
    assert refused["resource"] == "collection=c,partition_key=p,sort_key=s"
    assert (operator["tenant"], operator["role"], operator["outcome"]) == (
        "acme",
        "platform-admin",
        "PERMISSION_DENIED",
    )
    assert operator["resource"] == "collection=c,partition_key=p,sort_key=s"


async def test_validation_gives_field_violations(server: Any, settings: MeshSettings) -> None:
    stub, _ = server
    request = items_pb2.GetItemRequest(tenant_id="acme", collection="9bad", partition_key="", sort_key="s")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(request, metadata=bearer(settings, Role.MEMBER, "acme"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    assert status is not None
    fields = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = {v.field for v in bad.field_violations}
    assert fields == {"collection", "partition_key"}


async def test_domain_errors_map_to_codes_with_details(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    md = bearer(settings, Role.MEMBER, "acme")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(get(sort_key="conflict"), metadata=md)
    assert err.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(get(sort_key="busy"), metadata=md)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err.value)
    assert status is not None
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 2500
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(get(sort_key="bug"), metadata=md)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in (err.value.details() or "")
    assert [e["status"] for e in recorder.events] == ["ABORTED", "RESOURCE_EXHAUSTED", "INTERNAL"]


async def test_server_stream_error_after_first_message(server: Any, settings: MeshSettings) -> None:
    stub, _ = server
    md = bearer(settings, Role.MEMBER, "acme")
    got = [
        m.chunk
        async for m in stub.DownloadObject(
            objects_pb2.DownloadObjectRequest(tenant_id="acme", key="ok"), metadata=md
        )
    ]
    assert got == [b"one", b"two"]
    call = stub.DownloadObject(
        objects_pb2.DownloadObjectRequest(tenant_id="acme", key="fail-midway"), metadata=md
    )
    chunks = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for m in call:
            chunks.append(m.chunk)
    assert chunks == [b"one"]
    assert err.value.code() == grpc.StatusCode.ABORTED


async def test_client_stream_checks_tenant_in_header(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    md = bearer(settings, Role.MEMBER, "acme")

    def parts(tenant: str) -> list[objects_pb2.UploadObjectRequest]:
        return [
            objects_pb2.UploadObjectRequest(
                header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key="k/v.txt")
            ),
            objects_pb2.UploadObjectRequest(chunk=b"abc"),
            objects_pb2.UploadObjectRequest(chunk=b"de"),
        ]

    meta = await client_stream(stub.UploadObject, parts("acme"), md)
    assert (meta.key, meta.size_bytes) == ("k/v.txt", 5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client_stream(stub.UploadObject, parts("globex"), md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    bad_key = [
        objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id="acme", key="a/../b"))
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client_stream(stub.UploadObject, bad_key, md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [e["status"] for e in recorder.events] == ["OK", "INVALID_ARGUMENT"]


async def test_method_without_policy_is_refused(server: Any, settings: MeshSettings) -> None:
    stub, _ = server
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id="acme", key="x"),
            metadata=bearer(settings, Role.MEMBER, "acme"),
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_cached_token_still_expires(settings: MeshSettings) -> None:
    """The verified-token cache never outlives the token (exp + the decode leeway)."""
    from services.common import jwt_verify

    verifier = jwt_verify.JwtVerifier(settings.jwt_providers())
    token = mint_token(settings, role=Role.MEMBER, tenant_id="acme", ttl_seconds=-25)  # within leeway
    assert verifier.verify(token).tenant_id == "acme"
    assert verifier.verify(token).tenant_id == "acme"  # cache hit
    expires, _ = verifier._verified[token]
    verifier._verified[token] = (expires - 10, verifier._verified[token][1])  # clock moves past exp+leeway
    import time

    assert expires - 10 < time.time() + 10
    verifier._verified[token] = (time.time() - 1, verifier._verified[token][1])
    from services.common.errors import Unauthenticated

    with pytest.raises(Unauthenticated):
        # re-verified from scratch: now really expired once leeway is gone
        jwt_verify.LEEWAY_SECONDS = 0
        try:
            verifier.verify(token)
        finally:
            jwt_verify.LEEWAY_SECONDS = 30

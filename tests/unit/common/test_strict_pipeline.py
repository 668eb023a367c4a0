"""The service pipeline as strict as the edge (issue 9): ambiguous tenant encodings, the exact
`Bearer <jwt>` header, the decided tenant in a trailer (for Envoy's access log), features per
method, and reflection behind a token outside development."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.common.access import policies_for
from services.common.config import MeshSettings
from services.common.dev_issuer import mint_token
from services.common.identity import TENANT_HEADER, Role
from services.common.server import Registration, ServerSpec
from services.common.tenant_wire import canonical, field_numbers, tenant_field_problem
from tests.support import bearer, client_stream, direct_channel, running_server
from tests.unit.common.test_interceptor import Recorder, Servicer

GET_ITEM = "/makoto.storage.v1.StorageService/GetItem"
UPLOAD = "/makoto.storage.v1.StorageService/UploadObject"
STORAGE = storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"]


def _get(tenant: str) -> bytes:
    return items_pb2.GetItemRequest(
        tenant_id=tenant, collection="c", partition_key="p", sort_key="s"
    ).SerializeToString()


def _header(tenant: str) -> bytes:
    return objects_pb2.UploadObjectRequest(
        header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key="k")
    ).SerializeToString()


# -- the wire scan ---------------------------------------------------------------------------


def test_wire_scan_finds_wrong_wire_types_and_disagreeing_occurrences() -> None:
    get = field_numbers(STORAGE.methods_by_name["GetItem"].input_type, "tenant_id")
    upload = field_numbers(STORAGE.methods_by_name["UploadObject"].input_type, "header.tenant_id")
    assert get == (1,) and upload == (1, 1)
    assert tenant_field_problem(_get("acme"), get) is None
    assert tenant_field_problem(b"", get) is None
    # fixed64 (0x09), varint (0x08), fixed32 (0x0d) and a group (0x0b ... 0x0c) on field 1
    assert "wire type 1" in str(tenant_field_problem(b"\x09\x04acme\0\0\0" + _get("globex"), get))
    assert "wire type 0" in str(tenant_field_problem(b"\x08\x01" + _get("acme"), get))
    assert "wire type 5" in str(tenant_field_problem(b"\x0d\0\0\0\0" + _get("acme"), get))
    assert "wire type 3" in str(tenant_field_problem(b"\x0b\x0c" + _get("acme"), get))
    # the same field twice: harmless when equal (Envoy's transcoder does it), refused when not
    assert tenant_field_problem(_get("acme") + _get("acme"), get) is None
    assert "2 different tenants" in str(tenant_field_problem(_get("acme") + _get("globex"), get))
    # two headers (acme, then globex) merged by protobuf; a wrong wire type inside the header
    assert "different tenants" in str(tenant_field_problem(_header("acme") + _header("globex"), upload))
    assert tenant_field_problem(_header("acme") + _header("acme"), upload) is None
    inner = b"\x09\x04acme\0\0\0"
    assert "wire type 1" in str(tenant_field_problem(b"\x0a" + bytes([len(inner)]) + inner, upload))
    # a field inside a group is not the message's own
    assert tenant_field_problem(b"\x7b\x0a\x04evil\x7c" + _get("acme"), get) is None
    # bytes protobuf itself rejects are left to the parser
    assert tenant_field_problem(b"\x0a\x7facme", get) is None


# -- the pipeline ----------------------------------------------------------------------------


@pytest.fixture
async def channel(settings: MeshSettings) -> AsyncIterator[grpc.aio.Channel]:
    async with _serve(settings) as ch:
        yield ch


def _serve(settings: MeshSettings) -> Any:
    import contextlib

    policies = policies_for(STORAGE)
    # GetItem as if it used a feature (the LLM RPCs do): the check is generic.
    policies[GET_ITEM] = dataclasses.replace(policies[GET_ITEM], feature="chat")

    async def build(s: MeshSettings) -> ServerSpec:
        return ServerSpec(
            name="storage",
            port=s.storage_port,
            registrations=[
                Registration(
                    storage_service_pb2_grpc.add_StorageServiceServicer_to_server,
                    Servicer(),
                    STORAGE.full_name,
                )
            ],
            policies=policies,
            recorder=Recorder(),
        )

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[grpc.aio.Channel]:
        async with running_server(build, settings):
            async with direct_channel(settings.address("storage")) as ch:
                yield ch

    return serving()


async def _call(ch: grpc.aio.Channel, body: bytes, md: Any) -> tuple[grpc.StatusCode, Any]:
    call = ch.unary_unary(GET_ITEM)(body, metadata=md, timeout=10)
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code(), err.trailing_metadata()
    return grpc.StatusCode.OK, await call.trailing_metadata()


async def test_ambiguous_tenant_is_invalid_argument(
    channel: grpc.aio.Channel, settings: MeshSettings
) -> None:
    md = bearer(settings, Role.MEMBER, "acme")
    code, _ = await _call(channel, b"\x09\x04acme\0\0\0" + _get("acme"), md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await _call(channel, _get("acme") + _get("globex"), md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await _call(channel, _get("acme") + _get("acme"), md)
    assert code == grpc.StatusCode.OK
    upload = channel.stream_unary(UPLOAD)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client_stream(upload, [_header("acme") + _header("globex")], md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_decided_tenant_is_a_trailer_only_when_allowed(
    channel: grpc.aio.Channel, settings: MeshSettings
) -> None:
    code, trailers = await _call(channel, _get("acme"), bearer(settings, Role.MEMBER, "acme"))
    assert code == grpc.StatusCode.OK
    assert (TENANT_HEADER, "acme") in tuple(trailers)
    code, trailers = await _call(channel, _get("globex"), bearer(settings, Role.MEMBER, "acme"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert TENANT_HEADER not in dict(trailers or ())


async def test_authorization_must_be_exactly_one_bearer(
    channel: grpc.aio.Channel, settings: MeshSettings
) -> None:
    token = mint_token(settings, role=Role.MEMBER, tenant_id="acme")
    for md in (
        (("authorization", f"Basic x Bearer {token}"),),
        (("authorization", f"bearer {token}"),),
        (("authorization", f"Bearer {token} "),),
        (("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")),
    ):
        code, _ = await _call(channel, _get("acme"), md)
        assert code == grpc.StatusCode.UNAUTHENTICATED, md[0][1][:20]
    code, _ = await _call(channel, _get("acme"), (("authorization", f"Bearer {token}"),))
    assert code == grpc.StatusCode.OK


async def test_features_claim(channel: grpc.aio.Channel, settings: MeshSettings) -> None:
    def md(features: list[str] | None) -> Any:
        token = mint_token(settings, role=Role.MEMBER, tenant_id="acme", features=features)
        return (("authorization", f"Bearer {token}"),)

    call = channel.unary_unary(GET_ITEM)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(_get("acme"), metadata=md(["embeddings"]), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert b"FEATURE_NOT_ENABLED" in dict(err.value.trailing_metadata())["grpc-status-details-bin"]
    with pytest.raises(grpc.aio.AioRpcError):
        await call(_get("acme"), metadata=md([]), timeout=10)
    assert (await _call(channel, _get("acme"), md(["chat"])))[0] == grpc.StatusCode.OK
    assert (await _call(channel, _get("acme"), md(None)))[0] == grpc.StatusCode.OK


async def _list_services(ch: grpc.aio.Channel, md: Any) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=md
    )
    names: list[str] = []
    async for reply in call:
        names += [s.name for s in reply.list_services_response.service]
    return names


async def test_reflection_needs_a_token_outside_development(settings: MeshSettings) -> None:
    production = settings.model_copy(update={"profile": "production"})
    async with _serve(production) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _list_services(ch, ())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError):
            await _list_services(ch, (("authorization", "Bearer not.a.jwt"),))
        assert STORAGE.full_name in await _list_services(ch, bearer(settings, Role.MEMBER, "acme"))
    async with _serve(settings) as ch:  # development (what `make up` runs): open
        assert settings.profile == "development"
        assert STORAGE.full_name in await _list_services(ch, ())


async def test_a_tenant_id_that_is_no_metadata_value_states_none(
    channel: grpc.aio.Channel, settings: MeshSettings
) -> None:
    # Refused by validation (400), never a 500 from writing it into a trailer.
    tenant = "\u00ec\u00a3x"
    token = mint_token(settings, role=Role.MEMBER, tenant_id=tenant)
    code, trailers = await _call(channel, _get(tenant), (("authorization", f"Bearer {token}"),))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert TENANT_HEADER not in dict(trailers or ())


def test_fast_path_agrees_with_the_exact_scan() -> None:
    """canonical() clears well-formed requests in C and must refuse exactly what the scan does."""
    get_numbers, upload_numbers = (1,), (1, 1)
    cases = [
        (items_pb2.GetItemRequest, get_numbers, ("tenant_id",), _get("acme")),
        (items_pb2.GetItemRequest, get_numbers, ("tenant_id",), b"\x09\x04acme\0\0\0" + _get("globex")),
        (items_pb2.GetItemRequest, get_numbers, ("tenant_id",), b"\x08\x01" + _get("acme")),
        (items_pb2.GetItemRequest, get_numbers, ("tenant_id",), _get("acme") + _get("acme")),
        (items_pb2.GetItemRequest, get_numbers, ("tenant_id",), _get("acme") + _get("globex")),
        (objects_pb2.UploadObjectRequest, upload_numbers, ("header", "tenant_id"), _header("acme")),
        (
            objects_pb2.UploadObjectRequest,
            upload_numbers,
            ("header", "tenant_id"),
            _header("acme") + _header("globex"),
        ),
        (
            objects_pb2.UploadObjectRequest,
            upload_numbers,
            ("header", "tenant_id"),
            b"\x0a\x09\x09\x04acme\0\0\0",
        ),
        (objects_pb2.UploadObjectRequest, upload_numbers, ("header", "tenant_id"), b"\x12\x03abc"),
    ]
    verdicts = []
    for cls, numbers, names, raw in cases:
        message = cls.FromString(raw)
        fast = canonical(message, raw, numbers, names)
        assert (fast is None) == (tenant_field_problem(raw, numbers) is None), raw
        verdicts.append(fast is None)
    assert verdicts == [True, False, False, True, False, True, False, False, True]

"""Every answer Envoy makes itself speaks the mesh's one error language: google.rpc.Status JSON
with ErrorInfo (domain makoto), RetryInfo where retrying helps and BadRequest naming the field for
REST; a proper grpc-status (and plain grpc-message) for gRPC callers. Parsed, not grepped."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from tests.e2e.envoy_spy import SpyMesh
from tests.support import bearer

pytestmark = pytest.mark.e2e

ITEM = "/api/v1/tenants/acme/collections/c/partitions/p/items/k"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def status_of(r: httpx.Response, http: int, code: int, reason: str, *, retry: bool = False) -> dict[str, Any]:
    """Asserts r is google.rpc.Status JSON with these codes; returns the body."""
    assert r.status_code == http, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code and isinstance(body["message"], str) and body["message"], body
    by_type = {d["@type"]: d for d in body["details"]}
    info = by_type[ERROR_INFO]
    assert info["reason"] == reason and info["domain"] == "makoto", info
    assert (RETRY_INFO in by_type) is retry, body
    if retry:
        assert by_type[RETRY_INFO]["retryDelay"] == "1s"
    return dict(body)


def _member(spy: SpyMesh, tenant: str = "acme") -> dict[str, str]:
    return dict(bearer(spy.settings, Role.MEMBER, tenant))


async def test_no_route_is_404_status_json(envoy_spy: SpyMesh) -> None:
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=_member(envoy_spy)) as c:
        status_of(await c.get("/api/v1/nope"), 404, 5, "NO_ROUTE")
        status_of(await c.delete("/elsewhere"), 404, 5, "NO_ROUTE")


async def test_jwt_refusals_are_401_status_json(envoy_spy: SpyMesh) -> None:
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as c:
        body = status_of(await c.get(ITEM), 401, 16, "UNAUTHENTICATED")
        assert body["message"] == "Jwt is missing"
        status_of(
            await c.get(ITEM, headers={"authorization": "Bearer not.a.jwt"}), 401, 16, "UNAUTHENTICATED"
        )


async def test_rbac_refusal_is_403_status_json(envoy_spy: SpyMesh) -> None:
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=_member(envoy_spy, "globex")) as c:
        status_of(await c.get(ITEM), 403, 7, "PERMISSION_DENIED")
        # A JSON body, too (the transcoder had already turned it into gRPC when RBAC refused).
        r = await c.put(ITEM, json={"attributes": {"a": {"stringValue": "x"}}})
        status_of(r, 403, 7, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # A wrong JSON type for an attribute value: Envoy's text names the field.
        (b'{"attributes": {"a": {"intValue": {"x": 1}}}}', "item.attributes[0].value"),
        (b'{"attributes": {"a": {"stringValue": [1]}}}', "item.attributes[0].value"),
        (b'{"attributes": "nope"}', "item.attributes"),
        # Not JSON at all: no field to name.
        (b"{nope", ""),
    ],
)
async def test_transcoder_parse_errors_are_400_bad_request(
    envoy_spy: SpyMesh, body: bytes, field: str
) -> None:
    headers = {**_member(envoy_spy), "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=headers) as c:
        status = status_of(await c.put(ITEM, content=body), 400, 3, "INVALID_REQUEST")
    [bad] = [d for d in status["details"] if d["@type"] == BAD_REQUEST]
    [violation] = bad["fieldViolations"]
    assert violation["field"] == field, violation
    assert violation["description"] == status["message"]


async def test_unknown_query_parameter_is_400_naming_it(envoy_spy: SpyMesh) -> None:
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=_member(envoy_spy)) as c:
        status = status_of(await c.get(ITEM, params={"bogus": "1"}), 400, 3, "INVALID_REQUEST")
    [bad] = [d for d in status["details"] if d["@type"] == BAD_REQUEST]
    assert bad["fieldViolations"][0]["field"] == "bogus"


async def test_oversized_body_is_413_status_json(envoy_spy: SpyMesh) -> None:
    big = b'{"attributes":{"a":{"stringValue":"' + b"x" * (9 * 1024 * 1024) + b'"}}}'
    headers = {**_member(envoy_spy), "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=headers, timeout=30) as c:
        status_of(await c.put(ITEM, content=big), 413, 3, "REQUEST_TOO_LARGE")


async def test_upstream_down_is_503_with_retry_info_and_unavailable_over_grpc(envoy_spy: SpyMesh) -> None:
    await envoy_spy.stop_service("metering")
    try:
        await envoy_spy.wait_healthz(503, timeout=10)
        async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=_member(envoy_spy)) as c:
            r = await c.get("/api/v1/tenants/acme/usage", params={"meter": "api_calls"})
            status_of(r, 503, 14, "UPSTREAM_UNAVAILABLE", retry=True)
            # /healthz itself is not rewritten into an error document while healthy, and says
            # 503 in the same language while not.
            status_of(await c.get("/healthz"), 503, 14, "NOT_READY", retry=True)
            status_of(await c.get("/healthz/metering"), 503, 14, "NOT_READY", retry=True)
    finally:
        await envoy_spy.start_service("metering")
    await envoy_spy.wait_healthz(200, timeout=10)
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as c:
        r = await c.get("/healthz")
        assert r.status_code == 200 and "code" not in r.text


async def test_grpc_callers_get_grpc_status_not_json(envoy_spy: SpyMesh) -> None:
    request = items_pb2.GetItemRequest(tenant_id="acme", collection="c", partition_key="p", sort_key="k")
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        for metadata, code, message in [
            ((), grpc.StatusCode.UNAUTHENTICATED, "Jwt is missing"),
            (
                bearer(envoy_spy.settings, Role.MEMBER, "globex"),
                grpc.StatusCode.PERMISSION_DENIED,
                "RBAC: access denied",
            ),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetItem(request, metadata=metadata, timeout=10)
            assert err.value.code() == code
            assert err.value.details() == message
        unknown = channel.unary_unary("/makoto.storage.v1.StorageService/NoSuchMethod")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unknown(b"", metadata=_member(envoy_spy).items(), timeout=10)
        assert err.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED)
        assert not (err.value.details() or "").startswith("{")

"""GET /openapi.json through Envoy serves docs/openapi.json without a token, and the document's
query parameters are the ones Envoy's transcoder accepts (it rejects unknown ones with 400)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.apidoc.openapi import OPENAPI_PATH
from services.common.identity import Role
from tests.e2e.conftest import RunningMesh

pytestmark = pytest.mark.e2e


async def test_the_document_is_served_publicly(mesh: RunningMesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10) as c:
        r = await c.get("/openapi.json")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.content == OPENAPI_PATH.read_bytes()
        # Only GET is public; anything else on that path needs a token like every other path.
        assert (await c.post("/openapi.json")).status_code == 401


async def test_documented_query_parameters_are_accepted_and_others_refused(mesh: RunningMesh) -> None:
    doc = httpx.get(f"{mesh.base_url}/openapi.json", timeout=10).json()
    tenant = f"oa-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10) as c:
        r = await c.post(
            "/api/v1/admin/tenants", json={"tenantId": tenant}, headers=mesh.headers(Role.PLATFORM_ADMIN)
        )
        assert r.status_code == 200, r.text
        headers = mesh.headers(Role.TENANT_ADMIN, tenant)
        list_objects = doc["paths"]["/api/v1/tenants/{tenant_id}/objects"]["get"]
        names = [p["name"] for p in list_objects["parameters"] if p["in"] == "query"]
        values = {"prefix": "a/", "page_size": "10", "page_token": ""}
        r = await c.get(
            f"/api/v1/tenants/{tenant}/objects", params={n: values[n] for n in names}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert set(r.json()) <= set(
            doc["components"]["schemas"]["makoto.storage.v1.ListObjectsResponse"]["properties"]
        )
        r = await c.get(f"/api/v1/tenants/{tenant}/objects", params={"pageSizee": "1"}, headers=headers)
        assert r.status_code == 400
        query = doc["paths"][
            "/api/v1/tenants/{tenant_id}/collections/{collection}/partitions/{partition_key}/items"
        ]["get"]
        params = {
            p["name"]: "x"
            for p in query["parameters"]
            if p["in"] == "query" and p["schema"].get("type") == "string"
        }
        params["page_size"] = "5"
        params["page_token"] = ""
        params.pop("sort_key_equals", None)  # one of several mutually exclusive conditions
        params.pop("sort_key_prefix", None)
        params["sort_key_range.end"] = "y"
        r = await c.get(
            f"/api/v1/tenants/{tenant}/collections/c/partitions/p/items", params=params, headers=headers
        )
        # Accepted by the transcoder (a 400 from Envoy would be text/plain without a Status).
        assert r.status_code == 200, r.text

"""The newcomer's journey over REST through Envoy, against the real mesh (`makoto up`):
create a tenant, objects, items, chat (plain and SSE), then usage and a priced invoice whose
API-call count is exactly the number of calls this test made. Plus the HTTP error mapping
(DESIGN 5b) with google.rpc.Status bodies.

Which calls are metered (services/common/interceptor.py): every RPC that reaches a service and
passes its tenant check records one api_calls event for that tenant, whatever its outcome
(OK, NOT_FOUND, ALREADY_EXISTS, ...), including platform-admin calls that name the tenant
(CreateTenant, SuspendTenant, GetTenant, GetInvoice) -- those with `payer=platform`, which the
invoice leaves out. Calls Envoy refuses (401, 403 from RBAC,
413, unknown route or parameter) never reach a service and are not metered. Events from
tenant/storage/llm travel through a spool (asynchronous); MeteringService's own calls
(QueryUsage, GetInvoice) are stored before their response is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import httpx
import pytest

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh

pytestmark = pytest.mark.e2e

API = "/api/v1"
CONVERGE_TIMEOUT_S = 15.0
MONEY = Decimal("0.000001")
PRICES = {
    "api_calls": ("0.0001", "call"),
    "storage_bytes": ("0.023", "GB-month"),
    "llm_prompt_tokens": ("0.00002", "token"),
    "llm_completion_tokens": ("0.00002", "token"),
}


def new_tenant_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def assert_status(
    r: httpx.Response,
    http: int,
    code: int,
    *,
    reason: str | None = None,
    fields: set[str] | None = None,
) -> dict[str, Any]:
    """The response is a google.rpc.Status JSON with ErrorInfo (domain makoto) and, when fields
    are given, a BadRequest naming exactly those fields."""
    assert r.status_code == http, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert body["message"], body
    details = {d["@type"].rsplit("/", 1)[-1]: d for d in body.get("details", [])}
    info = details["google.rpc.ErrorInfo"]
    assert info["domain"] == "makoto", body
    if reason is not None:
        assert info["reason"] == reason, body
    if fields is not None:
        violations = details["google.rpc.BadRequest"]["fieldViolations"]
        assert {v["field"] for v in violations} == fields, body
        assert all(v["description"] for v in violations), body
    return body


class Journey:
    """An httpx client through Envoy that counts, per RPC, the calls that reach a service."""

    def __init__(self, client: httpx.AsyncClient, mesh: RunningMesh, tenant: str) -> None:
        self.client = client
        self.mesh = mesh
        self.tenant = tenant
        self.calls: Counter[str] = Counter()
        # Operator calls are recorded under the tenant but paid by the platform (not invoiced).
        self.operator_calls = 0
        self.admin = mesh.headers(Role.PLATFORM_ADMIN)
        self.user = mesh.headers(Role.TENANT_ADMIN, tenant)

    @property
    def root(self) -> str:
        return f"{API}/tenants/{self.tenant}"

    async def call(
        self, rpc: str, method: str, url: str, *, admin: bool = False, **kwargs: Any
    ) -> httpx.Response:
        headers = {**(self.admin if admin else self.user), **kwargs.pop("headers", {})}
        r = await self.client.request(method, url, headers=headers, **kwargs)
        self.calls[rpc] += 1
        self.operator_calls += admin
        return r

    async def sse(self, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with self.client.stream("POST", url, json=body, headers=self.user) as r:
            assert r.status_code == 200, await r.aread()
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                else:
                    assert line == "", f"not an SSE line: {line!r}"
        self.calls["StreamChatCompletion"] += 1
        return events


def check_invoice_arithmetic(invoice: dict[str, Any], tenant: str) -> dict[str, dict[str, str]]:
    """Lines of the default plan, each amount = quantity x unit price rounded half-even to 6
    places, total = the exact Decimal sum of the lines; all as plain decimal strings."""
    assert invoice["tenantId"] == tenant
    assert invoice["month"] == this_month()
    assert invoice["currency"] == "USD"
    assert invoice["pricePlanId"] == "default"
    assert invoice["final"] is False  # the month is still running
    lines = {line["meter"]: line for line in invoice["lineItems"]}
    assert [line["meter"] for line in invoice["lineItems"]] == list(PRICES)
    total = Decimal(0)
    for meter, (unit_price, unit) in PRICES.items():
        line = lines[meter]
        assert line["unitPrice"] == unit_price
        assert line["unit"] == unit
        assert re.fullmatch(r"\d+\.\d{6}", line["amount"]), line
        quantity = Decimal(line["quantity"])
        expected = (quantity * Decimal(unit_price)).quantize(MONEY, rounding=ROUND_HALF_EVEN)
        assert Decimal(line["amount"]) == expected, line
        total += Decimal(line["amount"])
    assert re.fullmatch(r"\d+\.\d{6}", invoice["total"]), invoice["total"]
    assert Decimal(invoice["total"]) == total
    assert invoice["total"] == format(total, "f")
    assert re.fullmatch(r"\d+\.\d{9}", lines["storage_bytes"]["quantity"]), lines["storage_bytes"]
    return lines


async def test_newcomer_journey_over_rest(mesh: RunningMesh) -> None:
    tenant = new_tenant_id("rest")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as client:
        j = Journey(client, mesh, tenant)

        # -- a platform-admin creates the tenant; its admin reads it back -------------------
        r = await j.call(
            "CreateTenant",
            "POST",
            f"{API}/admin/tenants",
            admin=True,
            json={"tenantId": tenant, "displayName": "Newcomer Inc."},
        )
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["tenantId"] == tenant
        assert created["state"] == "TENANT_STATE_ACTIVE"
        assert created["bindings"]["objectStore"]["backend"] == "OBJECT_BACKEND_LOCAL"
        assert created["bindings"]["itemStore"]["backend"] == "ITEM_BACKEND_SQLITE"
        assert created["bindings"]["llm"]["chatModel"] == "sim-chat"
        r = await j.call("GetTenant", "GET", j.root)
        assert r.status_code == 200
        assert r.json()["displayName"] == "Newcomer Inc."
        assert r.json()["etag"] == created["etag"]

        # -- objects: exact bytes and content type; list by prefix with pages --------------
        objects = {
            "docs/a.txt": ("text/plain; charset=utf-8", "héllo, makoto\n".encode()),
            "docs/b.bin": ("application/octet-stream", os.urandom(300 * 1024 + 17)),
            "docs/c.json": ("application/json", b'{"n": 1}'),
            "img/z.png": ("image/png", b"\x89PNG\r\n\x1a\n" + os.urandom(64)),
        }
        for key, (ctype, data) in objects.items():
            r = await j.call(
                "PutObjectContent",
                "PUT",
                f"{j.root}/objects/{key}",
                content=data,
                headers={"content-type": ctype},
            )
            assert r.status_code == 200, r.text
            meta = r.json()
            assert meta["key"] == key
            assert meta["sizeBytes"] == str(len(data))
            assert meta["contentType"] == ctype
            assert meta["sha256"] == hashlib.sha256(data).hexdigest()
        for key, (ctype, data) in objects.items():
            r = await j.call("GetObjectContent", "GET", f"{j.root}/objects/{key}")
            assert r.status_code == 200
            assert r.headers["content-type"] == ctype
            assert r.content == data
        r = await j.call("ListObjects", "GET", f"{j.root}/objects", params={"prefix": "docs/", "pageSize": 2})
        assert r.status_code == 200, r.text
        page = r.json()
        assert [o["key"] for o in page["objects"]] == ["docs/a.txt", "docs/b.bin"]
        assert page["nextPageToken"]
        r = await j.call(
            "ListObjects",
            "GET",
            f"{j.root}/objects",
            params={"prefix": "docs/", "pageSize": 2, "pageToken": page["nextPageToken"]},
        )
        assert [o["key"] for o in r.json()["objects"]] == ["docs/c.json"]
        assert r.json()["nextPageToken"] == ""
        r = await j.call("DeleteObject", "DELETE", f"{j.root}/objects/docs/a.txt")
        assert r.status_code == 200, r.text
        r = await j.call("GetObjectContent", "GET", f"{j.root}/objects/docs/a.txt")
        assert_status(r, 404, 5, reason="OBJECT_NOT_FOUND")
        r = await j.call("ListObjects", "GET", f"{j.root}/objects")
        assert [o["key"] for o in r.json()["objects"]] == ["docs/b.bin", "docs/c.json", "img/z.png"]
        stored_bytes = sum(len(objects[k][1]) for k in ("docs/b.bin", "docs/c.json", "img/z.png"))

        # -- items: exact numbers, conditions, delete -------------------------------------
        item_url = f"{j.root}/collections/notes/partitions/p1/items/first"
        attributes = {
            "title": {"stringValue": "first note ✓"},
            "max": {"intValue": "9223372036854775807"},
            "min": {"intValue": "-9223372036854775808"},
            "beyondDouble": {"intValue": "9007199254740993"},
            "price": {"decimalValue": "-12.3400"},
            "tiny": {"decimalValue": "0.00000000000000000000000000000000000001"},
            "huge": {"decimalValue": "12345678901234567890123456789012345678"},
            "ratio": {"doubleValue": 0.25},
            "done": {"boolValue": False},
            "nothing": {"nullValue": None},
            "tags": {"listValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}]}},
            "meta": {"mapValue": {"fields": {"k": {"decimalValue": "1.10"}}}},
        }
        r = await j.call("PutItem", "PUT", item_url, json={"attributes": attributes})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["attributes"] == attributes
        assert first["etag"]
        r = await j.call("GetItem", "GET", item_url)
        assert r.status_code == 200
        got = r.json()
        assert got["attributes"] == attributes  # strings compared: nothing went through a double
        assert got["etag"] == first["etag"]
        assert got["createTime"] == first["createTime"]
        r = await j.call(
            "PutItem",
            "PUT",
            item_url,
            params={"expectedEtag": first["etag"]},
            json={"attributes": {"title": {"stringValue": "second"}}},
        )
        assert r.status_code == 200, r.text
        second = r.json()
        assert second["etag"] != first["etag"]
        assert second["createTime"] == first["createTime"]
        r = await j.call("DeleteItem", "DELETE", item_url, params={"expectedEtag": second["etag"]})
        assert r.status_code == 200, r.text
        r = await j.call("GetItem", "GET", item_url)
        assert_status(r, 404, 5, reason="ITEM_NOT_FOUND")

        # -- query one partition: prefix, range, descending, pages -------------------------
        sort_keys = ["s01", "s02", "s03", "s04", "s05", "t01"]
        r = await j.call(
            "BatchWriteItems",
            "POST",
            f"{j.root}/items:batchWrite",
            json={
                "writes": [
                    {
                        "put": {
                            "collection": "log",
                            "partitionKey": "day-1",
                            "sortKey": s,
                            "attributes": {"n": {"intValue": str(i)}},
                        }
                    }
                    for i, s in enumerate(sort_keys)
                ]
            },
        )
        assert r.status_code == 200, r.text
        query_url = f"{j.root}/collections/log/partitions/day-1/items"

        async def query(**params: Any) -> dict[str, Any]:
            r = await j.call("QueryItems", "GET", query_url, params=params)
            assert r.status_code == 200, r.text
            answer: dict[str, Any] = r.json()
            return answer

        page = await query(sortKeyPrefix="s", pageSize=2)
        assert [i["sortKey"] for i in page["items"]] == ["s01", "s02"]
        seen = [i["sortKey"] for i in page["items"]]
        while page["nextPageToken"]:
            page = await query(sortKeyPrefix="s", pageSize=2, pageToken=page["nextPageToken"])
            seen += [i["sortKey"] for i in page["items"]]
        assert seen == ["s01", "s02", "s03", "s04", "s05"]
        page = await query(**{"sortKeyRange.start": "s02", "sortKeyRange.end": "s04"})
        assert [i["sortKey"] for i in page["items"]] == ["s02", "s03", "s04"]
        page = await query(**{"sortKeyRange.start": "s02", "sortKeyRange.end": "s04", "descending": "true"})
        assert [i["sortKey"] for i in page["items"]] == ["s04", "s03", "s02"]
        page = await query(descending="true", pageSize=4)
        assert [i["sortKey"] for i in page["items"]] == ["t01", "s05", "s04", "s03"]
        assert page["items"][0]["attributes"]["n"] == {"intValue": "5"}
        page = await query(descending="true", pageSize=4, pageToken=page["nextPageToken"])
        assert [i["sortKey"] for i in page["items"]] == ["s02", "s01"]
        assert page["nextPageToken"] == ""

        # -- chat: plain, then streamed as server-sent events ------------------------------
        r = await j.call(
            "CreateChatCompletion",
            "POST",
            f"{j.root}/chat/completions",
            json={"messages": [{"role": "user", "content": "Hello, MAKOTO!"}]},
        )
        assert r.status_code == 200, r.text
        chat = r.json()
        assert chat["model"] == "sim-chat"
        assert chat["provider"] == "openai"
        assert chat["choices"][0]["message"] == {
            "role": "assistant",
            "content": "Echo: Hello, MAKOTO!",
            "name": "",
        }
        assert chat["choices"][0]["finishReason"] == "stop"
        usage = chat["usage"]
        assert int(usage["totalTokens"]) == int(usage["promptTokens"]) + int(usage["completionTokens"])
        assert int(usage["promptTokens"]) > 0 and int(usage["completionTokens"]) > 0

        events = await j.sse(
            f"{j.root}/chat/completions:stream",
            {"messages": [{"role": "user", "content": "Tell me a story about Envoy"}]},
        )
        assert len(events) >= 3
        assert "".join(e["delta"] for e in events) == "Echo: Tell me a story about Envoy"
        assert [e["finishReason"] for e in events if e["finishReason"]] == ["stop"]
        assert all("usage" not in e for e in events[:-1])
        streamed = events[-1]["usage"]
        assert int(streamed["totalTokens"]) == int(streamed["promptTokens"]) + int(
            streamed["completionTokens"]
        )
        prompt_tokens = int(usage["promptTokens"]) + int(streamed["promptTokens"])
        completion_tokens = int(usage["completionTokens"]) + int(streamed["completionTokens"])

        # -- the invoice: wait for the spooled usage, then check every number --------------
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            # This GetInvoice itself is not in its answer; the operator's CreateTenant is not billed.
            expected_calls = sum(j.calls.values()) - j.operator_calls
            r = await j.call("GetInvoice", "GET", f"{j.root}/invoices/{this_month()}")
            assert r.status_code == 200, r.text
            invoice = r.json()
            lines = check_invoice_arithmetic(invoice, tenant)
            calls = int(lines["api_calls"]["quantity"])
            prompt = int(lines["llm_prompt_tokens"]["quantity"])
            completion = int(lines["llm_completion_tokens"]["quantity"])
            # Metering is late, never ahead: more than we did would be a bug.
            assert calls <= expected_calls, (calls, expected_calls, j.calls)
            assert prompt <= prompt_tokens and completion <= completion_tokens
            if (calls, prompt, completion) == (expected_calls, prompt_tokens, completion_tokens):
                break
            assert time.monotonic() < deadline, (
                f"usage did not arrive: api_calls {calls}/{expected_calls}, "
                f"prompt {prompt}/{prompt_tokens}, completion {completion}/{completion_tokens}"
            )
            await asyncio.sleep(0.2)
        assert lines["api_calls"]["amount"] == format(
            (Decimal(expected_calls) * Decimal("0.0001")).quantize(MONEY), "f"
        )
        assert lines["llm_prompt_tokens"]["amount"] == format(
            (Decimal(prompt_tokens) * Decimal("0.00002")).quantize(MONEY), "f"
        )

        # -- usage: per method exactly what we did; LLM tokens; bytes stored ---------------
        # Everything up to the last GetInvoice has arrived; the GetInvoice calls are all stored.
        r = await j.call(
            "QueryUsage",
            "GET",
            f"{j.root}/usage",
            params={"meter": "api_calls", "groupBy": ["method", "caller", "payer"]},
        )
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        # Other services' calls about the tenant (directory lookups, limits) are there too, with
        # the calling service and payer=platform (the invoice above left them out).
        by_method: dict[str, int] = {}
        for row in rows:
            if not row["group"].get("caller"):
                method = row["group"]["method"]
                by_method[method] = by_method.get(method, 0) + int(row["value"])
        services = {
            (row["group"]["method"], row["group"].get("payer")) for row in rows if row["group"].get("caller")
        }
        assert services and {payer for _, payer in services} == {"platform"}, rows
        expected = dict(j.calls)
        expected.pop("QueryUsage")  # this very call is not in its own answer
        assert by_method == expected
        for row in rows:
            assert row["windowStart"] == f"{this_month()}-01T00:00:00Z"
        r = await j.call("QueryUsage", "GET", f"{j.root}/usage", params={"meter": "llm_prompt_tokens"})
        assert [int(row["value"]) for row in r.json()["rows"]] == [prompt_tokens]
        r = await j.call(
            "QueryUsage",
            "GET",
            f"{j.root}/usage",
            params={"meter": "llm_completion_tokens", "groupBy": ["model", "provider"]},
        )
        [row] = r.json()["rows"]
        assert row["group"] == {"model": "sim-chat", "provider": "openai"}
        assert int(row["value"]) == completion_tokens
        # storage_bytes are signed deltas: their sum is what the tenant stores now.
        r = await j.call("QueryUsage", "GET", f"{j.root}/usage", params={"meter": "storage_bytes"})
        assert [int(row["value"]) for row in r.json()["rows"]] == [stored_bytes]


# -- HTTP error mapping ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant(mesh: RunningMesh) -> str:
    tenant = new_tenant_id("rest-err")
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        r = c.post(f"{API}/admin/tenants", json={"tenantId": tenant})
        assert r.status_code == 200, r.text
    return tenant


async def test_invalid_input_is_400_with_field_violations(mesh: RunningMesh, tenant: str) -> None:
    root = f"{API}/tenants/{tenant}"
    async with httpx.AsyncClient(
        base_url=mesh.base_url, headers=mesh.headers(Role.MEMBER, tenant), timeout=30
    ) as c:
        r = await c.get(f"{root}/collections/9-not-a-name/partitions/p/items/s")
        assert_status(r, 400, 3, reason="INVALID_ARGUMENT", fields={"collection"})
        r = await c.put(
            f"{root}/collections/notes/partitions/p/items/s",
            json={"attributes": {"d": {"decimalValue": "1e5"}, "f": {"doubleValue": "NaN"}}},
        )
        assert_status(
            r,
            400,
            3,
            fields={"item.attributes['d'].decimal_value", "item.attributes['f'].double_value"},
        )
        r = await c.put(
            f"{root}/collections/notes/partitions/p/items/s",
            params={"mustNotExist": "true", "expectedEtag": "abc"},
            json={"attributes": {}},
        )
        body = assert_status(r, 400, 3)
        assert "must_not_exist" in body["message"]
        r = await c.get(f"{root}/objects", params={"pageSize": 1001})
        assert_status(r, 400, 3, fields={"page_size"})
        r = await c.get(f"{root}/collections/notes/partitions/p/items", params={"pageToken": "forged"})
        assert_status(r, 400, 3, fields={"page_token"})
        r = await c.post(f"{root}/chat/completions", json={"messages": []})
        assert_status(r, 400, 3, fields={"messages"})
        r = await c.post(
            f"{root}/chat/completions",
            json={"messages": [{"role": "wizard", "content": "hi"}], "temperature": 3},
        )
        assert_status(r, 400, 3, fields={"messages[0].role", "temperature"})
        r = await c.get(f"{root}/invoices/2026-13")
        assert_status(r, 400, 3, fields={"month"})
        # An int64 that does not fit is refused by the transcoder before any service sees it,
        # and the failed write stored nothing.
        r = await c.put(
            f"{root}/collections/notes/partitions/p/items/overflow",
            json={"attributes": {"n": {"intValue": "9223372036854775808"}}},
        )
        assert r.status_code == 400
        r = await c.get(f"{root}/collections/notes/partitions/p/items/overflow")
        assert_status(r, 404, 5)
        # Nothing above was written.
        r = await c.get(f"{root}/collections/notes/partitions/p/items")
        assert r.json()["items"] == []


async def test_missing_is_404_and_conflicts_are_409(mesh: RunningMesh, tenant: str) -> None:
    root = f"{API}/tenants/{tenant}"
    item = f"{root}/collections/notes/partitions/p/items/conflict"
    async with httpx.AsyncClient(
        base_url=mesh.base_url, headers=mesh.headers(Role.MEMBER, tenant), timeout=30
    ) as c:
        assert_status(await c.get(f"{root}/objects/no/such.txt"), 404, 5, reason="OBJECT_NOT_FOUND")
        assert_status(await c.delete(f"{root}/objects/no/such.txt"), 404, 5, reason="OBJECT_NOT_FOUND")
        assert_status(await c.get(f"{root}/object-metadata/no/such.txt"), 404, 5)
        assert_status(await c.get(f"{root}/collections/notes/partitions/p/items/none"), 404, 5)
        assert_status(await c.delete(f"{root}/collections/notes/partitions/p/items/none"), 404, 5)

        r = await c.put(item, params={"mustNotExist": "true"}, json={"attributes": {"v": {"intValue": "1"}}})
        assert r.status_code == 200, r.text
        etag = r.json()["etag"]
        r = await c.put(item, params={"mustNotExist": "true"}, json={"attributes": {"v": {"intValue": "2"}}})
        assert_status(r, 409, 6, reason="ITEM_EXISTS")
        r = await c.put(item, params={"expectedEtag": "stale"}, json={"attributes": {"v": {"intValue": "3"}}})
        assert_status(r, 409, 10, reason="ETAG_MISMATCH")
        r = await c.delete(item, params={"expectedEtag": "stale"})
        assert_status(r, 409, 10, reason="ETAG_MISMATCH")
        r = await c.put(
            f"{root}/objects/once.txt",
            params={"ifNoneMatch": "true"},
            content=b"1",
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 200, r.text
        r = await c.put(
            f"{root}/objects/once.txt",
            params={"ifNoneMatch": "true"},
            content=b"2",
            headers={"content-type": "text/plain"},
        )
        assert_status(r, 409, 6)
        # None of the refused writes changed anything.
        r = await c.get(item)
        assert r.json()["etag"] == etag
        assert r.json()["attributes"] == {"v": {"intValue": "1"}}
        assert (await c.get(f"{root}/objects/once.txt")).content == b"1"


async def test_no_token_is_401(mesh: RunningMesh, tenant: str) -> None:
    root = f"{API}/tenants/{tenant}"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        for method, url in [
            ("GET", f"{root}/objects"),
            ("GET", f"{root}/collections/notes/partitions/p/items/s"),
            ("POST", f"{root}/chat/completions"),
            ("GET", f"{root}/usage"),
            ("POST", f"{API}/admin/tenants"),
        ]:
            r = await c.request(method, url, json={})
            assert r.status_code == 401, (url, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")


async def test_suspended_tenant_is_403_until_resumed(mesh: RunningMesh) -> None:
    tenant = new_tenant_id("rest-susp")
    root = f"{API}/tenants/{tenant}"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        admin = mesh.headers(Role.PLATFORM_ADMIN)
        user = mesh.headers(Role.TENANT_ADMIN, tenant)
        r = await c.post(f"{API}/admin/tenants", json={"tenantId": tenant}, headers=admin)
        assert r.status_code == 200, r.text
        r = await c.post(f"{API}/admin/tenants/{tenant}:suspend", json={"reason": "unpaid"}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "TENANT_STATE_SUSPENDED"
        assert r.json()["stateReason"] == "unpaid"

        data_calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"{root}/objects", None),
            ("PUT", f"{root}/collections/notes/partitions/p/items/s", {"attributes": {}}),
            ("POST", f"{root}/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ]
        for method, url, body in data_calls:
            r = await c.request(method, url, json=body, headers=user)
            assert_status(r, 403, 7, reason="TENANT_SUSPENDED")
        # The tenant can still see why.
        r = await c.get(root, headers=user)
        assert r.status_code == 200
        assert r.json()["state"] == "TENANT_STATE_SUSPENDED"

        r = await c.post(f"{API}/admin/tenants/{tenant}:resume", json={}, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "TENANT_STATE_ACTIVE"
        # Data services cache the tenant's state briefly (directory_cache_ttl_seconds).
        deadline = time.monotonic() + mesh.settings.directory_cache_ttl_seconds + 5
        for method, url, body in data_calls:
            while True:
                r = await c.request(method, url, json=body, headers=user)
                if r.status_code == 200:
                    break
                assert_status(r, 403, 7, reason="TENANT_SUSPENDED")
                assert time.monotonic() < deadline, "still refused after resume"
                await asyncio.sleep(0.25)

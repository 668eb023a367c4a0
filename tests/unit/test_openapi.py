"""docs/openapi.json: fresh (what `make gen` writes from gen/makoto.binpb), a valid OpenAPI 3.1
document, and a faithful description of the transcoding Envoy runs on the same descriptor set."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.api import annotations_pb2
from openapi_spec_validator import validate

from services.apidoc.openapi import DESCRIPTOR_PATH, OPENAPI_PATH, generate, render
from services.mesh.methods import Access, load_descriptor_set, public_methods


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return generate()


def op(doc: dict[str, Any], verb: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = doc["paths"][path][verb]
    return operation


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


def test_the_committed_document_is_fresh() -> None:
    assert OPENAPI_PATH.read_text() == render(), "docs/openapi.json is stale: run `make gen`"


def test_it_is_a_valid_openapi_3_1_document(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_every_routed_rest_binding_is_an_operation_and_nothing_else(doc: dict[str, Any]) -> None:
    fds = load_descriptor_set(DESCRIPTOR_PATH)
    routed = {m.full_name for m in public_methods(DESCRIPTOR_PATH) if m.access is not Access.INTERNAL}
    expected = set()
    for f in fds.file:
        for s in f.service:
            for m in s.method:
                full = f"{f.package}.{s.name}.{m.name}"
                if full in routed and m.options.HasExtension(annotations_pb2.http):
                    expected.add(f"/{f.package}.{s.name}/{m.name}")
    found = {
        o["x-grpc-method"] for item in doc["paths"].values() for o in item.values() if "x-grpc-method" in o
    }
    assert found == expected
    # Internal (RecordUsage) and gRPC-only streams (UploadObject, DownloadObject) are absent.
    assert not {g for g in found if g.endswith(("/RecordUsage", "/UploadObject", "/DownloadObject"))}
    ids = [o["operationId"] for item in doc["paths"].values() for o in item.values()]
    assert len(ids) == len(set(ids))


def test_bodies_follow_the_http_rules(doc: dict[str, Any]) -> None:
    # body: "*" -> the request message without its path fields.
    sign = op(doc, "post", "/api/v1/tenants/{tenant_id}/object-urls")
    props = sign["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "tenantId" not in props and "key" in props
    assert "parameters" in sign and all(p["in"] == "path" for p in sign["parameters"])
    # body: "content" (google.api.HttpBody) -> raw bytes of any type; other fields in the query.
    put = op(doc, "put", "/api/v1/tenants/{tenant_id}/objects/{key}")
    assert set(put["requestBody"]["content"]) == {"*/*"}
    assert "if_none_match" in {p["name"] for p in put["parameters"] if p["in"] == "query"}
    # body: "item" -> the Item message; path binds item.collection etc.; the rest is query.
    put_item = op(
        doc,
        "put",
        "/api/v1/tenants/{tenant_id}/collections/{collection}/partitions/{partition_key}/items/{sort_key}",
    )
    assert put_item["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/makoto.storage.v1.Item"
    }
    path_fields = {p["name"]: p["x-field"] for p in put_item["parameters"] if p["in"] == "path"}
    assert path_fields["collection"] == "item.collection"
    assert {p["name"] for p in put_item["parameters"] if p["in"] == "query"} == {
        "must_not_exist",
        "expected_etag",
    }
    # GET: no body; every non-path scalar is a query parameter, nested messages dotted.
    query = op(
        doc, "get", "/api/v1/tenants/{tenant_id}/collections/{collection}/partitions/{partition_key}/items"
    )
    assert "requestBody" not in query
    names = {p["name"] for p in query["parameters"] if p["in"] == "query"}
    assert {"page_size", "page_token", "sort_key_range.start"} <= names


def test_json_shapes_are_proto3_json(doc: dict[str, Any]) -> None:
    meta = schema(doc, "makoto.storage.v1.ObjectMetadata")["properties"]
    # lowerCamel names, 64-bit integers as strings, timestamps as RFC 3339 strings.
    assert "contentType" in meta and "content_type" not in meta
    assert meta["sizeBytes"]["type"] == "string" and meta["sizeBytes"]["format"] == "int64"
    assert any(v.get("format") == "date-time" for v in meta.values())
    state = schema(doc, "makoto.tenant.v1.TenantState")
    assert state["type"] == "string" and "TENANT_STATE_SUSPENDED" in state["enum"]


def test_answers_errors_and_auth(doc: dict[str, Any]) -> None:
    stream = op(doc, "post", "/api/v1/tenants/{tenant_id}/chat/completions:stream")["responses"]["200"]
    assert set(stream["content"]) == {"text/event-stream"}
    raw = op(doc, "get", "/api/v1/tenants/{tenant_id}/objects/{key}")["responses"]["200"]
    assert set(raw["content"]) == {"*/*"}
    status = schema(doc, "google.rpc.Status")
    assert set(status["properties"]) == {"code", "message", "details"}
    for path, item in doc["paths"].items():
        for o in item.values():
            assert path == "/healthz" or "default" in o["responses"]
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert op(doc, "get", "/healthz")["security"] == []
    admin = op(doc, "post", "/api/v1/admin/tenants")
    assert admin["x-makoto-access"] == "admin"


def test_the_document_is_json_that_round_trips() -> None:
    assert json.loads(OPENAPI_PATH.read_text()) == generate()

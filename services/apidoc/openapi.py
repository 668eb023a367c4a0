"""OpenAPI 3.1 for the REST API, generated from gen/makoto.binpb - the descriptor set Envoy's
gRPC-JSON transcoder runs on - so the document describes what Envoy actually transcodes:

- operations: every public method with a `google.api.http` rule Envoy routes (internal methods
  and gRPC-only streams are absent); path variables `{field}`, `{a.b}` and `{key=**}` (the
  latter matches slashes);
- request bodies: `body: "*"` is the request message without the path fields, `body: "field"`
  that field alone (raw bytes for a `google.api.HttpBody` field), no body for GET/DELETE;
- query parameters: every other field the transcoder can bind from a query string (scalars,
  enums, repeated scalars, and nested singular messages as `a.b`), by proto field name
  (the transcoder rejects unknown query parameters);
- JSON: proto3 JSON names in bodies (the transcoder prints lowerCamelCase and every primitive
  field), 64-bit integers as strings, enums as names, well-known types in their JSON forms;
- answers: the response message (server streams as Server-Sent Events, HttpBody as raw bytes);
  errors as `google.rpc.Status` (Envoy's own refusals - no token, RBAC, no healthy upstream -
  are short text/plain bodies);
- security: bearer JWT everywhere except the health endpoints and this document.

    python -m services.apidoc.openapi [--out docs/openapi.json]      (`make gen` runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

from services.mesh.methods import PUBLIC_SERVICES, Access, public_methods

REPO_ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_PATH = REPO_ROOT / "gen" / "makoto.binpb"
OPENAPI_PATH = REPO_ROOT / "docs" / "openapi.json"
VERSION = "0.1.0"

F = descriptor_pb2.FieldDescriptorProto
_INT64 = {F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64}
_UINT64 = {F.TYPE_UINT64, F.TYPE_FIXED64}
_INT32 = {F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32}
_UINT32 = {F.TYPE_UINT32, F.TYPE_FIXED32}
_HTTPBODY = ".google.api.HttpBody"
_STATUS = "google.rpc.Status"
# Well-known types in their proto3 JSON forms.
_WKT: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    ".google.protobuf.FieldMask": {"type": "string", "description": "comma-separated lowerCamel paths"},
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
    ".google.protobuf.ListValue": {"type": "array", "items": {}},
    ".google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    ".google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    ".google.protobuf.StringValue": {"type": ["string", "null"]},
    ".google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    ".google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
    ".google.protobuf.DoubleValue": {"type": ["number", "null"]},
    ".google.protobuf.FloatValue": {"type": ["number", "null"]},
    ".google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    ".google.protobuf.UInt32Value": {"type": ["integer", "null"], "minimum": 0},
    ".google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    ".google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
}
# Query strings carry these as their JSON string forms.
_QUERY_WKT = {".google.protobuf.Timestamp", ".google.protobuf.Duration", ".google.protobuf.FieldMask"}


class _Index:
    """Messages and enums of the descriptor set by full name (with the leading dot)."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[str, str] = {}
        for f in fds.file:
            prefix = f".{f.package}" if f.package else ""
            for e in f.enum_type:
                self.enums[f"{prefix}.{e.name}"] = e
            self._walk(prefix, list(f.message_type))

    def _walk(self, prefix: str, msgs: list[descriptor_pb2.DescriptorProto]) -> None:
        for m in msgs:
            name = f"{prefix}.{m.name}"
            self.messages[name] = m
            for e in m.enum_type:
                self.enums[f"{name}.{e.name}"] = e
            self._walk(name, list(m.nested_type))


def _is_map(index: _Index, field: descriptor_pb2.FieldDescriptorProto) -> bool:
    if field.type != F.TYPE_MESSAGE or field.label != F.LABEL_REPEATED:
        return False
    return index.messages[field.type_name].options.map_entry


def _behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[int]:
    return list(field.options.Extensions[field_behavior_pb2.field_behavior])


class _Builder:
    def __init__(self, index: _Index) -> None:
        self.index = index
        self.schemas: dict[str, dict[str, Any]] = {}

    def ref(self, type_name: str) -> dict[str, Any]:
        if type_name in _WKT:
            return dict(_WKT[type_name])
        name = type_name.lstrip(".")
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages refer to themselves
            if type_name in self.index.enums:
                self.schemas[name] = self._enum(type_name)
            else:
                self.schemas[name] = self.message(type_name)
        return {"$ref": f"#/components/schemas/{name}"}

    def _enum(self, type_name: str) -> dict[str, Any]:
        values = [v.name for v in self.index.enums[type_name].value]
        return {"type": "string", "enum": values}

    def scalar(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        t = field.type
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return {"type": "number"}
        if t in _INT32:
            return {"type": "integer", "format": "int32"}
        if t in _UINT32:
            return {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
        if t in _INT64:
            # proto3 JSON prints 64-bit integers as strings.
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
        if t in _UINT64:
            return {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"}
        if t == F.TYPE_BOOL:
            return {"type": "boolean"}
        if t == F.TYPE_STRING:
            return {"type": "string"}
        if t == F.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if t == F.TYPE_ENUM:
            return self.ref(field.type_name)
        return self.ref(field.type_name)

    def field(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if _is_map(self.index, field):
            entry = self.index.messages[field.type_name]
            value = next(f for f in entry.field if f.name == "value")
            return {"type": "object", "additionalProperties": self.scalar(value)}
        schema = self.scalar(field)
        if field.label == F.LABEL_REPEATED:
            schema = {"type": "array", "items": schema}
        if field_behavior_pb2.OUTPUT_ONLY in _behaviors(field):
            schema = (
                {**schema, "readOnly": True}
                if "$ref" not in schema
                else {"allOf": [schema], "readOnly": True}
            )
        return schema

    def message(self, type_name: str, *, without: set[str] | None = None) -> dict[str, Any]:
        msg = self.index.messages[type_name]
        props = {f.json_name: self.field(f) for f in msg.field if f.name not in (without or set())}
        # Both spellings are accepted on input; the transcoder prints lowerCamel names.
        return {"type": "object", "properties": props, "additionalProperties": False}

    def query_parameters(
        self, type_name: str, skip: set[str], prefix: str = "", depth: int = 0
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for f in self.index.messages[type_name].field:
            path = f"{prefix}{f.name}"
            if path in skip or _is_map(self.index, f):
                continue
            if f.type == F.TYPE_MESSAGE and f.type_name not in _QUERY_WKT:
                if f.label != F.LABEL_REPEATED and depth < 3 and f.type_name not in _WKT:
                    out += self.query_parameters(f.type_name, skip, f"{path}.", depth + 1)
                continue
            schema = self.field(f) if f.type != F.TYPE_MESSAGE else dict(_WKT[f.type_name])
            schema.pop("readOnly", None)
            param: dict[str, Any] = {"name": path, "in": "query", "schema": schema}
            if f.label == F.LABEL_REPEATED:
                param["style"] = "form"
                param["explode"] = True
            out.append(param)
        return out


def _rule_verb(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.lower(), rule.custom.path
    assert kind is not None
    return kind, str(getattr(rule, kind))


def _path_template(template: str) -> tuple[str, list[tuple[str, str, bool]]]:
    """`/a/{key=**}/b/{x.y}` -> (`/a/{key}/b/{y}`, [(key, key, True), (y, x.y, False)]): the
    OpenAPI name, the request field it binds, and whether it spans several segments.

    OpenAPI names a path position by its leaf (`{item.sort_key}` -> `{sort_key}`): templates
    differing only in variable names are the same path to OpenAPI (PATCH .../{tenant.tenant_id}
    and DELETE .../{tenant_id} are one path item)."""
    out: list[str] = []
    variables: list[tuple[str, str, bool]] = []
    i = 0
    while i < len(template):
        if template[i] == "{":
            end = template.index("}", i)
            field, _, pattern = template[i + 1 : end].partition("=")
            name = field.rsplit(".", 1)[-1]
            if name in {v[0] for v in variables}:
                name = field.replace(".", "_")
            variables.append((name, field, pattern not in ("", "*")))
            out.append("{" + name + "}")
            i = end + 1
        else:
            out.append(template[i])
            i += 1
    return "".join(out), variables


def _status_schemas() -> dict[str, Any]:
    return {
        _STATUS: {
            "type": "object",
            "description": "google.rpc.Status: the gRPC code (3 = INVALID_ARGUMENT, ...), a message, and "
            "typed details (google.rpc.ErrorInfo with domain `makoto`, BadRequest, RetryInfo).",
            "properties": {
                "code": {"type": "integer", "format": "int32"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": dict(_WKT[".google.protobuf.Any"])},
            },
        }
    }


def _error_responses() -> dict[str, Any]:
    status = {"schema": {"$ref": f"#/components/schemas/{_STATUS}"}}
    text = {"schema": {"type": "string"}}
    return {
        "default": {
            "description": "An error: google.rpc.Status from a service (HTTP status as grpc-gateway "
            "maps the gRPC code), or a short text from Envoy itself (401 no/bad token, 403 access "
            "denied, 413 body too large, 503 no healthy upstream, 504 timeout).",
            "content": {"application/json": status, "text/plain": text},
        }
    }


def generate(descriptor: Path = DESCRIPTOR_PATH) -> dict[str, Any]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    index = _Index(fds)
    builder = _Builder(index)
    routed = {m.full_name: m for m in public_methods(descriptor) if m.access is not Access.INTERNAL}
    services = {f".{f.package}.{s.name}": s for f in fds.file for s in f.service}
    paths: dict[str, dict[str, Any]] = {}
    for cluster, full_service in PUBLIC_SERVICES.items():
        service = services[f".{full_service}"]
        for rpc in service.method:
            method = routed.get(f"{full_service}.{rpc.name}")
            if method is None or not rpc.options.HasExtension(annotations_pb2.http):
                continue
            rule = rpc.options.Extensions[annotations_pb2.http]
            for binding in [rule, *rule.additional_bindings]:
                verb, template = _rule_verb(binding)
                path, variables = _path_template(template)
                op = _operation(builder, cluster, full_service, rpc, binding, variables, method.access)
                if len(rule.additional_bindings) > 0 and binding is not rule:
                    op["operationId"] += f"_{len(paths.get(path, {}))}"
                paths.setdefault(path, {})[verb] = op
    builder.schemas.update(_status_schemas())
    health = {
        "get": {
            "operationId": "Healthz",
            "tags": ["health"],
            "summary": "200 while every public service has a healthy replica, else 503 (answered by Envoy).",
            "security": [],
            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
        }
    }
    paths["/healthz"] = health
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MAKOTO platform API",
            "version": VERSION,
            "description": "REST through Envoy's gRPC-JSON transcoder. GENERATED from gen/makoto.binpb by "
            "services/apidoc/openapi.py (`make gen`); do not edit.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": c, "description": s} for c, s in PUBLIC_SERVICES.items()] + [{"name": "health"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT from a trusted issuer (`makoto token` in development) with "
                    "custom:tenant_id and custom:role.",
                }
            },
            "schemas": dict(sorted(builder.schemas.items())),
        },
    }


def _operation(
    builder: _Builder,
    cluster: str,
    full_service: str,
    rpc: descriptor_pb2.MethodDescriptorProto,
    rule: http_pb2.HttpRule,
    variables: list[tuple[str, str, bool]],
    access: Access,
) -> dict[str, Any]:
    index = builder.index
    path_fields = {field for _, field, _ in variables}
    params: list[dict[str, Any]] = []
    for name, field, multi in variables:
        param: dict[str, Any] = {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "x-field": field,
        }
        if multi:
            # `{key=**}`: the value may contain `/` (sent as is; `%2F` stays part of a segment).
            # (OpenAPI allows `allowReserved` on query parameters only: said in words.)
            param["description"] = "may span several path segments (`/` is sent as is)"
        params.append(param)
    op: dict[str, Any] = {
        "operationId": f"{full_service.rsplit('.', 1)[1]}_{rpc.name}",
        "tags": [cluster],
        "summary": rpc.name,
        "x-grpc-method": f"/{full_service}/{rpc.name}",
        "x-makoto-access": access.value,
    }
    request_type = rpc.input_type
    if rule.body == "*":
        schema = builder.message(request_type, without={p.split(".")[0] for p in path_fields if "." not in p})
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    elif rule.body:
        body_field = next(f for f in index.messages[request_type].field if f.name == rule.body)
        if body_field.type_name == _HTTPBODY:
            op["requestBody"] = {
                "required": True,
                "description": "the raw bytes; their Content-Type is stored with them",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        else:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": builder.field(body_field)}},
            }
        params += builder.query_parameters(
            request_type, path_fields | {rule.body} | _nested_prefixes(path_fields, rule.body)
        )
    else:
        params += builder.query_parameters(request_type, path_fields)
    if params:
        op["parameters"] = params
    op["responses"] = {"200": _success(builder, rpc, rule), **_error_responses()}
    return op


def _nested_prefixes(path_fields: set[str], body: str) -> set[str]:
    # `{item.collection}` with body "item": the item's fields are in the body, not the query.
    return {p for p in path_fields if p.startswith(f"{body}.")}


def _success(
    builder: _Builder, rpc: descriptor_pb2.MethodDescriptorProto, rule: http_pb2.HttpRule
) -> dict[str, Any]:
    if rpc.output_type == _HTTPBODY:
        return {
            "description": "the raw bytes, with their stored Content-Type",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    if rule.response_body:
        field = next(f for f in builder.index.messages[rpc.output_type].field if f.name == rule.response_body)
        schema = builder.field(field)
    else:
        schema = builder.ref(rpc.output_type)
    if rpc.server_streaming:
        return {
            "description": "Server-Sent Events: one `data: <JSON message>` event per streamed message "
            "(each message as in `x-event-schema`); an error after the first event arrives as a "
            "grpc-status trailer.",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-schema": schema}},
        }
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def render(descriptor: Path = DESCRIPTOR_PATH) -> str:
    return json.dumps(generate(descriptor), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--descriptor", type=Path, default=DESCRIPTOR_PATH)
    parser.add_argument("--out", type=Path, default=OPENAPI_PATH)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args.descriptor))
    print(args.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

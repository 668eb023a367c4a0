"""Every field of the MAKOTO contract says how it behaves (`google.api.field_behavior`, AIP-203):
REQUIRED / OPTIONAL in what callers send, OUTPUT_ONLY for what only the server sets, IMMUTABLE
for what cannot change after creation. The OpenAPI document marks OUTPUT_ONLY fields readOnly.

`scripts/gen.py` stops the build on a field without one (tests/unit/test_field_behavior.py
also holds REQUIRED equal to what the protovalidate rules reject when left empty).
"""

from __future__ import annotations

from collections.abc import Iterator

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

PACKAGE_PREFIX = "makoto."


def behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[int]:
    return list(field.options.Extensions[field_behavior_pb2.field_behavior])


def contract_fields(
    fds: descriptor_pb2.FileDescriptorSet,
) -> Iterator[tuple[str, descriptor_pb2.FieldDescriptorProto]]:
    """(full field name, field) of every field of every message of the contract (map entries,
    which protoc writes for `map<>` fields, are not messages anyone declares)."""

    def walk(
        prefix: str, messages: list[descriptor_pb2.DescriptorProto]
    ) -> Iterator[tuple[str, descriptor_pb2.FieldDescriptorProto]]:
        for message in messages:
            name = f"{prefix}.{message.name}"
            if message.options.map_entry:
                continue
            for field in message.field:
                yield f"{name}.{field.name}", field
            yield from walk(name, list(message.nested_type))

    for file in fds.file:
        if file.package.startswith(PACKAGE_PREFIX):
            yield from walk(file.package, list(file.message_type))


def missing(fds: descriptor_pb2.FileDescriptorSet) -> list[str]:
    """Fields of the contract without a field_behavior annotation."""
    return [name for name, field in contract_fields(fds) if not behaviors(field)]

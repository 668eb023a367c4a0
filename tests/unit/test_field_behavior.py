"""google.api.field_behavior (AIP-203) on every field of the contract, and consistent: REQUIRED
exactly where the protovalidate rules reject an empty value, response-only messages carry no
request-side behaviour. Read from gen/makoto.binpb, the descriptor set Envoy and the OpenAPI
generator use (test_contracts_build.py keeps it fresh)."""

from __future__ import annotations

import importlib
from pathlib import Path

import protovalidate
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2, symbol_database

from services.apidoc.field_behavior import behaviors, contract_fields, missing
from services.mesh.methods import load_descriptor_set
from tests.support import run_gen_check

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTORS = ROOT / "gen" / "makoto.binpb"
FB = field_behavior_pb2

# Messages that travel only inside google.longrunning.Operation.metadata (an Any): answers too.
OPERATION_METADATA = {"makoto.tenant.v1.ProvisioningMetadata"}
# The RPC option message: read by the build, never sent.
OPTION_MESSAGES = {"makoto.api.v1.AccessRule"}


def _fds() -> descriptor_pb2.FileDescriptorSet:
    return load_descriptor_set(DESCRIPTORS)


def _reachable(fds: descriptor_pb2.FileDescriptorSet, roots: set[str]) -> set[str]:
    """Message names (no leading dot) reachable from `roots` through message-typed fields."""
    fields = {name.rsplit(".", 1)[0] for name, _ in contract_fields(fds)}
    by_name: dict[str, list[descriptor_pb2.FieldDescriptorProto]] = {m: [] for m in fields}
    for name, field in contract_fields(fds):
        by_name[name.rsplit(".", 1)[0]].append(field)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        msg = stack.pop()
        if msg in seen:
            continue
        seen.add(msg)
        for field in by_name.get(msg, []):
            if field.type == field.TYPE_MESSAGE:
                stack.append(field.type_name.lstrip("."))
    return seen


def _rpc_types(fds: descriptor_pb2.FileDescriptorSet) -> tuple[set[str], set[str]]:
    inputs: set[str] = set()
    outputs: set[str] = set()
    for file in fds.file:
        for service in file.service:
            for method in service.method:
                inputs.add(method.input_type.lstrip("."))
                outputs.add(method.output_type.lstrip("."))
    return inputs, outputs


def _empty_rejected(message: str) -> set[str]:
    """Top-level fields of `message` whose empty (zero) value its protovalidate rules reject."""
    cls = symbol_database.Default().GetSymbol(message)
    out: set[str] = set()
    for violation in protovalidate.Validator().collect_violations(cls()):
        if violation.proto.field.elements:
            out.add(violation.proto.field.elements[0].field_name)
    return out


def _import_contract(fds: descriptor_pb2.FileDescriptorSet) -> None:
    for file in fds.file:
        if file.package.startswith("makoto."):
            importlib.import_module(file.name.removesuffix(".proto").replace("/", ".") + "_pb2")


def test_every_field_has_a_field_behavior() -> None:
    fds = _fds()
    fields = list(contract_fields(fds))
    assert len(fields) > 350  # the whole contract is read, not one file
    assert missing(fds) == [], "fields without google.api.field_behavior"


def test_required_is_what_the_rules_reject_when_empty() -> None:
    """REQUIRED <=> protovalidate refuses the field's empty value, for every message a caller
    sends (requests and what they embed): the annotation and the enforcement cannot drift."""
    fds = _fds()
    _import_contract(fds)
    inputs, _ = _rpc_types(fds)
    sent = _reachable(fds, inputs) - OPTION_MESSAGES
    rejected = {m: _empty_rejected(m) for m in sent}
    wrong: list[str] = []
    for name, field in contract_fields(fds):
        message = name.rsplit(".", 1)[0]
        if message not in sent:
            continue
        required = FB.REQUIRED in behaviors(field)
        if required != (field.name in rejected[message]):
            wrong.append(f"{name}: REQUIRED={required}, empty value rejected={not required}")
    assert wrong == []
    # Spot checks that the rule compares the right things.
    assert "tenant_id" in rejected["makoto.storage.v1.GetItemRequest"]
    assert "page_size" not in rejected["makoto.metering.v1.ListAuditRecordsRequest"]


def test_answers_carry_no_request_side_behaviour() -> None:
    """Fields of messages only the server sends are OUTPUT_ONLY (an immutable identifier may say
    IMMUTABLE), never REQUIRED or OPTIONAL; fields callers send are never only OUTPUT_ONLY where
    the rules demand a value."""
    fds = _fds()
    inputs, outputs = _rpc_types(fds)
    sent = _reachable(fds, inputs)
    answers = _reachable(fds, outputs | OPERATION_METADATA) - sent
    assert {"makoto.tenant.v1.ExportInfo", "makoto.llm.v1.ChatCompletion"} <= answers
    wrong: list[str] = []
    for name, field in contract_fields(fds):
        got = set(behaviors(field))
        if name.rsplit(".", 1)[0] in answers:
            if got & {FB.REQUIRED, FB.OPTIONAL} or not got & {FB.OUTPUT_ONLY, FB.IMMUTABLE}:
                wrong.append(name)
        elif FB.OUTPUT_ONLY in got and FB.REQUIRED in got:
            wrong.append(name)
    assert wrong == []


def _without_behavior(fds: descriptor_pb2.FileDescriptorSet, *names: str) -> None:
    for file in fds.file:
        for message in file.message_type:
            for field in message.field:
                if f"{file.package}.{message.name}.{field.name}" in names:
                    field.options.ClearExtension(FB.field_behavior)


def test_the_check_names_every_field_without_one(tmp_path: Path) -> None:
    fds = _fds()
    names = ("makoto.tenant.v1.Tenant.display_name", "makoto.metering.v1.Invoice.total")
    _without_behavior(fds, *names)
    assert sorted(missing(fds)) == sorted(names)
    # scripts/gen.py runs the same check over the descriptor set it just wrote.
    bad = tmp_path / "bad.binpb"
    bad.write_bytes(fds.SerializeToString())
    run = run_gen_check("check_field_behavior", bad)
    assert run.returncode != 0
    assert "2 field(s) without google.api.field_behavior" in run.stderr
    assert all(name in run.stderr for name in names)

"""Write the third-party .proto sources that `buf` needs into .protodeps/ (git-ignored).

buf cannot resolve `deps:` offline, so the workspace (buf.yaml) lists .protodeps/ as a second
module, filled at build time from the installed wheels — never copied into the repo by hand:

- google/api/*, google/rpc/* : the .proto sources shipped in `googleapis-common-protos`
  (only the files our protos import, transitively);
- buf/validate/validate.proto : protovalidate ships no .proto source, only its descriptor.
  It is rendered here from that descriptor with every declaration (messages, fields, oneofs,
  enums, extensions, ranges) but WITHOUT options (the predefined CEL rules live in options).
  It exists only so `buf lint` / `buf format` can resolve the imports; code generation keeps
  using the real descriptor (scripts/gen.py).

Usage: python scripts/protodeps.py [OUT_DIR]
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / ".protodeps"
_IMPORT = re.compile(r'^import\s+(?:public\s+|weak\s+)?"([^"]+)";', re.M)

_SCALARS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
_LABELS = {1: "optional", 2: "required", 3: "repeated"}
_MAX_FIELD = 536870911


def _type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return _SCALARS.get(field.type) or field.type_name  # type_name is fully qualified (".pkg.T")


def _ranges(ranges: object, keyword: str, indent: str, *, inclusive_end: bool = False) -> list[str]:
    # Message ranges end exclusively, enum reserved ranges inclusively (descriptor.proto).
    parts = []
    for r in ranges:  # type: ignore[attr-defined]
        end = r.end if inclusive_end else r.end - 1
        parts.append(
            str(r.start) if end == r.start else f"{r.start} to {'max' if end >= _MAX_FIELD else end}"
        )
    return [f"{indent}{keyword} {', '.join(parts)};"] if parts else []


def _field(
    field: descriptor_pb2.FieldDescriptorProto, proto2: bool, in_oneof: bool, maps: dict[str, str]
) -> str:
    if field.type_name in maps and field.label == 3:
        return f"{maps[field.type_name]} {field.name} = {field.number};"
    label = "" if in_oneof else _LABELS[field.label]
    if not proto2 and label == "optional" and not field.proto3_optional:
        label = ""
    typ = "group" if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_GROUP else _type(field)
    default = f" [default = {_default(field)}]" if field.HasField("default_value") else ""
    return f"{label + ' ' if label else ''}{typ} {field.name} = {field.number}{default};"


def _default(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
        return '"' + field.default_value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return field.default_value


def _enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  {v.name} = {v.number};" for v in enum.value]
    lines += _ranges(enum.reserved_range, "reserved", indent + "  ", inclusive_end=True)
    lines += _reserved_names(enum.reserved_name, indent + "  ")
    return [*lines, f"{indent}}}"]


def _reserved_names(names: object, indent: str) -> list[str]:
    quoted = [f'"{n}"' for n in names]  # type: ignore[attr-defined]
    return [f"{indent}reserved {', '.join(quoted)};"] if quoted else []


def _message(msg: descriptor_pb2.DescriptorProto, scope: str, proto2: bool, indent: str) -> list[str]:
    full = f"{scope}.{msg.name}"
    maps = {
        f"{full}.{n.name}": f"map<{_type(n.field[0])}, {_type(n.field[1])}>"
        for n in msg.nested_type
        if n.options.map_entry
    }
    lines = [f"{indent}message {msg.name} {{"]
    inner = indent + "  "
    real_oneofs = {
        i
        for i, _ in enumerate(msg.oneof_decl)
        if any(f.HasField("oneof_index") and f.oneof_index == i and not f.proto3_optional for f in msg.field)
    }
    done: set[int] = set()
    for field in msg.field:
        if field.HasField("oneof_index") and field.oneof_index in real_oneofs:
            index = field.oneof_index
            if index in done:
                continue
            done.add(index)
            lines.append(f"{inner}oneof {msg.oneof_decl[index].name} {{")
            lines += [
                f"{inner}  {_field(f, proto2, True, maps)}"
                for f in msg.field
                if f.HasField("oneof_index") and f.oneof_index == index
            ]
            lines.append(f"{inner}}}")
        else:
            lines.append(f"{inner}{_field(field, proto2, False, maps)}")
    for nested in msg.nested_type:
        if not nested.options.map_entry:
            lines += _message(nested, full, proto2, inner)
    for enum in msg.enum_type:
        lines += _enum(enum, inner)
    lines += _ranges(msg.extension_range, "extensions", inner)
    lines += _ranges(msg.reserved_range, "reserved", inner)
    lines += _reserved_names(msg.reserved_name, inner)
    return [*lines, f"{indent}}}"]


def render_proto(fd: descriptor_pb2.FileDescriptorProto) -> str:
    """A .proto source declaring what the descriptor declares (options left out)."""
    proto2 = fd.syntax in ("", "proto2")
    lines = [
        "// Generated by scripts/protodeps.py from the descriptor in the installed wheel.",
        "// Declarations only (no options): for buf lint / buf format import resolution.",
        f'syntax = "{"proto2" if proto2 else fd.syntax}";',
        "",
        f"package {fd.package};",
        "",
        *[f'import "{dep}";' for dep in fd.dependency],
        "",
    ]
    for msg in fd.message_type:
        lines += _message(msg, f".{fd.package}", proto2, "")
    for enum in fd.enum_type:
        lines += _enum(enum, "")
    by_extendee: dict[str, list[descriptor_pb2.FieldDescriptorProto]] = {}
    for ext in fd.extension:
        by_extendee.setdefault(ext.extendee, []).append(ext)
    for extendee, exts in by_extendee.items():
        lines.append(f"extend {extendee} {{")
        lines += [f"  {_field(e, proto2, False, {})}" for e in exts]
        lines.append("}")
    return "\n".join(lines) + "\n"


def _googleapis_root() -> Path:
    import google.api

    return Path(google.api.__path__[0]).parent.parent


# Import path -> file in the googleapis wheel, where the two differ.
ALIASES = {"google/longrunning/operations.proto": "google/longrunning/operations_proto.proto"}


def _closure(roots: list[Path], search: Path) -> set[str]:
    """Files under `search` that the protos in `roots` import, transitively (import paths)."""
    found: set[str] = set()
    pending = [m for root in roots for p in root.rglob("*.proto") for m in _IMPORT.findall(p.read_text())]
    while pending:
        name = pending.pop()
        source = search / ALIASES.get(name, name)
        if name in found or not source.is_file():
            continue
        found.add(name)
        pending += _IMPORT.findall(source.read_text())
    return found


def write(out: Path = DEFAULT_OUT) -> None:
    from protovalidate._gen.buf.validate import validate_pb  # type: ignore[import-not-found]

    if out.exists():
        shutil.rmtree(out)
    googleapis = _googleapis_root()
    for name in sorted(_closure([ROOT / "proto"], googleapis)):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(googleapis / ALIASES.get(name, name), target)
    fd = descriptor_pb2.FileDescriptorProto.FromString(validate_pb.desc().proto.to_binary())
    target = out / fd.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_proto(fd))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)

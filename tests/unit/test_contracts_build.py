"""The contracts build offline and gen/ is what the protos produce today."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        # An editable install of gen/ (makoto-api) leaves its egg-info there (git-ignored).
        if p.is_file() and "__pycache__" not in p.parts and not any(s.endswith(".egg-info") for s in p.parts)
    }


def test_gen_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen.py"), "--out", str(out)], check=True)
    fresh, committed = _tree(out), _tree(ROOT / "gen")
    assert sorted(fresh) == sorted(committed), "gen/ file list is stale: run `make gen`"
    stale = [name for name, path in fresh.items() if not filecmp.cmp(path, committed[name], shallow=False)]
    assert stale == [], f"gen/ is stale for {stale}: run `make gen`"


def test_buf_lint_and_format_clean() -> None:
    """Plain `buf lint` / `buf format` on the workspace (buf.yaml), as a developer runs them; the
    third-party imports come from .protodeps/, written from the wheels by scripts/protodeps.py."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "protodeps.py")], check=True)
    lint = subprocess.run([str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [str(BUF), "format", "--diff", "--exit-code", "proto"], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_validate_proto_declarations_match_the_wheel(tmp_path: Path) -> None:
    """The rendered buf/validate/validate.proto declares exactly what the wheel's descriptor
    declares (options aside): buf compiles it and the messages, fields and extensions agree."""
    from google.protobuf import descriptor_pb2
    from protovalidate._gen.buf.validate import validate_pb

    out = tmp_path / "deps"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "protodeps.py"), str(out)], check=True)
    image = tmp_path / "image.binpb"
    subprocess.run(
        [str(BUF), "build", str(out), "--path", str(out / "buf/validate/validate.proto"), "-o", str(image)],
        check=True,
        cwd=ROOT,
    )
    built = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
    [rendered] = [f for f in built.file if f.name == "buf/validate/validate.proto"]
    wheel = descriptor_pb2.FileDescriptorProto.FromString(validate_pb.desc().proto.to_binary())

    def shape(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
        copy = descriptor_pb2.FileDescriptorProto()
        copy.CopyFrom(fd)
        copy.ClearField("source_code_info")
        copy.ClearField("options")
        copy.ClearField("syntax")

        def strip(msg: descriptor_pb2.DescriptorProto) -> None:
            msg.ClearField("options")
            for f in msg.field:
                f.ClearField("options")
                f.ClearField("json_name")
            for o in msg.oneof_decl:
                o.ClearField("options")
            for r in msg.extension_range:
                r.ClearField("options")
            for e in msg.enum_type:
                e.ClearField("options")
                for v in e.value:
                    v.ClearField("options")
            for n in msg.nested_type:
                strip(n)

        for m in copy.message_type:
            strip(m)
        for e in copy.enum_type:
            e.ClearField("options")
            for v in e.value:
                v.ClearField("options")
        for x in copy.extension:
            x.ClearField("options")
            x.ClearField("json_name")
        return copy

    from google.protobuf import text_format

    # Compared as text: the readable diff names the declaration that drifted.
    assert text_format.MessageToString(shape(rendered)) == text_format.MessageToString(shape(wheel))

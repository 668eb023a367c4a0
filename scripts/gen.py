"""Generate Python code, gRPC stubs and Envoy's descriptor set from proto/.

Third-party protos come from installed wheels at build time (never copied into the repo):
googleapis from `googleapis-common-protos`, well-known types from `grpc_tools`, and
buf/validate/validate.proto from the descriptor shipped inside `protovalidate`.

Usage: python scripts/gen.py [--out DIR]

(buf lint/format read the sources; scripts/protodeps.py gives buf the third-party imports.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"


def _validate_descriptor_set() -> bytes:
    """FileDescriptorSet with buf/validate/validate.proto and the google.protobuf files it imports."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from protovalidate._gen.buf.validate import validate_pb  # type: ignore[import-not-found]

    root = descriptor_pb2.FileDescriptorProto.FromString(validate_pb.desc().proto.to_binary())
    fds = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()
    pool = descriptor_pool.Default()

    def add_dep(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        fd = pool.FindFileByName(name)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        for dep in proto.dependency:
            add_dep(dep)
        fds.file.append(proto)

    # google.protobuf well-known types are in the default pool once imported.
    import google.protobuf.descriptor_pb2
    import google.protobuf.duration_pb2
    import google.protobuf.field_mask_pb2
    import google.protobuf.timestamp_pb2  # noqa: F401

    for dep in root.dependency:
        add_dep(dep)
    seen.add(root.name)
    fds.file.append(root)
    return fds.SerializeToString()


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))


def run_protoc(args: list[str]) -> None:
    from grpc_tools import protoc

    rc = protoc.main(["grpc_tools.protoc", *args])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}): {' '.join(args)}")


def _plugin(name: str) -> str:
    """A protoc plugin installed beside this interpreter (make setup puts it in .venv/bin)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} not found beside {sys.executable}: run `make setup`")
    return str(path)


def include_dirs(tmp: Path) -> list[str]:
    import google.api  # googleapis-common-protos
    import grpc_tools

    googleapis_root = Path(google.api.__path__[0]).parent.parent
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    # The wheel ships google/longrunning/operations.proto as operations_proto.proto (its
    # descriptor keeps the canonical name): give protoc the canonical path.
    alias = tmp / "aliases" / "google" / "longrunning" / "operations.proto"
    alias.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(googleapis_root / "google" / "longrunning" / "operations_proto.proto", alias)
    return [str(PROTO), str(googleapis_root), str(wkt), str(tmp / "aliases")]


def generate(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vset = Path(tmp) / "validate.binpb"
        vset.write_bytes(_validate_descriptor_set())
        incs = [f"-I{d}" for d in include_dirs(Path(tmp))]
        files = proto_files()
        out.mkdir(parents=True, exist_ok=True)
        # Python messages, .pyi stubs and gRPC stubs for our protos plus buf/validate.
        run_protoc(
            [
                f"--descriptor_set_in={vset}",
                *incs,
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                # Typed gRPC stubs (`*_pb2_grpc.pyi`) from mypy-protobuf: grpcio-tools writes none.
                f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
                f"--mypy_grpc_out={out}",
                "buf/validate/validate.proto",
                *files,
            ]
        )
        # Descriptor set for Envoy's transcoder and field extraction (all imports included).
        run_protoc(
            [
                f"--descriptor_set_in={vset}",
                *incs,
                "--include_imports",
                f"--descriptor_set_out={out / 'makoto.binpb'}",
                *files,
                # so the transcoder can render google.rpc.Status details as JSON
                "google/rpc/error_details.proto",
                "google/rpc/status.proto",
            ]
        )
    # buf/validate's grpc files are empty noise.
    for junk in [*out.rglob("validate_pb2_grpc.py"), *out.rglob("validate_pb2_grpc.pyi")]:
        junk.unlink()
    # gen/ is also the makoto-api project (the server distribution depends on it).
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_api_package import write_project

    write_project(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "gen"))
    ns = parser.parse_args()
    out = Path(ns.out)
    if out.exists() and out.resolve() == (ROOT / "gen").resolve():
        # Regenerate from scratch so deleted protos leave nothing behind.
        for child in out.iterdir():
            if child.name in {"makoto", "buf", "makoto.binpb"}:
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    generate(out)
    check_access(out / "makoto.binpb")
    check_field_behavior(out / "makoto.binpb")
    print(f"generated {len(proto_files())} protos into {os.path.relpath(out)}", file=sys.stderr)
    if out.resolve() == (ROOT / "gen").resolve():
        write_derived()


def check_access(descriptor_set: Path) -> None:
    """Every RPC must say who may call it (the makoto.api.v1.access option): Envoy and the
    services' interceptors are built from it, so a method without one stops the build."""
    from services.common.access import contract_services, problems
    from services.mesh.methods import load_descriptor_set

    found = problems(contract_services(load_descriptor_set(descriptor_set)))
    if found:
        raise SystemExit("access rules missing or wrong:\n  " + "\n  ".join(found))


def check_field_behavior(descriptor_set: Path) -> None:
    """Every field of the contract carries google.api.field_behavior (AIP-203): a field added
    without one stops the build, so the annotations cannot fall behind again."""
    from services.apidoc.field_behavior import missing
    from services.mesh.methods import load_descriptor_set

    found = missing(load_descriptor_set(descriptor_set))
    if found:
        raise SystemExit(
            f"{len(found)} field(s) without google.api.field_behavior "
            "(REQUIRED, OPTIONAL, OUTPUT_ONLY or IMMUTABLE):\n  " + "\n  ".join(found)
        )


def write_derived() -> None:
    """What follows from the descriptor set: the OpenAPI document and the Kubernetes gateway's
    Envoy config (both checked fresh by tests)."""
    from services.apidoc import openapi
    from services.deploy import gateway

    openapi.main([])
    gateway.main(["render"])


if __name__ == "__main__":
    main()

"""Build `makoto-api`, the client distribution: the generated messages (`*_pb2.py` + `.pyi`), the
gRPC stubs (`*_pb2_grpc.py`), buf/validate's messages they import, and `py.typed` - gen/ as it is
committed, nothing from services/.

    python scripts/build_api_package.py [--out dist]      -> dist/makoto_api-<version>-py3-none-any.whl

The wheel is built offline (`pip wheel --no-deps --no-build-isolation`, setuptools from the
running environment) from a staging copy, so the repository's gen/ stays the single source.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "gen"
PACKAGES = ("makoto", "buf")


def _versions() -> dict[str, str]:
    """Runtime pins the generated code needs: the gRPC stubs refuse an older grpcio than the one
    that generated them, the messages an older protobuf runtime."""
    import re
    from importlib.metadata import version

    # The protobuf runtime must be at least the version that generated the messages.
    header = next((GEN / "makoto").rglob("*_pb2.py")).read_text()
    match = re.search(r"# Protobuf Python Version: (\S+)", header)
    assert match, "generated messages carry no protobuf version"
    return {
        "grpcio": version("grpcio"),
        "protobuf": match.group(1),
        "googleapis-common-protos": version("googleapis-common-protos"),
    }


def pyproject(version: str) -> str:
    pins = _versions()
    deps = ",\n".join(f'  "{name}>={pin}"' for name, pin in pins.items())
    return f'''[project]
name = "makoto-api"
version = "{version}"
description = "MAKOTO platform API: protobuf messages (typed), gRPC stubs, buf/validate rules"
requires-python = ">=3.11"
dependencies = [
{deps},
]

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[tool.setuptools.packages.find]
where = ["."]
include = ["makoto*", "buf*"]
namespaces = true

[tool.setuptools.package-data]
"*" = ["*.pyi", "py.typed"]
'''


def version() -> str:
    """makoto-api is versioned with the server distribution (which pins it exactly)."""
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def write_project(into: Path) -> None:
    """Make `into` (gen/ itself, or a staging copy) the makoto-api project: its pyproject.toml,
    README and py.typed markers. scripts/gen.py writes them into gen/, so `pip install -e gen`
    (make setup) installs makoto-api from the repository -- the server's dependency is satisfied
    without any package index."""
    files = {
        # PEP 561: the messages ship .pyi stubs; py.typed tells type checkers to use them.
        **{into / pkg / "py.typed": "" for pkg in PACKAGES},
        into / "pyproject.toml": pyproject(version()),
        into / "README.md": "Generated from the MAKOTO protos (gen/). Do not edit.\n",
    }
    for path, text in files.items():
        # Unchanged files keep their mtime: `make setup` reinstalls only when the project changed.
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def stage(into: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(GEN / pkg, into / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_project(into)
    return into


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = stage(Path(tmp) / "makoto-api")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(out),
                str(src),
            ],
            check=True,
        )
    [wheel] = sorted(out.glob("makoto_api-*.whl"))
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The server distribution depends on makoto-api, and makoto-api is gen/ itself (installed by
`make setup` from the repository, never from an index)."""

from __future__ import annotations

import tomllib
from importlib.metadata import distribution, requires
from pathlib import Path

import makoto.llm.v1.llm_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_pins_makoto_api_at_its_own_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"makoto-api=={version}" in (requires("makoto") or [])
    assert distribution("makoto-api").version == version
    api = tomllib.loads((ROOT / "gen" / "pyproject.toml").read_text())["project"]
    assert (api["name"], api["version"]) == ("makoto-api", version)


def test_the_generated_packages_come_from_gen_not_from_the_server() -> None:
    assert Path(makoto.llm.v1.llm_pb2.__file__).resolve().is_relative_to(ROOT / "gen")
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert server["include"] == ["services*"] and server["where"] == ["."]
    assert (ROOT / "gen" / "makoto" / "py.typed").exists()

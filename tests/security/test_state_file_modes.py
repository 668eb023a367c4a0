"""Everything `make up` writes under its home is the mesh user's alone (issue 9, item 2): keys,
SQLite databases, spools, object files, logs and Envoy's admin socket are 0600 (or stricter),
directories 0700. The launcher and every server set umask 0077 at start; the dev signing key
and JWKS are written 0600 explicitly (they are made before any server runs)."""

from __future__ import annotations

import stat

import httpx
import pytest

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import API, create_tenant

pytestmark = pytest.mark.e2e


def test_every_state_file_is_private(mesh: RunningMesh) -> None:
    # Some state first: a tenant with an item and an object (databases, object files, spools).
    tenant = create_tenant(mesh, "sec-modes")
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.MEMBER, tenant), timeout=30) as c:
        r = c.put(
            f"{API}/tenants/{tenant}/collections/c/partitions/p/items/s",
            json={"attributes": {"v": {"stringValue": "x"}}},
        )
        assert r.status_code == 200, r.text
        r = c.put(f"{API}/tenants/{tenant}/objects/report.txt", content=b"hello")
        assert r.status_code == 200, r.text
    home = mesh.settings.home
    seen: dict[str, int] = {}
    loose: list[str] = []
    for path in [home, *home.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        kind = "dir" if stat.S_ISDIR(mode) else "socket" if stat.S_ISSOCK(mode) else "file"
        seen[kind] = seen.get(kind, 0) + 1
        if stat.S_IMODE(mode) & 0o077:
            loose.append(f"{oct(stat.S_IMODE(mode))} {kind} {path.relative_to(home)}")
    assert not loose, "\n".join(loose)
    # The walk saw the state it is about (not an empty or unreadable home).
    names = {p.name for p in home.rglob("*")}
    assert {"signing-key.pem", "jwks.json", "envoy.log", "envoy-access.log", "envoy-admin.sock"} <= names
    assert any(n.endswith(".sqlite3") for n in names), names
    assert seen.get("socket", 0) >= 1 and seen["file"] > 5, seen

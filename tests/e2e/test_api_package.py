"""The `makoto-api` client distribution: built from gen/ by scripts/build_api_package.py,
installed into a fresh virtualenv that has neither this repository nor the server distribution,
then used to call the running mesh through Envoy over gRPC, and type-checked by mypy through its
`py.typed` + `.pyi` files.

Nothing is downloaded: the fresh venv gets the wheel with `--no-index --no-deps`, and its runtime
dependencies (grpcio, protobuf, googleapis-common-protos and what they need, dist-info included
so `pip check` judges the wheel's declared requirements) are linked from the test environment."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import sysconfig
import textwrap
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.common.identity import Role
from services.mesh.envoy_config import REPO_ROOT
from tests.e2e.conftest import RunningMesh

pytestmark = pytest.mark.e2e

RUNTIME_DEPS = ("grpcio", "protobuf", "googleapis-common-protos")
# What a client's type checker needs beside the wheel: the grpc and protobuf types its .pyi name.
TYPING_DEPS = ("types-grpcio", "types-protobuf")

CLIENT = textwrap.dedent(
    """
    import json, sys
    import grpc
    import makoto
    from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
    from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

    target, tenant, token = sys.argv[1:4]
    meta = (("authorization", "Bearer " + token),)
    with grpc.insecure_channel(target) as channel:
        models = llm_pb2_grpc.LLMServiceStub(channel).ListModels(
            llm_pb2.ListModelsRequest(tenant_id=tenant), metadata=meta, timeout=10
        )
        got = tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(tenant_id=tenant), metadata=meta, timeout=10
        )
        try:
            tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
                tenant_pb2.GetTenantRequest(tenant_id="someone-else"), metadata=meta, timeout=10
            )
            refused = "OK"
        except grpc.RpcError as exc:
            refused = exc.code().name
    try:
        import services  # noqa: F401
        leaked = True
    except ImportError:
        leaked = False
    print(json.dumps({
        "package_path": list(makoto.__path__),
        "models": [m.id for m in models.models],
        "tenant": got.tenant_id,
        "foreign": refused,
        "server_code_visible": leaked,
    }))
    """
)

TYPED_OK = textwrap.dedent(
    """
    from makoto.storage.v1 import objects_pb2

    meta = objects_pb2.ObjectMetadata(key="a", size_bytes=3)
    size: int = meta.size_bytes
    key: str = meta.key
    """
)
TYPED_WRONG = TYPED_OK + "wrong: str = meta.size_bytes\n"

# The gRPC stubs' .pyi: a stub built on a grpc.aio channel is the awaitable one, its methods take
# the request message the proto names and return its response.
STUB_OK = textwrap.dedent(
    """
    import grpc.aio
    from makoto.llm.v1 import llm_pb2, llm_pb2_grpc


    async def models(channel: grpc.aio.Channel, tenant: str) -> list[str]:
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        reply = await stub.ListModels(llm_pb2.ListModelsRequest(tenant_id=tenant), timeout=10)
        listed: llm_pb2.ListModelsResponse = reply
        return [m.id for m in listed.models]


    async def stream(channel: grpc.aio.Channel) -> int:
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        chunks = 0
        async for _ in stub.StreamChatCompletion(llm_pb2.CreateChatCompletionRequest(model="m")):
            chunks += 1
        return chunks
    """
)
STUB_WRONG_REQUEST = STUB_OK + textwrap.dedent(
    """

    async def wrong(channel: grpc.aio.Channel) -> None:
        await llm_pb2_grpc.LLMServiceStub(channel).ListModels(llm_pb2.CountTokensRequest())
    """
)
STUB_SYNC_NOT_AWAITABLE = STUB_OK + textwrap.dedent(
    """

    async def sync_awaited(channel: grpc.Channel) -> None:
        await llm_pb2_grpc.LLMServiceStub(channel).ListModels(llm_pb2.ListModelsRequest())
    """
)


def _closure(names: tuple[str, ...]) -> set[str]:
    """The distributions `names` need at run time, transitively (e.g. grpcio -> typing-extensions)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in importlib.metadata.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("api-package")
    build = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_api_package.py"), "--out", str(root / "dist")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = Path(build.stdout.strip().splitlines()[-1])
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "-q", "--no-index", "--no-deps", str(wheel)], check=True, timeout=300)
    # The runtime dependencies, linked (with their metadata) from this environment.
    deps = root / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in _closure(RUNTIME_DEPS) | set(TYPING_DEPS):
        dist = importlib.metadata.distribution(name)
        files = [Path(str(f)) for f in dist.files or []]
        tops = {f.parts[0] for f in files if not f.parts[0].endswith(".dist-info") and ".." not in f.parts}
        tops.add(next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info")))
        for top in tops:
            if (site / top).exists() and not (deps / top).exists():
                (deps / top).symlink_to(site / top)
    fresh_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (fresh_site / "makoto-test-deps.pth").write_text(f"{deps}\n")
    return wheel, python


def test_the_wheel_holds_messages_stubs_types_and_nothing_else(fresh_venv: tuple[Path, Path]) -> None:
    wheel, python = fresh_venv
    names = zipfile.ZipFile(wheel).namelist()
    assert "makoto/py.typed" in names and "buf/py.typed" in names
    assert "makoto/storage/v1/storage_service_pb2_grpc.py" in names
    assert "makoto/storage/v1/objects_pb2.pyi" in names
    # Every gRPC stub module ships its typed stub.
    grpc_modules = sorted(n for n in names if n.endswith("_pb2_grpc.py"))
    assert "makoto/llm/v1/llm_pb2_grpc.py" in grpc_modules
    assert [n for n in grpc_modules if n + "i" not in names] == []
    assert "buf/validate/validate_pb2.py" in names
    assert not [n for n in names if n.startswith("services/") or n.endswith(".binpb")]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for dep in RUNTIME_DEPS:
        assert f"Requires-Dist: {dep}>=" in metadata
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_fresh_venv_calls_the_mesh_with_the_package(
    fresh_venv: tuple[Path, Path], mesh: RunningMesh
) -> None:
    _, python = fresh_venv
    tenant = f"apipkg-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{mesh.base_url}/api/v1/admin/tenants",
        json={"tenantId": tenant},
        headers=mesh.headers(Role.PLATFORM_ADMIN),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    token = mesh.headers(Role.TENANT_ADMIN, tenant)["authorization"].removeprefix("Bearer ")
    script = python.parent.parent / "client.py"
    script.write_text(CLIENT)
    run = subprocess.run(
        [str(python), "-I", str(script), mesh.grpc_target, tenant, token],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=script.parent,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert all(str(python.parent.parent) in p for p in out["package_path"]), out
    assert out["server_code_visible"] is False
    assert out["tenant"] == tenant
    assert "sim-chat" in out["models"]
    assert out["foreign"] == "PERMISSION_DENIED"


def test_type_checkers_see_the_message_and_stub_types(fresh_venv: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = fresh_venv
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n")

    def mypy(source: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "client_typed.py"
        path.write_text(source)
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(config),
                "--python-executable",
                str(python),
                "--no-incremental",
                str(path),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )

    ok = mypy(TYPED_OK)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = mypy(TYPED_WRONG)
    assert wrong.returncode == 1, wrong.stdout
    assert (
        'Incompatible types in assignment (expression has type "int", variable has type "str")'
        in wrong.stdout
    )

    ok = mypy(STUB_OK)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = mypy(STUB_WRONG_REQUEST)
    assert wrong.returncode == 1, wrong.stdout
    assert '"CountTokensRequest"; expected "ListModelsRequest"' in wrong.stdout, wrong.stdout
    assert wrong.stdout.count("error:") == 1, wrong.stdout
    sync = mypy(STUB_SYNC_NOT_AWAITABLE)
    assert sync.returncode == 1, sync.stdout
    assert 'Incompatible types in "await" (actual type "ListModelsResponse"' in sync.stdout, sync.stdout

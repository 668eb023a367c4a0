"""deploy/compose.yaml and deploy/Dockerfile, checked offline (no container engine runs here):
the compose file parses, every MAKOTO container runs a command that exists in this repository
and a build target the Dockerfile defines, every name it refers to is defined, and the image is
multi-stage and runs as a non-root user."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import ServerName
from services.common.config import MeshSettings
from services.common.secrets import LocalSecretStore
from services.common.tls import IDENTITIES
from services.deploy.gateway import upstream_hosts
from services.mesh.envoy_config import REPO_ROOT
from services.mesh.launcher import SIMULATOR_KEY_SECRET

DEPLOY = REPO_ROOT / "deploy"
# Images not built from this repository: official images, pinned (never `latest`).
EXTERNAL_IMAGES = {
    "postgres": "postgres:16.4-bookworm",
    "redis": "redis:7.4-bookworm",
    "nats": "nats:2.10-alpine",
    "azurite": "mcr.microsoft.com/azure-storage/azurite:3.33.0",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            current = stages.setdefault(m.group(1), [])
        if current is not None:
            current.append(line)
    return stages


def test_the_compose_file_has_the_fleet(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("tenant", "storage", "storage-2", "llm", "llm-2", "metering", "gateway", "llm-simulator"):
        assert name in services
    for name in ("postgres", "redis", "nats", "moto", "azurite", "cosmos"):
        assert name in services


def test_the_cosmos_emulator_is_the_one_the_tests_use() -> None:
    stage = "\n".join(dockerfile_stages()["cosmos-emulator"])
    assert "npm ci" in stage and "package-lock.json" in stage  # the version the tests pin
    assert '"/app/node_modules/.bin/cosmosdb-server"' in stage
    lock = (REPO_ROOT / "package-lock.json").read_text()
    assert '"node_modules/@vercel/cosmosdb-server"' in lock


def test_every_image_is_built_here_or_a_pinned_official_one(compose: dict[str, Any]) -> None:
    stages = dockerfile_stages()
    for name, svc in compose["services"].items():
        if "build" in svc:
            build = svc["build"]
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
            assert build["target"] in stages, f"{name}: no stage {build['target']}"
        else:
            assert svc["image"] == EXTERNAL_IMAGES[name], name
            assert not svc["image"].endswith(":latest")


def test_every_makoto_command_exists_in_the_repo(compose: dict[str, Any]) -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    stages = dockerfile_stages()
    runtime_entry = next(i for i in stages["runtime"] if i.startswith("ENTRYPOINT"))
    assert '["makoto"]' in runtime_entry and "makoto" in scripts
    checked = 0
    for svc in compose["services"].values():
        if svc.get("build", {}).get("target") != "runtime":
            continue
        argv = [*svc.get("entrypoint", ["makoto"]), *svc.get("command", [])]
        if argv[0] == "makoto":
            assert argv[1] == "serve", argv
            ServerName(argv[2])  # raises for a server the CLI does not know
        else:
            assert argv[:2] == ["python", "-m"], argv
            assert importlib.util.find_spec(argv[2]) is not None, argv
        checked += 1
    assert checked >= 9
    # The emulator stage's entrypoint is moto's server, which the dev extras install.
    assert any("moto_server" in i for i in stages["emulators"])
    dev = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("moto[server]") for d in dev)


def test_every_name_compose_refers_to_is_defined(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for v in svc.get("volumes", []):
            source = v.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
            else:
                assert source in volumes, source
    # Where services find each other, and the gateway's upstreams, are compose services.
    env = services["tenant"]["environment"]
    # Read the way a container reads it: MAKOTO_* from the environment.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = MeshSettings()
    assert set(settings.service_hosts.values()) <= set(services)
    assert settings.address("tenant") == "tenant:50051"
    assert settings.simulator_url == "http://llm-simulator:8090/v1"
    for names in upstream_hosts("compose").values():
        assert set(names) <= set(services)
    # Replicas of one service get distinct replica indexes (each its own usage spool).
    assert (
        services["storage"]["environment"]["MAKOTO_REPLICA_INDEX"]
        != services["storage-2"]["environment"]["MAKOTO_REPLICA_INDEX"]
    )
    for url in ("MAKOTO_TENANT_DB_URL", "MAKOTO_METERING_DB_URL", "MAKOTO_REDIS_URL"):
        assert re.search(r"@postgres:|//redis:", env[url]), url


def test_the_image_is_multi_stage_and_runs_unprivileged() -> None:
    stages = dockerfile_stages()
    assert {"build", "runtime", "emulators"} <= set(stages)
    text = (DEPLOY / "Dockerfile").read_text()
    last_from = [line for line in text.splitlines() if line.startswith("FROM")][-1]
    assert last_from.endswith("AS runtime"), "runtime must be the default (last) stage"
    for stage in ("runtime", "emulators"):
        users = [i.split()[1] for i in stages[stage] if i.startswith("USER")]
        assert users and users[-1].split(":")[0] not in ("0", "root"), stage
    # The runtime stage carries no compilers: build tools are installed in `build` only.
    assert not any("build-essential" in i for i in stages["runtime"])
    # Everything the build copies from the context exists in the repository.
    for stage in stages.values():
        for instr in stage:
            if instr.startswith("COPY") and "--from" not in instr:
                sources = shlex.split(instr)[1:-1]
                for src in sources:
                    assert (REPO_ROOT / src).exists(), src


def test_init_home_creates_the_keys_once_and_prints_no_secret(tmp_path: Path) -> None:
    env = {**os.environ, "MAKOTO_HOME": str(tmp_path / "home")}
    runs = [
        subprocess.run(
            [sys.executable, "-m", "services.deploy.init_home"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    settings = MeshSettings.model_construct(home=tmp_path / "home")
    assert settings.jwks_path.exists() and settings.signing_key_path.exists()
    # The mesh's mTLS material for every identity (Envoy's included), made once.
    assert all((settings.home / "tls" / f"{n}.{ext}").exists() for n in IDENTITIES for ext in ("pem", "key"))
    key = LocalSecretStore(settings).get(SIMULATOR_KEY_SECRET)
    assert key
    assert runs[0].stdout == runs[1].stdout  # the second run reuses what the first made
    assert key not in runs[0].stdout + runs[0].stderr
    assert "PRIVATE KEY" not in runs[0].stdout + runs[0].stderr

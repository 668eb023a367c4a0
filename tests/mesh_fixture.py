"""End-to-end fixtures (registered for the whole run by tests/conftest.py).

`mesh` (session): the whole mesh started exactly as `make up` does — `python -m services.cli up`
as a subprocess on free ports with its own temporary MAKOTO_HOME — and stopped with SIGTERM at the
end, checking that no child process survives.

`start_mesh(root, storage_replicas=2, llm_replicas=2)` / `stop_mesh(mesh)`: a mesh of a test
module's own, e.g. with replicas; `mesh.replicas("storage")` gives each replica's PID and direct
address (from the launcher's <home>/run/children.json).

`envoy_spy` (session): a real Envoy in front of small recording servicers (tests/e2e/envoy_spy.py),
for Envoy's own tests that must see exactly what reaches a service.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
import pytest_asyncio

from services.common.config import MeshSettings
from services.common.identity import Role
from tests.e2e.envoy_spy import SpyMesh
from tests.support import bearer, direct_channel, free_port, make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
SERVICES = ("tenant", "storage", "llm", "metering")


@dataclass(frozen=True)
class Replica:
    """One process of a (possibly replicated) service, reachable directly at `address`."""

    service: str
    index: int
    pid: int
    address: str


@dataclass
class RunningMesh:
    settings: MeshSettings
    home: Path
    process: subprocess.Popen[bytes]
    launcher_log: Path

    @property
    def base_url(self) -> str:
        """Envoy, REST: e.g. base_url + "/api/v1/admin/tenants"."""
        return f"http://{self.settings.host}:{self.settings.envoy_port}"

    @property
    def grpc_target(self) -> str:
        """Envoy, gRPC (h2c)."""
        return f"{self.settings.host}:{self.settings.envoy_port}"

    def address(self, service: str) -> str:
        """A service's own port (direct gRPC, bypassing Envoy)."""
        return self.settings.address(service)

    def channel(self, target: str, options: list[tuple[str, str | int]] | None = None) -> grpc.aio.Channel:
        """A channel to Envoy (grpc_target: h2c, as clients reach the edge) or to a service's
        own port (mTLS, a service's certificate)."""
        if target == self.grpc_target:
            return grpc.aio.insecure_channel(target, options=options)
        return direct_channel(target, options=options)

    @property
    def simulator_url(self) -> str:
        return self.settings.simulator_url

    def replicas(self, service: str) -> list[Replica]:
        """Each running replica of a service (replica 0 first), from the launcher's
        <home>/run/children.json; a restarted replica shows its new PID once it is written."""
        rows = json.loads((self.home / "run" / "children.json").read_text())
        found = [
            Replica(service=r["service"], index=r["replica"], pid=r["pid"], address=r["address"])
            for r in rows
            if r["service"] == service
        ]
        return sorted(found, key=lambda r: r.index)

    def wait_replica_restarted(
        self, service: str, index: int, old_pid: int, timeout: float = 30.0
    ) -> Replica:
        """After a replica was killed: the launcher's replacement (new PID, port answering)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                replica = self.replicas(service)[index]
                if replica.pid != old_pid:
                    host, port = replica.address.rsplit(":", 1)
                    with socket.create_connection((host, int(port)), timeout=1):
                        return replica
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} replica {index} not restarted within {timeout}s")
            time.sleep(0.1)

    def metadata(self, role: Role | str, tenant_id: str | None = None) -> tuple[tuple[str, str], ...]:
        """gRPC metadata with a fresh dev token."""
        return bearer(self.settings, role, tenant_id)

    def headers(self, role: Role | str, tenant_id: str | None = None) -> dict[str, str]:
        """HTTP headers with a fresh dev token."""
        return dict(self.metadata(role, tenant_id))

    def logs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for path in sorted((self.home / "logs").glob("*.log")):
            out[path.name] = path.read_text(errors="replace")
        out["launcher"] = self.launcher_log.read_text(errors="replace") if self.launcher_log.exists() else ""
        return out


def _log_tails(home: Path, launcher_log: Path, lines: int = 30) -> str:
    parts = []
    for path in [launcher_log, *sorted((home / "logs").glob("*.log"))]:
        if path.exists():
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            parts.append(f"----- {path.name} -----\n{tail}")
    return "\n".join(parts)


def _mesh_env(settings: MeshSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_")}
    env.update(
        {
            "MAKOTO_HOME": str(settings.home),
            "MAKOTO_TLS": "true" if settings.tls else "false",
            **({"MAKOTO_TLS_DIR": str(settings.tls_dir)} if settings.tls_dir is not None else {}),
            "MAKOTO_TENANT_PORT": str(settings.tenant_port),
            "MAKOTO_STORAGE_PORT": str(settings.storage_port),
            "MAKOTO_LLM_PORT": str(settings.llm_port),
            "MAKOTO_LLM_OPENAI_PORT": str(settings.llm_openai_port),
            "MAKOTO_METERING_PORT": str(settings.metering_port),
            "MAKOTO_SIMULATOR_PORT": str(settings.simulator_port),
            "MAKOTO_LOG_LEVEL": settings.log_level,
            "MAKOTO_EGRESS_ALLOW": ",".join(settings.egress_allow),
            "MAKOTO_SHUTDOWN_GRACE_SECONDS": str(settings.shutdown_grace_seconds),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Observing: only when asked for (tests/e2e/observed.py), so the default mesh exports nothing.
    if settings.otlp_endpoint:
        env["MAKOTO_OTLP_ENDPOINT"] = settings.otlp_endpoint
        env["MAKOTO_OTLP_FLUSH_SECONDS"] = str(settings.otlp_flush_seconds)
    if settings.metrics_ports:
        env["MAKOTO_METRICS_PORTS"] = json.dumps(settings.metrics_ports)
    # Replicas (edge): only when asked for, so the default mesh's environment stays as it was.
    for service in ("storage", "llm"):
        if settings.replicas(service) > 1:
            env[f"MAKOTO_{service.upper()}_REPLICAS"] = str(settings.replicas(service))
            env[f"MAKOTO_{service.upper()}_REPLICA_PORTS"] = json.dumps(settings.replica_ports(service)[1:])
            env["MAKOTO_DRAIN_DELAY_SECONDS"] = str(settings.drain_delay_seconds)
    if settings.replicas("llm") > 1:
        env["MAKOTO_LLM_OPENAI_REPLICA_PORTS"] = json.dumps(settings.openai_ports()[1:])
    # Workers per server process: likewise only when asked for.
    for service in ("tenant", "storage", "llm", "metering"):
        count = getattr(settings, f"{service}_workers")
        if count != 1:
            env[f"MAKOTO_{service.upper()}_WORKERS"] = str(count)
    return env


def spawn_launcher(
    settings: MeshSettings,
    log: Path,
    ready_timeout: float = READY_TIMEOUT_S,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m services.cli up` for these settings, as `make up` runs it (output to log).
    Shared by the test fixture and the benchmarks (tests/bench/mesh.py)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "up",
                "--home",
                str(settings.home),
                "--port",
                str(settings.envoy_port),
                "--host",
                settings.host,
                "--timeout",
                str(ready_timeout),
            ],
            cwd=REPO_ROOT,
            env={**_mesh_env(settings), **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_healthy(mesh: RunningMesh) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = mesh.base_url + "/healthz"
    while True:
        if mesh.process.poll() is not None:
            raise RuntimeError(f"`makoto up` exited with {mesh.process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"GET /healthz not 200 after {READY_TIMEOUT_S:.0f}s")
        time.sleep(0.2)


def _wait_banner(mesh: RunningMesh, timeout: float = 15.0) -> None:
    """The launcher prints its banner right after it saw /healthz 200 itself: until then it is
    still "starting" (a SIGTERM then exits 130), so a started mesh is one that printed it."""
    deadline = time.monotonic() + timeout
    while "MAKOTO mesh is up." not in mesh.launcher_log.read_text(errors="replace"):
        if mesh.process.poll() is not None:
            raise RuntimeError(f"`makoto up` exited with {mesh.process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"`makoto up` printed no banner within {timeout:.0f}s of /healthz 200")
        time.sleep(0.05)


def _stop(mesh: RunningMesh) -> None:
    """SIGTERM the launcher; it must stop every child and exit 0, leaving no process behind."""
    try:
        children = psutil.Process(mesh.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    mesh.process.send_signal(signal.SIGTERM)
    try:
        code = mesh.process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        for proc in [mesh.process, *children]:
            try:
                proc.kill()
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        raise AssertionError("`makoto up` did not stop within 45 s of SIGTERM") from None
    _, alive = psutil.wait_procs(children, timeout=5)
    for proc in alive:
        proc.kill()
    assert not alive, f"children still running after `makoto up` stopped: {alive}"
    assert code == 0, f"`makoto up` exited with {code} on SIGTERM\n{_log_tails(mesh.home, mesh.launcher_log)}"


def start_mesh(
    root: Path,
    *,
    storage_replicas: int = 1,
    llm_replicas: int = 1,
    extra_env: Mapping[str, str] | None = None,
    **overrides: object,
) -> RunningMesh:
    """Start a mesh of its own (as `make up` does) under `root` on free ports, with N replicas of
    storage and llm (each replica its own process and free port, one Envoy cluster of N
    endpoints). Stop it with `stop_mesh`. For a module fixture:

        @pytest.fixture(scope="module")
        def replicated(tmp_path_factory):
            mesh = start_mesh(tmp_path_factory.mktemp("rep"), storage_replicas=2, llm_replicas=2)
            yield mesh
            stop_mesh(mesh)
    """
    values: dict[str, object] = {
        "log_level": "INFO",
        "shutdown_grace_seconds": 2.0,
        "storage_replicas": storage_replicas,
        "llm_replicas": llm_replicas,
        "storage_replica_ports": [free_port() for _ in range(storage_replicas - 1)],
        "llm_replica_ports": [free_port() for _ in range(llm_replicas - 1)],
        "llm_openai_replica_ports": [free_port() for _ in range(llm_replicas - 1)],
        "drain_delay_seconds": 2.5,
    }
    values.update(overrides)
    settings = make_settings(root / "home", **values)
    launcher_log = root / "launcher.log"
    process = spawn_launcher(settings, launcher_log, extra_env=extra_env)
    running = RunningMesh(settings=settings, home=settings.home, process=process, launcher_log=launcher_log)
    try:
        _wait_healthy(running)
        _wait_banner(running)
    except (RuntimeError, TimeoutError) as exc:
        tails = _log_tails(settings.home, launcher_log)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        pytest.fail(f"mesh did not start: {exc}\n{tails}", pytrace=False)
    return running


def stop_mesh(mesh: RunningMesh) -> None:
    """SIGTERM the launcher; asserts it stopped every child and exited 0."""
    _stop(mesh)


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    """The whole mesh as `make up` runs it (four services, the LLM simulator, Envoy)."""
    running = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield running
    _stop(running)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def envoy_spy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SpyMesh]:
    """Envoy (real subprocess, config as `makoto up` renders it) in front of recording servicers."""
    settings = make_settings(tmp_path_factory.mktemp("envoy-spy") / "home")
    spy = SpyMesh(settings)
    try:
        await spy.start()
        yield spy
    finally:
        await spy.stop()

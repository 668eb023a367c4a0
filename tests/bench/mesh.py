"""The mesh under test, started exactly as `makoto up` starts it: `python -m services.cli up` as a
subprocess on free ports with its own temporary MAKOTO_HOME, stopped with SIGTERM (and anything
left behind killed) at the end."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from services.common.config import MeshSettings
from services.common.identity import Role
from tests.mesh_fixture import spawn_launcher
from tests.support import bearer, make_settings

READY_TIMEOUT_S = 90.0


@dataclass
class BenchMesh:
    settings: MeshSettings
    process: subprocess.Popen[bytes]
    launcher_log: Path

    @property
    def envoy_target(self) -> str:
        return f"{self.settings.host}:{self.settings.envoy_port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.envoy_target}"

    def address(self, service: str) -> str:
        return self.settings.address(service)

    def metadata(self, role: Role, tenant_id: str | None = None) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, role, tenant_id)

    def server_pid(self, service: str) -> int:
        """The pid of `python -m services.<service>` among the launcher's children."""
        module = f"services.{service}"
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if module in cmd and cmd[cmd.index(module) - 1] == "-m":
                return child.pid
        raise RuntimeError(f"no {module} process under the launcher (pid {self.process.pid})")

    def server_pids(self, service: str) -> list[int]:
        """Every process running `python -m services.<service>` (replicas and their workers)."""
        module = f"services.{service}"
        pids = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            if module in cmd and cmd[cmd.index(module) - 1] == "-m":
                pids.append(child.pid)
        if not pids:
            raise RuntimeError(f"no {module} process under the launcher (pid {self.process.pid})")
        return pids

    def envoy_pid(self) -> int:
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if Path(child.cmdline()[0]).name == "envoy":
                    return child.pid
            except (psutil.Error, IndexError):
                continue
        raise RuntimeError(f"no envoy process under the launcher (pid {self.process.pid})")

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in [self.launcher_log, *sorted((self.settings.home / "logs").glob("*.log"))]:
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                parts.append(f"----- {path.name} -----\n{tail}")
        return "\n".join(parts)


def start_mesh(root: Path) -> BenchMesh:
    """`makoto up` on free ports under root/home; returns once GET /healthz is 200.

    The log level stays the launcher's default (INFO), as `make up` runs it."""
    settings = make_settings(root / "home", log_level="INFO", shutdown_grace_seconds=2.0)
    log = root / "launcher.log"
    process = spawn_launcher(settings, log, READY_TIMEOUT_S)
    mesh = BenchMesh(settings, process, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"`makoto up` exited with {process.returncode}\n{mesh.log_tail()}")
            try:
                if httpx.get(mesh.base_url + "/healthz", timeout=2.0).status_code == 200:
                    return mesh
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET /healthz not 200 after {READY_TIMEOUT_S:.0f}s\n{mesh.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        stop_mesh(mesh)
        raise


def stop_mesh(mesh: BenchMesh) -> None:
    """SIGTERM the launcher (it stops Envoy, the services, the simulator); kill leftovers."""
    try:
        children = psutil.Process(mesh.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if mesh.process.poll() is None:
        mesh.process.send_signal(signal.SIGTERM)
        try:
            mesh.process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            mesh.process.kill()
            mesh.process.wait(timeout=5)
    _, alive = psutil.wait_procs(children, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass

"""`makoto up`: run the whole mesh on one machine and keep it running.

Order: dev signing key and simulator key secret -> LLM simulator and the four services ->
Envoy with the rendered config -> wait for GET /healthz = 200 -> print endpoints and examples
-> wait. Ctrl-C / SIGTERM stops everything (Envoy first, then the services, then the
simulator); if any child dies, the rest are stopped and the launcher exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from services.common.config import MeshSettings
from services.common.dev_issuer import ensure_signing_key
from services.common.server import private_files
from services.common.tls import ensure_certs
from services.mesh.envoy_admin import admin_get
from services.mesh.envoy_config import DESCRIPTOR_PATH, REPO_ROOT, write_config
from services.mesh.processes import Child, ChildSpec, envoy_binary, python_module, settings_env

SERVICES = ("tenant", "storage", "llm", "metering")
# A dead replica is restarted after this pause, at most RESTARTS_PER_WINDOW times a window.
RESTART_DELAY_S = 0.5
RESTART_WINDOW_S = 60.0
RESTARTS_PER_WINDOW = 5
SIMULATOR_KEY_SECRET = "llm-simulator-key"  # noqa: S105 - the secret's name, not a secret


class MeshError(RuntimeError):
    """The mesh could not start or a part of it died."""


def envoy_spec(settings: MeshSettings, config: Path, log_dir: Path) -> ChildSpec:
    return ChildSpec(
        name="envoy",
        argv=[
            str(envoy_binary()),
            "-c",
            str(config),
            "--concurrency",
            "1",
            # Several Envoys may share a machine (tests next to `make up`): no shared memory.
            "--disable-hot-restart",
            # Access log lines show up within a second (default: 10 s).
            "--file-flush-interval-msec",
            "1000",
            "--log-level",
            "warning",
        ],
        log_path=log_dir / "envoy.log",
    )


def seed_simulator_key(settings: MeshSettings) -> str:
    """The simulator's API key, kept in the local secret store as local://llm-simulator-key so
    tenants' default LLM bindings resolve it like any other secret. Created once, then reused."""
    from services.common.secrets import LocalSecretStore

    store = LocalSecretStore(settings)
    existing = store.get(SIMULATOR_KEY_SECRET)
    if existing:
        return existing
    key = "sk-sim-" + secrets.token_urlsafe(24)
    store.set(SIMULATOR_KEY_SECRET, key)
    return key


def service_specs(settings: MeshSettings, simulator_key: str, log_dir: Path) -> list[ChildSpec]:
    env = settings_env(settings)
    specs = [
        ChildSpec(
            name="simulator",
            argv=python_module(
                "services.llm.simulator", "--host", settings.host, "--port", str(settings.simulator_port)
            ),
            log_path=log_dir / "simulator.log",
            # In the environment, not on the command line: argv is visible to every local user.
            env={**env, "MAKOTO_SIMULATOR_API_KEY": simulator_key},
        )
    ]
    for name in SERVICES:
        specs += replica_specs(settings, name, env, log_dir)
    return specs


def replica_specs(
    settings: MeshSettings, service: str, env: dict[str, str], log_dir: Path
) -> list[ChildSpec]:
    """One child per replica: replica 0 is `storage` (log storage.log, the service's own port),
    replica i is `storage-i` on its own port with its own usage spool."""
    specs = []
    for index, port in enumerate(settings.replica_ports(service)):
        name = service if index == 0 else f"{service}-{index}"
        specs.append(
            ChildSpec(
                name=name,
                argv=python_module(f"services.{service}"),
                log_path=log_dir / f"{name}.log",
                env={
                    **env,
                    f"MAKOTO_{service.upper()}_PORT": str(port),
                    "MAKOTO_REPLICA_INDEX": str(index),
                    # LLMService's OpenAI-compatible listener: one port per replica too.
                    **(
                        {"MAKOTO_LLM_OPENAI_PORT": str(settings.openai_ports()[index])}
                        if service == "llm"
                        else {}
                    ),
                },
                service=service,
                replica=index,
                address=f"{settings.host}:{port}",
            )
        )
    return specs


async def unhealthy_clusters(settings: MeshSettings) -> list[str]:
    """Clusters Envoy's active health checks currently fail (from the admin /clusters page)."""
    try:
        text = (await admin_get(settings, "/clusters")).text
    except httpx.HTTPError:
        return []
    bad: list[str] = []
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) >= 4 and parts[2] == "health_flags" and parts[3] != "healthy":
            if parts[0] in SERVICES and parts[0] not in bad:
                bad.append(parts[0])
    return bad


async def healthz(settings: MeshSettings, client: httpx.AsyncClient) -> int | None:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    try:
        return (await client.get(f"http://{host}:{settings.envoy_port}/healthz")).status_code
    except httpx.HTTPError:
        return None


class Mesh:
    """The running mesh: its children, started and stopped together."""

    def __init__(
        self,
        settings: MeshSettings,
        *,
        descriptor: Path = DESCRIPTOR_PATH,
        ready_timeout: float = 60.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings.model_copy(update={"home": settings.home.resolve()})
        self.descriptor = descriptor
        self.ready_timeout = ready_timeout
        self.log_dir = self.settings.home / "logs"
        self.children: list[Child] = []
        self._restarts: dict[str, list[float]] = {}
        self._say = say

    def _child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    async def start(self) -> None:
        """Start everything and wait until /healthz is 200; on failure stop what started."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ensure_signing_key(self.settings)
        if self.settings.tls:  # before any child starts, so replicas never race to make them
            ensure_certs(self.settings)
        key = seed_simulator_key(self.settings)
        config = write_config(self.settings, descriptor=self.descriptor)
        for spec in service_specs(self.settings, key, self.log_dir):
            self.children.append(await Child.start(spec, cwd=REPO_ROOT))
        self.children.append(
            await Child.start(envoy_spec(self.settings, config, self.log_dir), cwd=REPO_ROOT)
        )
        self.write_state()
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                dead = [c for c in self.children if c.returncode is not None]
                if dead:
                    raise MeshError(self._died_message(dead))
                if await healthz(self.settings, client) == 200:
                    return
                if time.monotonic() > deadline:
                    raise MeshError(await self._not_ready_message())
                await asyncio.sleep(0.2)

    def _died_message(self, dead: Sequence[Child]) -> str:
        lines = []
        for child in dead:
            lines.append(
                f"{child.name} exited with code {child.returncode}; log: {child.spec.log_path}\n"
                + _indent(child.log_tail())
            )
        return "\n".join(lines)

    async def _not_ready_message(self) -> str:
        bad = await unhealthy_clusters(self.settings)
        if not bad:
            return (
                f"Envoy did not answer GET /healthz with 200 within {self.ready_timeout:.0f}s; "
                f"log: {self.log_dir / 'envoy.log'}"
            )
        parts = [f"not healthy after {self.ready_timeout:.0f}s: {', '.join(bad)}"]
        for name in bad:
            child = self._child(name)
            log = child.spec.log_path if child else self.log_dir / f"{name}.log"
            parts.append(f"- {name} ({', '.join(self.settings.replica_addresses(name))}) log: {log}")
            if child:
                parts.append(_indent(child.log_tail(10)))
        return "\n".join(parts)

    async def wait(self, stop: asyncio.Event) -> int:
        """Until `stop` is set (0) or a child dies (1). A replica of a service that runs several
        is restarted instead (as an orchestrator would): the others carry its traffic meanwhile."""
        stop_task = asyncio.create_task(stop.wait())
        try:
            while True:
                waits = {asyncio.create_task(c.wait()): c for c in self.children}
                done, _ = await asyncio.wait([stop_task, *waits], return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    if task not in done:
                        task.cancel()
                if stop_task in done:
                    return 0
                dead = [waits[t] for t in done if t in waits]
                fatal = [c for c in dead if not self._may_restart(c)]
                if fatal:
                    self._say("MAKOTO mesh: a process died, stopping the rest.\n" + self._died_message(fatal))
                    return 1
                for child in dead:
                    await self._restart(child)
        finally:
            stop_task.cancel()

    def _may_restart(self, child: Child) -> bool:
        if self.settings.replicas(child.spec.service) < 2:
            return False
        # A replica that keeps dying is a broken replica, not a crash: give up on the mesh.
        now = time.monotonic()
        recent = [t for t in self._restarts.get(child.name, []) if now - t < RESTART_WINDOW_S]
        self._restarts[child.name] = recent
        return len(recent) < RESTARTS_PER_WINDOW

    async def _restart(self, child: Child) -> None:
        self._say(f"MAKOTO mesh: {child.name} exited with code {child.returncode}; restarting it.")
        self._restarts.setdefault(child.name, []).append(time.monotonic())
        await asyncio.sleep(RESTART_DELAY_S)
        fresh = await Child.start(child.spec, cwd=REPO_ROOT)
        self.children[self.children.index(child)] = fresh
        self.write_state()

    @property
    def state_path(self) -> Path:
        return self.settings.home / "run" / "children.json"

    def write_state(self) -> None:
        """<home>/run/children.json: every child's name, service, replica, PID and address, for
        operators and drills (kill a replica by PID). Replaced atomically on every change."""
        rows = [
            {
                "name": c.name,
                "service": c.spec.service,
                "replica": c.spec.replica,
                "pid": c.pid,
                "address": c.spec.address,
            }
            for c in self.children
        ]
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, self.state_path)

    async def stop(self) -> None:
        """Envoy first (no new traffic), then the services (they drain), then the simulator."""
        grace = self.settings.shutdown_grace_seconds + 5.0
        order = [["envoy"], list(SERVICES), ["simulator"]]
        for group in order:
            members = [c for c in self.children if (c.spec.service or c.name) in group]
            await asyncio.gather(*(c.stop(grace) for c in members))
        self.children.clear()


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


async def run_up(
    settings: MeshSettings, *, ready_timeout: float = 60.0, say: Callable[[str], None] = print
) -> int:
    from services.mesh.examples import banner

    # Everything the mesh writes (keys, databases, spools, logs, the admin socket's directory)
    # is the user's alone; the children inherit the mask.
    private_files()
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)
    mesh = Mesh(settings, ready_timeout=ready_timeout, say=say)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say(f"MAKOTO mesh: starting (home {mesh.settings.home}, logs {mesh.log_dir}) ...")
    start = asyncio.create_task(mesh.start())
    stop_wait = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([start, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    if start not in done:  # interrupted while starting
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError, MeshError):
            await start
        await mesh.stop()
        say("MAKOTO mesh: stopped before it was ready.")
        return 130
    stop_wait.cancel()
    try:
        start.result()
    except MeshError as exc:
        say(f"MAKOTO mesh failed to start:\n{exc}")
        return 1
    say(banner(mesh.settings))
    code = await mesh.wait(stop)
    say("MAKOTO mesh: stopping ...")
    await mesh.stop()
    say("MAKOTO mesh: stopped.")
    return code


def main(settings: MeshSettings | None = None) -> int:
    return asyncio.run(run_up(settings or MeshSettings(), say=lambda s: print(s, flush=True)))


if __name__ == "__main__":
    sys.exit(main())

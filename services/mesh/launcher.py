"""`makoto up`: run the whole mesh on one machine and keep it running.

Order: dev signing key and simulator key secret -> LLM simulator and the four services ->
Envoy with the rendered config -> wait for GET /healthz = 200 -> print endpoints and examples
-> wait. Ctrl-C / SIGTERM stops everything (Envoy first, then the services, then the
simulator); if any child dies, the rest are stopped and the launcher exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from services.common.config import MeshSettings
from services.common.dev_issuer import ensure_signing_key
from services.mesh.envoy_config import DESCRIPTOR_PATH, REPO_ROOT, write_config
from services.mesh.processes import Child, ChildSpec, envoy_binary, python_module, settings_env

SERVICES = ("tenant", "storage", "llm", "metering")
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
    specs += [
        ChildSpec(
            name=name, argv=python_module(f"services.{name}"), log_path=log_dir / f"{name}.log", env=env
        )
        for name in SERVICES
    ]
    return specs


async def unhealthy_clusters(settings: MeshSettings) -> list[str]:
    """Clusters Envoy's active health checks currently fail (from the admin /clusters page)."""
    url = f"http://127.0.0.1:{settings.envoy_admin_port}/clusters"
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            text = (await client.get(url)).text
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
        key = seed_simulator_key(self.settings)
        config = write_config(self.settings, descriptor=self.descriptor)
        for spec in service_specs(self.settings, key, self.log_dir):
            self.children.append(await Child.start(spec, cwd=REPO_ROOT))
        self.children.append(
            await Child.start(envoy_spec(self.settings, config, self.log_dir), cwd=REPO_ROOT)
        )
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
            parts.append(f"- {name} ({self.settings.address(name)}) log: {log}")
            if child:
                parts.append(_indent(child.log_tail(10)))
        return "\n".join(parts)

    async def wait(self, stop: asyncio.Event) -> int:
        """Until `stop` is set (0) or a child dies (1)."""
        stop_task = asyncio.create_task(stop.wait())
        waits = {asyncio.create_task(c.wait()): c for c in self.children}
        done, _ = await asyncio.wait([stop_task, *waits], return_when=asyncio.FIRST_COMPLETED)
        for task in [stop_task, *waits]:
            if task not in done:
                task.cancel()
        if stop_task in done:
            return 0
        dead = [waits[t] for t in done if t in waits]
        self._say("MAKOTO mesh: a process died, stopping the rest.\n" + self._died_message(dead))
        return 1

    async def stop(self) -> None:
        """Envoy first (no new traffic), then the services (they drain), then the simulator."""
        grace = self.settings.shutdown_grace_seconds + 5.0
        order = [["envoy"], list(SERVICES), ["simulator"]]
        for group in order:
            members = [c for c in self.children if c.name in group]
            await asyncio.gather(*(c.stop(grace) for c in members))
        self.children.clear()


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


async def run_up(
    settings: MeshSettings, *, ready_timeout: float = 60.0, say: Callable[[str], None] = print
) -> int:
    from services.mesh.examples import banner

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

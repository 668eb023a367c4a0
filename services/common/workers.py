"""N worker processes of one service on one port (MAKOTO_<SERVICE>_WORKERS).

`python -m services.storage` with MAKOTO_STORAGE_WORKERS=N > 1 becomes a small supervisor: it
starts N copies of itself, each a full server with MAKOTO_WORKER_INDEX=i, binding the same port
with SO_REUSEPORT (the kernel spreads new connections over the workers), and it:

* forwards SIGTERM / SIGINT to every worker and waits for them to drain (their own grace);
* restarts a worker that dies (at most RESTARTS_PER_WINDOW times a window, then stops them all
  and exits non-zero, as a crashing service should);
* serves nothing itself and holds no state. What the workers share lives in the shared stores
  (Redis: rate limits, budgets; the tenant directory); each worker has its own usage spool
  (<source>-w<i>.sqlite3), so no event is sent twice and none waits on another worker.

Workers are separate interpreters started with subprocess (not fork): grpc's core is not
fork-safe, and each worker is exactly the process `make up` would run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import structlog

log = structlog.get_logger("makoto.workers")

# Set in a worker's environment (its index); a process without it may supervise.
WORKER_ENV = "MAKOTO_WORKER_INDEX"
CHILD_ENV = "MAKOTO_SUPERVISED_WORKER"
RESTART_DELAY_S = 0.5
RESTART_WINDOW_S = 60.0
RESTARTS_PER_WINDOW = 5
# How long the supervisor waits for workers after forwarding SIGTERM, on top of their grace.
STOP_MARGIN_S = 10.0
_PR_SET_PDEATHSIG = 1


def is_worker() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def _die_with_parent() -> None:
    """preexec_fn: a worker gets SIGTERM when its supervisor goes away (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, service: str, count: int, grace_seconds: float) -> None:
        self.service = service
        self.count = count
        self.grace = grace_seconds
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self._restarts: list[float] = []
        self._stopping = False

    def _start(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index), CHILD_ENV: "1"}
        self.workers[index] = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}"],
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        for proc in self.workers.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for index in range(self.count):
            self._start(index)
        log.info("workers started", service=self.service, pids=[p.pid for p in self.workers.values()])
        while not self._stopping:
            for index, proc in list(self.workers.items()):
                code = proc.poll()
                if code is None or self._stopping:
                    continue
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
                if len(self._restarts) >= RESTARTS_PER_WINDOW:
                    log.error("workers keep dying; stopping", service=self.service, code=code)
                    self._signal(signal.SIGTERM, None)
                    self._wait_all()
                    return 1
                log.warning("worker died; restarting", service=self.service, worker=index, code=code)
                self._restarts.append(now)
                time.sleep(RESTART_DELAY_S)
                self._start(index)
            time.sleep(0.2)
        return self._wait_all()

    def _wait_all(self) -> int:
        deadline = time.monotonic() + self.grace + STOP_MARGIN_S
        worst = 0
        for proc in self.workers.values():
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            # A worker stopped by our SIGTERM exits 0 (or -15 before its handler is set).
            if code not in (0, -signal.SIGTERM):
                worst = code or worst
        return 1 if worst else 0

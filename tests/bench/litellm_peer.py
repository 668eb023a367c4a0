"""LiteLLM's proxy as the peer of the LLM gateway benchmark (issue 10, item 6).

It lives in its own venv (.bench-venv-litellm at the repository root, git-ignored), built on
first use with `pip install litellm[proxy]`: its pins must not touch the project's. Started
with one worker against the same mock upstream, a master key (it refuses to start without one),
no database, and LITELLM_LOCAL_MODEL_COST_MAP=True (else it fetches the cost map at start).
Any failure to build or start it is a reason string, and the section says it was skipped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.bench.harness import say

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = REPO_ROOT / ".bench-venv-litellm"
PACKAGE = "litellm[proxy]"
START_TIMEOUT_S = 120.0


@dataclass
class LiteLLM:
    url: str
    key: str
    pid: int
    version: str


def ensure_venv() -> str | None:
    """The venv's litellm executable exists afterwards, or the reason it could not be built."""
    exe = VENV / "bin" / "litellm"
    if exe.exists():
        return None
    say(f"building {VENV.name} ({PACKAGE}) ...")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", PACKAGE],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        tail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
        return (
            f"could not build {VENV.name} with `pip install {PACKAGE}`: {type(exc).__name__} {' '.join(tail)}"
        )
    return None if exe.exists() else f"{exe} missing after pip install"


def _version() -> str:
    try:
        out = subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "?"


@contextlib.contextmanager
def running_litellm(root: Path, upstream_v1: str, port: int) -> Iterator[LiteLLM | str]:
    """LiteLLM's proxy serving model `mock-chat` from `upstream_v1`; or why it is not there."""
    reason = ensure_venv()
    if reason is not None:
        yield reason
        return
    key = f"sk-bench-{secrets.token_hex(16)}"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: mock-chat\n"
        "    litellm_params:\n"
        "      model: openai/mock-chat\n"
        f"      api_base: {upstream_v1}\n"
        "      api_key: sk-mock\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "general_settings:\n"
        f"  master_key: {key}\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    log = open(root / "litellm.log", "wb")
    process = subprocess.Popen(
        [
            str(VENV / "bin" / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                tail = (root / "litellm.log").read_text(errors="replace").strip().splitlines()[-1:]
                yield f"LiteLLM exited at start ({process.returncode}): {' '.join(tail)[:200]}"
                return
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                yield f"LiteLLM not ready within {START_TIMEOUT_S:.0f} s"
                return
            time.sleep(0.5)
        yield LiteLLM(url=url, key=key, pid=process.pid, version=_version())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        log.close()

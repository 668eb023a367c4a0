"""`makoto up` when something goes wrong: a child that dies stops the whole mesh with a non-zero
exit naming the culprit and its log; Envoy's admin view names the unhealthy service."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from services.mesh.launcher import Mesh, unhealthy_clusters
from tests.e2e.conftest import REPO_ROOT, _mesh_env
from tests.e2e.envoy_spy import SpyMesh
from tests.support import make_settings

pytestmark = pytest.mark.e2e


def test_a_dying_service_stops_the_mesh_with_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", log_level="INFO")
    # Hold the storage port so the storage server cannot bind and exits.
    with socket.socket() as blocker:
        blocker.bind((settings.host, settings.storage_port))
        blocker.listen()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "up",
                "--home",
                str(settings.home),
                "--port",
                str(settings.envoy_port),
                "--timeout",
                "60",
            ],
            cwd=REPO_ROOT,
            env=_mesh_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            out, _ = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
    text = out.decode(errors="replace")
    assert process.returncode != 0, text
    assert "storage exited" in text, text
    assert str(settings.home / "logs" / "storage.log") in text
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(settings.home) in " ".join(p.info["cmdline"] or []) and p.pid != process.pid
    ], "children left behind"


async def test_unhealthy_clusters_names_the_stopped_service(envoy_spy: SpyMesh) -> None:
    assert await unhealthy_clusters(envoy_spy.settings) == []
    await envoy_spy.stop_service("llm")
    try:
        await envoy_spy.wait_healthz(503, timeout=10)
        assert await unhealthy_clusters(envoy_spy.settings) == ["llm"]
        # What `makoto up` prints when /healthz is not 200 in time.
        message = await Mesh(envoy_spy.settings, ready_timeout=60)._not_ready_message()
        assert message.startswith("not healthy after 60s: llm")
        assert (
            f"llm ({envoy_spy.settings.address('llm')}) log: {envoy_spy.settings.home / 'logs' / 'llm.log'}"
            in message
        )
    finally:
        await envoy_spy.start_service("llm")
    await envoy_spy.wait_healthz(200, timeout=10)

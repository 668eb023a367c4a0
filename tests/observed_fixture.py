"""`observed` (session): a mesh of its own that exports every span to an in-process OTLP receiver
and serves Prometheus metrics on free ports (tests/e2e/test_tracing.py, test_metrics.py share it).
The shared `mesh` stays as it is: nothing there exports or listens for scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh
from tests.otlp_receiver import OtlpReceiver
from tests.support import free_port


@dataclass
class ObservedMesh:
    mesh: RunningMesh
    receiver: OtlpReceiver

    def metrics_url(self, component: str) -> str:
        return f"http://127.0.0.1:{self.mesh.settings.metrics_ports[component]}/metrics"


@pytest.fixture(scope="session")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedMesh]:
    receiver = OtlpReceiver()
    receiver.start()
    try:
        mesh = start_mesh(
            tmp_path_factory.mktemp("observed"),
            otlp_endpoint=receiver.endpoint,
            otlp_flush_seconds=0.5,
            metrics_ports={c: free_port() for c in ("tenant", "storage", "llm", "metering", "envoy")},
        )
        try:
            yield ObservedMesh(mesh=mesh, receiver=receiver)
        finally:
            stop_mesh(mesh)
    finally:
        receiver.stop()

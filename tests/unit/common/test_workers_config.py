"""Workers' settings: SO_REUSEPORT only when a service runs several workers, one usage spool per
worker (worker 0 keeps the single-process name), 0 workers = one per CPU."""

from __future__ import annotations

import os
from pathlib import Path

from services.common.config import MeshSettings
from services.common.metering_client import spool_path
from services.common.server import server_options


def test_reuseport_only_for_several_workers(tmp_path: Path) -> None:
    single = MeshSettings(home=tmp_path)
    many = MeshSettings(home=tmp_path, storage_workers=2)
    assert dict(server_options(single, "storage"))["grpc.so_reuseport"] == 0
    assert dict(server_options(many, "storage"))["grpc.so_reuseport"] == 1
    # Another service of the same settings keeps its port to itself.
    assert dict(server_options(many, "tenant"))["grpc.so_reuseport"] == 0


def test_one_spool_per_replica_and_worker(tmp_path: Path) -> None:
    names = {
        (r, w): spool_path(MeshSettings(home=tmp_path, replica_index=r, worker_index=w), "storage").name
        for r in (0, 2)
        for w in (0, 1)
    }
    assert names == {
        (0, 0): "storage.sqlite3",
        (0, 1): "storage-w1.sqlite3",
        (2, 0): "storage-2.sqlite3",
        (2, 1): "storage-2-w1.sqlite3",
    }


def test_zero_workers_means_one_per_cpu(tmp_path: Path) -> None:
    settings = MeshSettings(home=tmp_path, llm_workers=0)
    assert settings.workers("llm") == len(os.sched_getaffinity(0))
    assert settings.workers("storage") == 1

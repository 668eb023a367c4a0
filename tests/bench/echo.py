"""The same-run baseline for GetItem: a bare grpc.aio server (no interceptor, no auth, no
metering, no store) answering StorageService.GetItem with a fixed Item, in its own process.

    python -m tests.bench.echo --port P

Same messages and the same client as the real GetItem, so the ratio is the platform's pipeline
and backend against grpc.aio's own floor."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from tests.bench import items as item_bench

REPO_ROOT = Path(__file__).resolve().parents[2]


class EchoStorage(storage_service_pb2_grpc.StorageServiceServicer):
    def __init__(self) -> None:
        self._item = items_pb2.Item(
            collection="hot", partition_key="p", sort_key="one", attributes=item_bench.attributes(1)
        )

    async def GetItem(
        self, request: items_pb2.GetItemRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.Item:
        return self._item


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    storage_service_pb2_grpc.add_StorageServiceServicer_to_server(EchoStorage(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(0.5)


class EchoProcess:
    """The echo server as a child process (stopped with SIGTERM, killed if it lingers)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = f"{host}:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.echo", "--host", host, "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        line = self.process.stdout.readline()
        if line.strip() != b"ready" or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError("echo server did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))

"""Emulators the object-store tests run against, each started on a free port and stopped by
whoever started it: moto server (S3) and Azurite (Azure Blob).

Session fixtures share one instance per emulator however many conftests import them (a
module-level reference count: the first user starts it, the last one stops it). Tests that
must kill an emulator (to see UNAVAILABLE) start their own instance with `start_moto()` /
`start_azurite()` so the shared one keeps running.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite-blob"
MOTO_BIN = Path(sys.executable).parent / "moto_server"

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# moto checks no credentials; any pair works.
MOTO_CREDENTIALS = {"access_key_id": "makoto-test", "secret_access_key": "makoto-test-secret"}


@dataclass
class Emulator:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path | None = None
    log: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Azurite(Emulator):
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    @property
    def account_url(self) -> str:
        return f"{self.endpoint}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.account_url};"
        )


def _wait_until_serving(emu: Emulator, probe: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.process.poll() is not None:
            log = emu.log.read_text(errors="replace")[-2000:] if emu.log and emu.log.exists() else ""
            raise RuntimeError(f"{emu.name} exited with {emu.process.returncode}: {log}")
        try:
            with socket.create_connection(("127.0.0.1", emu.port), timeout=0.2):
                pass
            with contextlib.suppress(urllib.error.HTTPError):  # any HTTP answer means it serves
                urllib.request.urlopen(f"{emu.endpoint}{probe}", timeout=2).close()
            return
        except OSError:
            time.sleep(0.05)
    emu.stop()
    raise RuntimeError(f"{emu.name} did not start within {timeout} s")


def start_moto() -> Emulator:
    """A fresh moto server (S3 and friends) on a free port."""
    workdir = Path(tempfile.mkdtemp(prefix="makoto-moto-"))
    port = free_port()
    log = workdir / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MOTO_BIN), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    emu = Emulator("moto_server", port, proc, workdir, log)
    _wait_until_serving(emu, "/moto-api/")
    return emu


def _ensure_azurite_installed() -> None:
    if not AZURITE_BIN.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=REPO, check=True)


def start_azurite() -> Azurite:
    """A fresh azurite-blob on a free port with its own data directory."""
    _ensure_azurite_installed()
    workdir = Path(tempfile.mkdtemp(prefix="makoto-azurite-"))
    port = free_port()
    log = workdir / "azurite.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(AZURITE_BIN),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(workdir / "data"),
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    emu = Azurite("azurite-blob", port, proc, workdir, log)
    _wait_until_serving(emu, f"/{AZURITE_ACCOUNT}?comp=list")
    return emu


class StaticSecrets:
    """A secret source over a dict (services.storage.registry.SecretSource; the mesh resolves
    refs with services.common.secrets)."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    async def get(self, ref: str) -> SecretStr:
        return SecretStr(self._values[ref])


# Shared instances: name -> (emulator, users)
_shared: dict[str, tuple[Emulator, int]] = {}


@contextlib.contextmanager
def _shared_instance(name: str) -> Iterator[Emulator]:
    if name in _shared:
        emu, users = _shared[name]
        _shared[name] = (emu, users + 1)
    else:
        emu = start_moto() if name == "moto" else start_azurite()
        _shared[name] = (emu, 1)
    try:
        yield emu
    finally:
        emu, users = _shared[name]
        if users == 1:
            del _shared[name]
            emu.stop()
        else:
            _shared[name] = (emu, users - 1)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Emulator]:
    """One moto server for the session (S3 endpoint at .endpoint)."""
    with _shared_instance("moto") as emu:
        yield emu


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One azurite-blob for the session (.account_url, .key, .connection_string)."""
    with _shared_instance("azurite") as emu:
        assert isinstance(emu, Azurite)
        yield emu

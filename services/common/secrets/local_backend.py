"""local://name: the dev secret store, a Fernet-encrypted file under <home>/keys.

- secrets.key: the Fernet key, mode 0600, made on first use (atomically: two processes
  starting together agree on one key).
- secrets.json: {"version": 1, "secrets": {name: token}}, each entry encrypted on its own.
  The plaintext inside a token also names its entry, so a token copied onto another name
  does not decrypt as that name.
Writers hold an flock on secrets.lock and replace the file atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.secrets.ref import SecretRef, not_found

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")


def _check_name(name: str) -> None:
    if not _NAME.match(name) or ".." in name.split("/"):
        raise InvalidArgument(
            "secret name must be 1-255 characters of letters, digits and . _ / -",
            field_violations=[("name", "invalid secret name")],
        )


def _write_private(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


class LocalSecretStore:
    """The store itself (synchronous: the CLI and launcher seed it before servers start)."""

    def __init__(self, location: MeshSettings | Path) -> None:
        self._dir = location.keys_dir if isinstance(location, MeshSettings) else Path(location)
        self.key_path = self._dir / "secrets.key"
        self.data_path = self._dir / "secrets.json"
        self._lock_path = self._dir / "secrets.lock"

    def __repr__(self) -> str:
        return f"LocalSecretStore({str(self._dir)!r})"

    # -- key ---------------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)

    def _fernet(self, *, create: bool) -> Fernet | None:
        if not self.key_path.exists():
            if not create:
                return None
            self._ensure_dir()
            tmp = _write_private(self.key_path, Fernet.generate_key())
            try:
                os.link(tmp, self.key_path)  # fails if another process made the key first
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return Fernet(self.key_path.read_bytes().strip())

    # -- file --------------------------------------------------------------------------------

    def _load(self) -> dict[str, str]:
        try:
            raw: Any = json.loads(self.data_path.read_text())
        except FileNotFoundError:
            return {}
        entries = raw.get("secrets", {}) if isinstance(raw, dict) else {}
        return {str(k): str(v) for k, v in entries.items()}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _save(self, entries: dict[str, str]) -> None:
        body = json.dumps({"version": 1, "secrets": entries}, indent=2, sort_keys=True).encode()
        os.replace(_write_private(self.data_path, body), self.data_path)

    # -- API ---------------------------------------------------------------------------------

    def set(self, name: str, value: str | SecretStr) -> None:
        _check_name(name)
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        with self._locked():
            fernet = self._fernet(create=True)
            assert fernet is not None
            token = fernet.encrypt(json.dumps({"n": name, "v": plain}).encode()).decode()
            entries = self._load()
            entries[name] = token
            self._save(entries)

    def delete(self, name: str) -> bool:
        with self._locked():
            entries = self._load()
            if entries.pop(name, None) is None:
                return False
            self._save(entries)
            return True

    def names(self) -> list[str]:
        return sorted(self._load())

    def get(self, name: str) -> str | None:
        """The value, or None if no such entry. FailedPrecondition if it cannot be decrypted."""
        token = self._load().get(name)
        if token is None:
            return None
        ref = SecretRef("local", name)
        try:
            fernet = self._fernet(create=False)
        except ValueError as exc:
            raise not_found(ref, "cannot be decrypted: the store's key is unreadable") from exc
        if fernet is None:
            raise not_found(ref, "cannot be decrypted: the store's key is missing")
        try:
            payload = json.loads(fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError) as exc:
            raise not_found(ref, "cannot be decrypted with this store's key") from exc
        if not isinstance(payload, dict) or payload.get("n") != name:
            raise FailedPrecondition(f"secret {ref} does not belong to this name", reason="SECRET_CORRUPT")
        return str(payload["v"])


class LocalSecretBackend:
    """local://name for the SecretResolver."""

    def __init__(self, store: LocalSecretStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"LocalSecretBackend({self.store!r})"

    async def get(self, ref: SecretRef) -> SecretStr:
        # File reads are tiny, but keep the event loop free of blocking I/O all the same.
        value = await asyncio.to_thread(self.store.get, ref.path)
        if value is None:
            raise not_found(ref)
        return SecretStr(value)

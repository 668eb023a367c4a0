"""Secret-store backends for the secret-store contract suite, and the emulators they need.

Each backend is a `SecretStoreHarness`: a resolver holding the adapter under test, a writer that
stores values the way another process would (so the reader's cache is not told), and the
backend's capabilities. Capability table (what the contract expects of each):

| backend  | store                         | #json-key | cache TTL (rotation seen after) | endpoint |
|----------|-------------------------------|-----------|---------------------------------|----------|
| local    | Fernet file under home/keys   | refused   | 0 (read on every use)           | -        |
| env      | process environment           | refused   | 0                               | -        |
| aws-sm   | moto_server (Secrets Manager) | yes       | REMOTE_TTL                      | http     |
| azure-kv | FakeKeyVault (not Microsoft's emulator; see fake_key_vault.py) | yes | REMOTE_TTL | https |

Fixtures here are imported by the test modules that use them (tests/contract/conftest.py is
another suite's): `secrets_moto` and `fake_key_vault` are session-scoped and stopped by
themselves; `secret_store` / `remote_secret_store` are parametrised over the table above.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.common.secrets import EnvSecretBackend, LocalSecretBackend, LocalSecretStore, SecretResolver
from services.common.secrets.aws_sm_backend import AwsSecretsManagerBackend, AwsSecretsManagerConfig
from services.common.secrets.azure_kv_backend import (
    AzureKeyVaultBackend,
    AzureKeyVaultConfig,
    StaticTokenCredential,
)
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, start_moto
from tests.contract.fake_key_vault import FakeKeyVault, TlsFiles, make_tls
from tests.support import free_port

REMOTE_TTL = 0.5
VAULT_TOKEN = "makoto-fake-vault-token"  # not a secret: only the fake vault accepts it
FORBIDDEN_TOKEN = "makoto-fake-vault-forbidden-token"
SECRET_BACKENDS = ("local", "env", "aws-sm", "azure-kv")
REMOTE_SECRET_BACKENDS = ("aws-sm", "azure-kv")


@dataclass
class SecretStoreHarness:
    name: str
    resolver: SecretResolver
    # (name, value) -> reference; writes the way another process would (the reader is not told)
    write: Callable[[str, str], Awaitable[str]]
    # a name -> the reference a missing secret of that name has
    ref_for: Callable[[str], str]
    json_keys: bool
    ttl: float


# -- emulators ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def secrets_moto() -> Iterator[Emulator]:
    """A moto_server of this suite's own (Secrets Manager) on a free port."""
    emu = start_moto()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def vault_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("fake-vault-tls"))


@pytest.fixture(scope="session")
async def fake_key_vault(vault_tls: TlsFiles) -> AsyncIterator[FakeKeyVault]:
    vault = FakeKeyVault(vault_tls, token=VAULT_TOKEN, forbidden_tokens=(FORBIDDEN_TOKEN,))
    await vault.start()
    try:
        yield vault
    finally:
        await vault.stop()


# -- adapter configurations --------------------------------------------------------------------


def aws_config(endpoint: str, **overrides: object) -> AwsSecretsManagerConfig:
    values: dict[str, object] = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": MOTO_CREDENTIALS["access_key_id"],
        "secret_access_key": SecretStr(MOTO_CREDENTIALS["secret_access_key"]),
        "sm_cache_ttl_seconds": REMOTE_TTL,
        "sm_max_attempts": 3,
        "sm_retry_base_seconds": 0.01,
        "sm_retry_max_seconds": 0.05,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return AwsSecretsManagerConfig(**values)  # type: ignore[arg-type]


def azure_config(vault_url: str, tls: TlsFiles, **overrides: object) -> AzureKeyVaultConfig:
    values: dict[str, object] = {
        "vault_urls": {"acme": vault_url},
        "ca_bundle": str(tls.cert),
        # The fake answers on 127.0.0.1, which is not under the challenge's resource domain
        # (vault.azure.net); the SDK check is on by default and tested on its own.
        "verify_challenge_resource": False,
        "cache_ttl_seconds": REMOTE_TTL,
        "max_attempts": 3,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return AzureKeyVaultConfig(**values)  # type: ignore[arg-type]


def azure_backend(
    vault_url: str, tls: TlsFiles, token: str = VAULT_TOKEN, **overrides: object
) -> AzureKeyVaultBackend:
    return AzureKeyVaultBackend(
        azure_config(vault_url, tls, **overrides), credential=StaticTokenCredential(token)
    )


def _env_name(name: str) -> str:
    return "MAKOTO_CT_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


# -- harnesses ---------------------------------------------------------------------------------


def _local(home: Path) -> SecretStoreHarness:
    store = LocalSecretStore(home / "keys")
    writer = LocalSecretStore(home / "keys")  # a second object on the same files: another process

    async def write(name: str, value: str) -> str:
        writer.set(name, value)
        return f"local://{name}"

    return SecretStoreHarness(
        "local",
        SecretResolver({"local": LocalSecretBackend(store)}),
        write,
        lambda name: f"local://{name}",
        json_keys=False,
        ttl=0.0,
    )


def _env(created: list[str]) -> SecretStoreHarness:
    async def write(name: str, value: str) -> str:
        var = _env_name(name)
        os.environ[var] = value
        created.append(var)
        return f"env://{var}"

    return SecretStoreHarness(
        "env",
        SecretResolver({"env": EnvSecretBackend()}),
        write,
        lambda name: f"env://{_env_name(name)}",
        json_keys=False,
        ttl=0.0,
    )


def _aws(moto: Emulator) -> SecretStoreHarness:
    reader = AwsSecretsManagerBackend(aws_config(moto.endpoint))
    writer = AwsSecretsManagerBackend(aws_config(moto.endpoint, sm_cache_ttl_seconds=0))

    async def write(name: str, value: str) -> str:
        return await writer.set(f"aws-sm://{name}", value)

    return SecretStoreHarness(
        "aws-sm",
        SecretResolver({"aws-sm": reader}),
        write,
        lambda name: f"aws-sm://{name}",
        json_keys=True,
        ttl=REMOTE_TTL,
    )


def _azure(vault: FakeKeyVault) -> SecretStoreHarness:
    reader = azure_backend(vault.url, vault.tls)
    writer = azure_backend(vault.url, vault.tls, cache_ttl_seconds=0)

    async def write(name: str, value: str) -> str:
        return await writer.set(f"azure-kv://acme/{name}", value)

    return SecretStoreHarness(
        "azure-kv",
        SecretResolver({"azure-kv": reader}),
        write,
        lambda name: f"azure-kv://acme/{name}",
        json_keys=True,
        ttl=REMOTE_TTL,
    )


@pytest.fixture(params=SECRET_BACKENDS)
def secret_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretStoreHarness]:
    name: str = request.param
    created_env: list[str] = []
    if name == "local":
        yield _local(tmp_path / "home")
    elif name == "env":
        try:
            yield _env(created_env)
        finally:
            for var in created_env:
                os.environ.pop(var, None)
    elif name == "aws-sm":
        yield _aws(request.getfixturevalue("secrets_moto"))
    else:
        yield _azure(request.getfixturevalue("fake_key_vault"))


@dataclass
class DeadStore:
    """A remote backend whose endpoint does not answer (nothing listens on its port)."""

    name: str
    resolver: SecretResolver
    ref: str


@pytest.fixture(params=REMOTE_SECRET_BACKENDS)
def unreachable_secret_store(request: pytest.FixtureRequest) -> DeadStore:
    port = free_port()  # bound and released: nothing listens there
    if request.param == "aws-sm":
        backend = AwsSecretsManagerBackend(aws_config(f"http://127.0.0.1:{port}"))
        return DeadStore("aws-sm", SecretResolver({"aws-sm": backend}), "aws-sm://llm/api-key")
    tls: TlsFiles = request.getfixturevalue("vault_tls")
    az = azure_backend(f"https://127.0.0.1:{port}", tls)
    return DeadStore("azure-kv", SecretResolver({"azure-kv": az}), "azure-kv://acme/llm-api-key")

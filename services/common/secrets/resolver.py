"""SecretResolver: picks the backend by the reference's scheme."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import SecretStr

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition
from services.common.secrets.env_backend import EnvSecretBackend
from services.common.secrets.local_backend import LocalSecretBackend, LocalSecretStore
from services.common.secrets.ref import SecretBackend, parse_ref


def _aws_sm(settings: MeshSettings) -> SecretBackend:
    # Imported here and the SDK imported on first use: a local-only mesh never loads aioboto3.
    from services.common.secrets.aws_sm_backend import AwsSecretsManagerBackend

    return AwsSecretsManagerBackend()  # configured from MAKOTO_AWS_* / AWS_* variables


def _azure_kv(settings: MeshSettings) -> SecretBackend:
    from services.common.secrets.azure_kv_backend import AzureKeyVaultBackend

    return AzureKeyVaultBackend()  # configured from MAKOTO_AZURE_KV_* variables


# The extension point: scheme -> factory. Cloud backends (aws-sm, azure-kv) register here.
BACKEND_FACTORIES: dict[str, Callable[[MeshSettings], SecretBackend]] = {
    "env": lambda settings: EnvSecretBackend(),
    "local": lambda settings: LocalSecretBackend(LocalSecretStore(settings)),
    "aws-sm": _aws_sm,
    "azure-kv": _azure_kv,
}


class SecretResolver:
    def __init__(self, backends: Mapping[str, SecretBackend]) -> None:
        self._backends = dict(backends)

    @classmethod
    def for_settings(cls, settings: MeshSettings) -> SecretResolver:
        return cls({scheme: factory(settings) for scheme, factory in BACKEND_FACTORIES.items()})

    def register(self, scheme: str, backend: SecretBackend) -> None:
        self._backends[scheme] = backend

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset(self._backends)

    async def get(self, ref: str) -> SecretStr:
        parsed = parse_ref(ref)
        backend = self._backends.get(parsed.scheme)
        if backend is None:
            raise FailedPrecondition(
                f"secret reference {parsed}: scheme {parsed.scheme!r} is not supported here",
                reason="SECRET_SCHEME_UNSUPPORTED",
                metadata={"secret_ref": str(parsed)},
            )
        return await backend.get(parsed)

    def set(self, name: str, value: str | SecretStr) -> str:
        """Store a value in the local encrypted store; returns its reference (local://name)."""
        local = self._backends.get("local")
        if not isinstance(local, LocalSecretBackend):
            raise FailedPrecondition("no local secret store configured", reason="SECRET_STORE_MISSING")
        local.store.set(name, value)
        return f"local://{name}"

    def __repr__(self) -> str:
        return f"SecretResolver(schemes={sorted(self._backends)})"

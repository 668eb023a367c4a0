"""Fixtures of the cloud secret-store unit tests: the emulators come from the contract suite's
module (one moto_server and one fake Key Vault per session for this directory)."""

from tests.contract.secret_backends import fake_key_vault, secrets_moto, vault_tls  # noqa: F401

"""The simulator's API key lives in the local secret store as local://llm-simulator-key, the
reference every default tenant binding carries; `makoto up` seeds it before starting things."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from services.common.config import MeshSettings
from services.common.secrets import LocalSecretStore

SIMULATOR_KEY_NAME = "llm-simulator-key"
SIMULATOR_KEY_REF = f"local://{SIMULATOR_KEY_NAME}"


def ensure_simulator_key(settings: MeshSettings) -> SecretStr:
    """Read the simulator key from the local store, creating a random one on first use."""
    store = LocalSecretStore(settings)
    # An entry that exists but cannot be decrypted raises: never silently replace a key.
    existing = store.get(SIMULATOR_KEY_NAME)
    if existing:
        return SecretStr(existing)
    key = f"sk-sim-{secrets.token_urlsafe(24)}"
    store.set(SIMULATOR_KEY_NAME, key)
    return SecretStr(key)

"""One-shot start-up for a shared MAKOTO_HOME (compose's `init` container): the platform
issuer's signing key + JWKS, the mesh's dev CA and mTLS certificates, and the LLM simulator's
key in the local secret store, created once before any server starts (so replicas never race
to create them). Prints paths, never secrets.

    python -m services.deploy.init_home
"""

from __future__ import annotations

import sys

from services.common.config import MeshSettings
from services.common.dev_issuer import ensure_signing_key
from services.common.tls import ensure_certs
from services.mesh.launcher import SIMULATOR_KEY_SECRET, seed_simulator_key


def main() -> int:
    settings = MeshSettings()
    ensure_signing_key(settings)
    seed_simulator_key(settings)
    if settings.tls:
        print(f"mesh certificates (mTLS): {ensure_certs(settings)}")
    print(f"issuer JWKS: {settings.jwks_path}")
    print(f"simulator key: local://{SIMULATOR_KEY_SECRET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

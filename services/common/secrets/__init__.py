"""Secret references (`scheme://path`) resolved to values at the moment of use.

Tenant config carries references, never secrets. Values come back as pydantic.SecretStr so a
stray log line or repr shows `**********`; errors name the reference, never a value.

Backends, one module each: `env://VAR` (process environment), `local://name` (dev: a
Fernet-encrypted file under <home>/keys). Cloud stores (aws-sm://, azure-kv://) plug in through
`BACKEND_FACTORIES` (scheme -> factory) in resolver.py.
"""

from pydantic import SecretStr

from services.common.secrets.env_backend import EnvSecretBackend
from services.common.secrets.local_backend import LocalSecretBackend, LocalSecretStore
from services.common.secrets.ref import SecretBackend, SecretRef, parse_ref
from services.common.secrets.resolver import BACKEND_FACTORIES, SecretResolver

__all__ = [
    "BACKEND_FACTORIES",
    "EnvSecretBackend",
    "LocalSecretBackend",
    "LocalSecretStore",
    "SecretBackend",
    "SecretRef",
    "SecretResolver",
    "SecretStr",
    "parse_ref",
]

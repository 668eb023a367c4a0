"""Registry factory (services/storage/registry.py): a tenant's ObjectStoreBinding -> S3ObjectStore.

The secret named by credentials_secret_ref holds JSON {"access_key_id", "secret_access_key",
"session_token"?} or ACCESS_KEY_ID:SECRET_ACCESS_KEY (the DynamoDB adapter reads the same
shapes); no ref means the SDK's default credential chain (environment, instance role). The
adapter connects lazily and does not create the bucket (provision() is the control plane's
job) unless the binding's option auto_provision is "true" (dev setups).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.common.bindings.aws_keys import aws_keys
from services.common.errors import FailedPrecondition
from services.storage.adapters.s3.backend import S3ObjectStore
from services.storage.adapters.s3.config import config_from_binding
from services.storage.adapters.store_factory import build_object_store

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext


def parse_secret(secret: str) -> dict[str, str]:
    """The credential fields of a secret; FailedPrecondition describes a bad shape, never the value."""
    keys = aws_keys(secret)
    if keys is not None:
        key_id, secret_key, token = keys
        out = {"access_key_id": key_id, "secret_access_key": secret_key}
        if token:
            out["session_token"] = token
        return out
    raise FailedPrecondition(
        "object_store binding (s3): the credentials secret is not JSON "
        '{"access_key_id", "secret_access_key"} nor ACCESS_KEY_ID:SECRET_ACCESS_KEY',
        reason="BINDING_CREDENTIALS_INVALID",
        metadata={"binding": "object_store", "backend": "s3"},
    )


async def build(ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> S3ObjectStore:
    return await build_object_store(
        ctx, binding, parse_secret, config_from_binding, lambda config: config.endpoint_url, S3ObjectStore
    )

"""Registry factory (services/storage/registry.py): a tenant's ObjectStoreBinding ->
AzureBlobObjectStore.

The secret named by credentials_secret_ref holds JSON with one of "connection_string",
"account_key" (+ optional "account_name"), "sas_token"; or the bare value: a connection string
(has AccountName=/BlobEndpoint=), a SAS token (has sig=), else an account key. The adapter
does not create the container (provision() is the control plane's job) unless the binding's
option auto_provision is "true" (dev setups).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from services.common.errors import FailedPrecondition
from services.storage.adapters.azure_blob.backend import AzureBlobObjectStore
from services.storage.adapters.azure_blob.config import config_from_binding
from services.storage.adapters.store_factory import build_object_store

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext

_FIELDS = ("connection_string", "account_key", "account_name", "sas_token")


def parse_secret(secret: str) -> dict[str, str]:
    """The credential fields of a secret; FailedPrecondition describes a bad shape, never the value."""
    text = secret.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            out = {k: str(data[k]) for k in _FIELDS if data.get(k)}
        except (ValueError, TypeError, AttributeError):
            out = {}
        if out:
            return out
        raise FailedPrecondition(
            "object_store binding (azure_blob): the credentials secret JSON holds none of "
            + ", ".join(_FIELDS),
            reason="BINDING_CREDENTIALS_INVALID",
            metadata={"binding": "object_store", "backend": "azure_blob"},
        )
    if "AccountName=" in text or "BlobEndpoint=" in text:
        return {"connection_string": text}
    if "sig=" in text:
        return {"sas_token": text}
    return {"account_key": text}


async def build(ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> AzureBlobObjectStore:
    return await build_object_store(
        ctx,
        binding,
        parse_secret,
        config_from_binding,
        lambda config: config.account_url,
        AzureBlobObjectStore,
    )

"""Capability policy: what StorageService answers when a tenant's backend cannot do something.

Every refusal is FAILED_PRECONDITION with reason CAPABILITY_UNSUPPORTED and metadata naming the
capability and the backend, so a client can tell "this backend can't" from "you asked wrong".
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.storage.ports import ItemCapabilities, ItemKey

REASON = "CAPABILITY_UNSUPPORTED"


def unsupported(kind: str, backend: str, capability: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the {backend} {kind} does not support this (capability {capability})",
        reason=REASON,
        metadata={"capability": capability, "backend": backend},
    )


def require(supported: bool, kind: str, backend: str, capability: str) -> None:
    if not supported:
        raise unsupported(kind, backend, capability)


def check_transaction(caps: ItemCapabilities, backend: str, keys: list[ItemKey]) -> None:
    """A transaction over these keys runs on this backend, or the capability it lacks is named."""
    require(caps.transactions, "item store", backend, "transactions")
    if len(keys) > caps.max_transaction_ops:
        raise FailedPrecondition(
            f"the {backend} item store runs at most {caps.max_transaction_ops} "
            "operations per transaction (capability max_transaction_ops)",
            reason=REASON,
            metadata={"capability": "max_transaction_ops", "backend": backend},
        )
    partitions = {(key.collection, key.partition_key) for key in keys}
    require(
        len(partitions) <= 1 or caps.cross_partition_transactions,
        "item store",
        backend,
        "cross_partition_transactions",
    )

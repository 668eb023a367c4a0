"""The binding errors every item-store adapter answers alike: credentials the backend refuses and
a store that was never provisioned. Named by the binding, never by a secret."""

from __future__ import annotations

from services.common.errors import FailedPrecondition


def credentials_rejected(binding: str, backend: str, service: str, detail: str = "") -> FailedPrecondition:
    return FailedPrecondition(
        f"{binding}: {service} rejected the binding's credentials" + (f" ({detail})" if detail else ""),
        reason="BINDING_CREDENTIALS_REJECTED",
        metadata={"binding": "item_store", "backend": backend},
    )


def not_provisioned(binding: str, backend: str, missing: str) -> FailedPrecondition:
    """`missing`: what the backend found absent (table, database, container)."""
    return FailedPrecondition(
        f"{binding}: {missing} does not exist; the item store is not provisioned",
        reason="ITEM_STORE_NOT_PROVISIONED",
        metadata={"binding": "item_store", "backend": backend},
    )

"""Item use cases of StorageService, on the ports (no gRPC, no proto messages here).

What must be the same for every backend lives here: duplicate keys refused in batches and
transactions, the transaction capability policy (capabilities.check_transaction), and pages
bounded by bytes as well as by count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from services.common.errors import InvalidArgument
from services.storage.capabilities import check_transaction
from services.storage.ports import DeleteOp, ItemKey, ItemQuery, PutOp, StoredItem, StoreLeases, TransactOp

M = TypeVar("M")


class ItemManager:
    def __init__(self, leases: StoreLeases) -> None:
        self._leases = leases

    async def get(self, tenant_id: str, key: ItemKey) -> StoredItem:
        async with self._leases.items(tenant_id) as lease:
            return await lease.store.get(key)

    async def put(self, tenant_id: str, op: PutOp) -> StoredItem:
        async with self._leases.items(tenant_id) as lease:
            return await lease.store.put(
                op.key, op.attributes, must_not_exist=op.must_not_exist, expected_etag=op.expected_etag
            )

    async def delete(self, tenant_id: str, key: ItemKey, expected_etag: str | None) -> None:
        async with self._leases.items(tenant_id) as lease:
            await lease.store.delete(key, expected_etag=expected_etag)

    async def query(
        self,
        tenant_id: str,
        query: ItemQuery,
        render: Callable[[StoredItem], M],
        fits: Callable[[Sequence[M]], int],
    ) -> tuple[list[M], str]:
        """One page, rendered; `fits` says how many rendered items fit one response."""
        async with self._leases.items(tenant_id) as lease:
            while True:
                page = await lease.store.query(query)
                rendered = [render(i) for i in page.items]
                fitting = fits(rendered)
                if fitting == len(rendered):
                    return rendered, page.next_page_token
                # A page bounded by bytes too: ask for the items that fit, and a token after them.
                query = replace(query, page_size=fitting)

    async def batch_get(
        self, tenant_id: str, keys: Sequence[ItemKey]
    ) -> tuple[list[StoredItem], list[ItemKey]]:
        """(found items in request order, keys not found)."""
        refuse_duplicates(keys, "keys")
        async with self._leases.items(tenant_id) as lease:
            found = await lease.store.batch_get(keys)
        present = {item.key for item in found}
        return found, [k for k in keys if k not in present]

    async def batch_write(self, tenant_id: str, ops: Sequence[PutOp | DeleteOp]) -> list[StoredItem]:
        refuse_duplicates([op.key for op in ops], "writes")
        async with self._leases.items(tenant_id) as lease:
            return await lease.store.batch_write(ops)

    async def transact_write(self, tenant_id: str, ops: Sequence[TransactOp]) -> list[StoredItem]:
        keys = [op.key for op in ops]
        refuse_duplicates(keys, "writes")
        async with self._leases.items(tenant_id) as lease:
            check_transaction(lease.store.capabilities, lease.backend, keys)
            return await lease.store.transact_write(ops)


def refuse_duplicates(keys: Sequence[ItemKey], field: str) -> None:
    seen: set[ItemKey] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise InvalidArgument(
                "the same item appears more than once",
                field_violations=[(f"{field}[{i}]", "duplicate item key")],
            )
        seen.add(key)

"""Ports of the storage domain: what StorageService needs from any object or item backend.

Adapters (services/storage/adapters/, one module per backend) implement these and raise the
errors from services.common.errors so every backend answers the same situation with the same
code. A backend that cannot do something says so in its capabilities; the service then answers
FAILED_PRECONDITION naming the capability instead of pretending.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

S_co = TypeVar("S_co", covariant=True)

# ---------------------------------------------------------------------------------------------
# Objects


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    sha256: str  # lowercase hex of the whole content
    etag: str
    created: datetime
    updated: datetime
    user_metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectPage:
    objects: Sequence[ObjectInfo]
    next_page_token: str  # "" when there is no further page


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires: datetime


@dataclass(frozen=True)
class ObjectCapabilities:
    sign_url: bool = False
    # Create-only writes (if-none-match) enforced by the backend itself.
    if_none_match: bool = True
    ranged_read: bool = True


SignMethod: TypeAlias = Literal["GET", "PUT"]


@dataclass(frozen=True)
class OrphanSweep:
    """What one orphan sweep removed: temp files of dead uploads, blobs no index names."""

    tmp_files: int = 0
    tmp_bytes: int = 0
    blob_files: int = 0
    blob_bytes: int = 0

    @property
    def files(self) -> int:
        return self.tmp_files + self.blob_files

    def as_log(self) -> dict[str, int]:
        return {
            "tmp_files": self.tmp_files,
            "tmp_bytes": self.tmp_bytes,
            "blob_files": self.blob_files,
            "blob_bytes": self.blob_bytes,
        }


@runtime_checkable
class OrphanSweeper(Protocol):
    """An object store that can leave bytes behind that its listing does not show (the local
    filesystem store); cloud stores commit an object atomically and need no sweep."""

    async def sweep_orphans(self, min_age_seconds: float | None = None) -> OrphanSweep: ...


class ObjectStore(Protocol):
    """One tenant's object store. Keys were already validated by the service."""

    @property
    def capabilities(self) -> ObjectCapabilities: ...

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        user_metadata: Mapping[str, str],
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Stream chunks into the object with bounded memory. Atomic: on any error or
        cancellation nothing (no partial object, no orphan parts) remains and a previous
        version stays intact. if_none_match: AlreadyExists if the key exists.
        An exception raised by the chunks iterator itself propagates unchanged (the service
        uses this to abort an upload, e.g. on a checksum mismatch or a framing error)."""
        ...

    async def get(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """Metadata plus a stream of the bytes [start, start+length). NotFound if absent;
        InvalidArgument if start is past the end (start == size == 0 is allowed)."""
        ...

    async def head(self, key: str) -> ObjectInfo: ...

    async def delete(self, key: str) -> ObjectInfo:
        """Delete and return what was deleted (size feeds storage metering). NotFound if absent."""
        ...

    async def list(self, prefix: str, page_size: int, page_token: str) -> ObjectPage:
        """Objects whose key starts with prefix, in key (byte) order; page tokens are stable."""
        ...

    async def sign_url(self, key: str, method: SignMethod, ttl: timedelta) -> SignedUrl:
        """FailedPrecondition when capabilities.sign_url is False."""
        ...

    async def provision(self) -> None:
        """Create the tenant's bucket/container/directory; idempotent."""
        ...

    async def deprovision(self) -> None:
        """Delete the tenant's objects and container; idempotent."""
        ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Items

# JSON-like values, exact: int is an exact int64, Decimal an exact decimal (kept as written,
# e.g. Decimal("1.50") stays "1.50"), float a finite double. bool is not an int here.
AttrValue: TypeAlias = bool | int | float | Decimal | str | list["AttrValue"] | dict[str, "AttrValue"] | None
Attributes: TypeAlias = dict[str, AttrValue]


@dataclass(frozen=True, order=True)
class ItemKey:
    collection: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class StoredItem:
    key: ItemKey
    attributes: Attributes
    etag: str
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class SortKeyCondition:
    """eq: sort_key == value; prefix: starts with value; range: start <= sort_key <= end
    (either bound may be None). Ordering is byte-wise over UTF-8."""

    kind: Literal["eq", "prefix", "range"]
    value: str = ""
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class ItemQuery:
    collection: str
    partition_key: str
    condition: SortKeyCondition | None = None
    descending: bool = False
    page_size: int = 100
    page_token: str = ""


@dataclass(frozen=True)
class ItemPage:
    items: Sequence[StoredItem]
    next_page_token: str


@dataclass(frozen=True)
class PutOp:
    key: ItemKey
    attributes: Attributes
    must_not_exist: bool = False
    expected_etag: str | None = None


@dataclass(frozen=True)
class DeleteOp:
    key: ItemKey
    expected_etag: str | None = None


@dataclass(frozen=True)
class ConditionCheckOp:
    key: ItemKey
    # must exist with this etag; None means "must exist" (unless must_not_exist)
    expected_etag: str | None = None
    must_not_exist: bool = False


TransactOp: TypeAlias = PutOp | DeleteOp | ConditionCheckOp


@dataclass(frozen=True)
class ItemCapabilities:
    transactions: bool = True
    # Can one transaction span partitions (Cosmos DB cannot).
    cross_partition_transactions: bool = True
    max_transaction_ops: int = 100


class ItemStore(Protocol):
    """One tenant's item store. Semantics every adapter must share (the contract suite checks):

    - put: must_not_exist on an existing item -> AlreadyExists; expected_etag that does not
      match, or names a missing item -> Aborted. A new etag on every write.
    - delete: missing item -> NotFound; expected_etag mismatch -> Aborted.
    - transact_write: all or nothing; a failed condition -> Aborted with
      metadata {"operation_index": "<i>"}; two ops on one key -> InvalidArgument. A delete
      without expected_etag of a missing item is a no-op (as in DynamoDB), not a failure.
    - attribute values come back identical (types and values) to what was written.
    """

    @property
    def capabilities(self) -> ItemCapabilities: ...

    async def get(self, key: ItemKey) -> StoredItem: ...

    async def put(
        self,
        key: ItemKey,
        attributes: Attributes,
        *,
        must_not_exist: bool = False,
        expected_etag: str | None = None,
    ) -> StoredItem: ...

    async def delete(self, key: ItemKey, *, expected_etag: str | None = None) -> None: ...

    async def query(self, query: ItemQuery) -> ItemPage: ...

    async def batch_get(self, keys: Sequence[ItemKey]) -> list[StoredItem]:
        """Found items (missing keys omitted), in request order."""
        ...

    async def batch_write(self, ops: Sequence[PutOp | DeleteOp]) -> list[StoredItem]:
        """Unconditional puts/deletes (conditions are ignored); not atomic. Deleting a missing
        item is not an error here. Returns the stored items of the puts, in order."""
        ...

    async def transact_write(self, ops: Sequence[TransactOp]) -> list[StoredItem]: ...

    async def provision(self) -> None: ...

    async def deprovision(self) -> None: ...

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Leases


class StoreLease(Protocol[S_co]):
    """One tenant's adapter lent to one call (services.common.adapter_cache.Lease fits)."""

    @property
    def store(self) -> S_co: ...

    @property
    def backend(self) -> str:
        """The backend's name ("local", "s3", ...): the metering dimension, and what capability
        refusals name."""
        ...


class StoreLeases(Protocol):
    """Hands out a tenant's object and item adapters for one call (TenantConnections)."""

    def objects(self, tenant_id: str) -> AbstractAsyncContextManager[StoreLease[ObjectStore]]: ...

    def items(self, tenant_id: str) -> AbstractAsyncContextManager[StoreLease[ItemStore]]: ...


@runtime_checkable
class ItemScanner(Protocol):
    """Every item of the tenant's store, page by page in no promised order: the offboarding
    export reads a whole store with it. Every item adapter implements it."""

    def scan(self, page_size: int = 500) -> AsyncIterator[StoredItem]: ...

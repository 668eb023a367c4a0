"""What every cloud object store class shares around its backend's requests: put through the
object writer and describe what was written, the delete that reports the size of what it
deleted, the signed-URL lifetime bound, and idempotent provisioning (a backend error code that
means "already so" is success)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from services.common.errors import Aborted, InvalidArgument
from services.storage.adapters.object_writer import ObjectTarget, write_and_describe
from services.storage.ports import ObjectInfo

MAX_SIGN_TTL = timedelta(days=7)  # the contract's limit (and SigV4's) for signed URLs
_DELETE_ATTEMPTS = 3


async def delete_described(
    key: str,
    head: Callable[[], Awaitable[ObjectInfo]],
    delete_if_match: Callable[[str], Awaitable[object]],
) -> ObjectInfo:
    """HEAD, then delete If-Match that version, so the size reported (for metering) is the size
    of what was deleted even if the key is overwritten concurrently. delete_if_match raises
    Aborted when the version changed in between; the new version is then described and tried."""
    for _ in range(_DELETE_ATTEMPTS):
        info = await head()
        try:
            await delete_if_match(info.etag)
            return info
        except Aborted:
            continue
    raise Aborted(f"object '{key}' keeps changing; retry the delete", metadata={"key": key})


def check_sign_ttl(ttl: timedelta) -> None:
    if ttl <= timedelta(0) or ttl > MAX_SIGN_TTL:
        raise InvalidArgument(
            "ttl must be between 1 s and 7 days", field_violations=[("ttl", "out of range")]
        )


async def unless_code(
    request: Callable[[], Awaitable[object]], error_code: Callable[[BaseException], str], fine: str
) -> None:
    """Run request; a failure whose backend error code is `fine` counts as done."""
    try:
        await request()
    except Exception as exc:
        if error_code(exc.__cause__ or exc) != fine:
            raise


class CloudObjectStore(ABC):
    """put and delete of a cloud ObjectStore, on its backend's primitives."""

    @property
    @abstractmethod
    def label(self) -> str:
        """The binding's label, as errors name it."""

    @abstractmethod
    async def writer(self, create_only: bool) -> ObjectTarget[Any]:
        """The write primitives for one write; refuses what this binding cannot do."""

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    async def delete_if_match(self, key: str, etag: str) -> None:
        """Delete that version only; Aborted when the key holds another one."""

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        user_metadata: Mapping[str, str],
        if_none_match: bool = False,
    ) -> ObjectInfo:
        return await write_and_describe(
            await self.writer(if_none_match),
            self.label,
            key,
            chunks,
            lambda: self.head(key),
            content_type=content_type,
            user_metadata=user_metadata,
            if_none_match=if_none_match,
        )

    async def delete(self, key: str) -> ObjectInfo:
        return await delete_described(
            key, lambda: self.head(key), lambda etag: self.delete_if_match(key, etag)
        )

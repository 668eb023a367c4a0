"""What every cloud object store class shares around its backend's requests: the delete that
reports the size of what it deleted, the signed-URL lifetime bound, and idempotent
provisioning (a backend error code that means "already so" is success)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from services.common.errors import Aborted, InvalidArgument
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

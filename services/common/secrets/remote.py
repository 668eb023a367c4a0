"""What the remote secret stores (aws-sm://, azure-kv://) share.

- `TtlCache`: a value is kept for a short TTL so a hot path does not call the store on every
  request, and a rotated value is seen once the TTL has passed. Concurrent misses for one secret
  share one fetch; failures are never cached.
- retries: services/common/backoff.py (exponential backoff with full jitter, never shorter than
  the store's Retry-After; the SDKs' own retries are off so it is the only place that decides).
- `select_json_key`: `ref#key` picks one field of a secret holding a JSON object.
- error helpers that name the reference and the store's error code, never a value.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from pydantic import SecretStr

from services.common.backoff import RetryPolicy, Transient
from services.common.errors import FailedPrecondition, ResourceExhausted, Unavailable
from services.common.secrets.ref import SecretRef

T = TypeVar("T")


# -- retries ----------------------------------------------------------------------------------


# The retry policy itself (call_with_retries, RetryPolicy) is services/common/backoff.py,
# shared with the object-store adapters.


def exhausted(
    ref: SecretRef, store: str, verdict: Transient, policy: RetryPolicy, detail: str
) -> ResourceExhausted | Unavailable:
    """What a transient failure becomes once the retries are spent."""
    meta = {"secret_ref": str(ref), "backend": ref.scheme}
    if verdict.throttled:
        return ResourceExhausted(
            f"secret {ref}: {store} is throttling requests ({detail}); retry later",
            retry_after_seconds=verdict.retry_after if verdict.retry_after is not None else policy.max_delay,
            reason="SECRET_STORE_THROTTLED",
            metadata=meta,
        )
    return Unavailable(
        f"secret {ref}: {store} is unreachable ({detail})",
        reason="SECRET_STORE_UNAVAILABLE",
        metadata=meta,
    )


def rejected(
    ref: SecretRef, store: str, detail: str, reason: str = "SECRET_STORE_DENIED"
) -> FailedPrecondition:
    """The store refused us (credentials, permissions, state): a binding problem, not retried."""
    return FailedPrecondition(
        f"secret {ref}: {store} refused the request ({detail})",
        reason=reason,
        metadata={"secret_ref": str(ref), "backend": ref.scheme},
    )


def invalid_ref(ref: SecretRef, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"secret reference {ref}: {why}",
        reason="SECRET_REF_INVALID",
        metadata={"secret_ref": str(ref), "backend": ref.scheme},
    )


def tls_failure(exc: BaseException) -> bool:
    """True if a certificate check failed somewhere in the exception's chain (a misconfigured or
    impersonated endpoint: not something a retry fixes)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


# -- JSON keys --------------------------------------------------------------------------------


def split_json_key(ref: SecretRef, path: str) -> tuple[str, str | None]:
    """`name#key` -> (name, key); neither AWS nor Azure allows '#' in a secret name."""
    body, sep, key = path.partition("#")
    if sep and not key:
        raise invalid_ref(ref, "'#' must be followed by a JSON key")
    return body, (key if sep else None)


def select_json_key(ref: SecretRef, value: SecretStr, key: str) -> SecretStr:
    """One field of a JSON-object secret: strings as they are, anything else as compact JSON."""
    meta = {"secret_ref": str(ref), "backend": ref.scheme}
    try:
        doc = json.loads(value.get_secret_value())
    except ValueError:
        doc = None  # the decoder's exception keeps the whole document: do not chain it
    if not isinstance(doc, dict):
        raise FailedPrecondition(
            f"secret {ref}: the secret is not a JSON object, so a key cannot be selected",
            reason="SECRET_NOT_JSON",
            metadata=meta,
        )
    if key not in doc:
        raise FailedPrecondition(
            f"secret {ref}: the JSON object has no key {key!r}", reason="SECRET_KEY_MISSING", metadata=meta
        )
    field = doc[key]
    return SecretStr(field if isinstance(field, str) else json.dumps(field, ensure_ascii=False))


# -- cache ------------------------------------------------------------------------------------


class TtlCache:
    """Secret values by key for `ttl` seconds (0 = no caching), at most `max_entries` (LRU)."""

    def __init__(
        self, ttl: float, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, SecretStr]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Task[SecretStr]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TtlCache(ttl={self.ttl}, entries={len(self._entries)})"

    async def get(self, key: Hashable, load: Callable[[], Awaitable[SecretStr]]) -> SecretStr:
        hit = self._entries.get(key)
        if hit is not None:
            if hit[0] > self._clock():
                self._entries.move_to_end(key)
                return hit[1]
            del self._entries[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            # Retrieve the outcome even if every waiter was cancelled (no "never retrieved" noise).
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[key] = task
        # One caller's cancellation must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[SecretStr]]) -> SecretStr:
        me = asyncio.current_task()
        try:
            value = await load()
            # Store only if nobody invalidated the key meanwhile (a write during the fetch).
            if self.ttl > 0 and self._inflight.get(key) is me:
                self._entries[key] = (self._clock() + self.ttl, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value
        finally:
            if self._inflight.get(key) is me:
                del self._inflight[key]

    def invalidate(self, key: Hashable) -> None:
        self._entries.pop(key, None)
        self._inflight.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._inflight.clear()

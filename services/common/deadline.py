"""Every call has a deadline, and everything the call does runs inside it.

The shared interceptor starts the deadline when a call arrives: the client's `grpc-timeout`
capped by the service's maximum, or the service's default when the client sent none (REST
callers through Envoy, scripts that forgot one). It is kept in a contextvar as an absolute
time on the event loop's clock, so code far from the servicer (directory lookups, retry loops,
SDK timeouts, the circuit breaker) asks "how long may I still take?" without threading a
context object through every port.

The interceptor also enforces it (`run` / `stream`): when it passes, the servicer's task is
cancelled wherever it waits (an SDK request, a retry back-off, a pool connect), which aborts the
backend request, and the client gets DEADLINE_EXCEEDED. grpc.aio already cancels a call whose
*client* deadline passes; this adds the default and the cap for calls that sent none or a huge one.
Tasks created during a call (asyncio copies the context) see the same deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from services.common.errors import DeadlineExceeded

T = TypeVar("T")

# The server gives up this much before the client does, so the client reads the server's answer
# (DEADLINE_EXCEEDED with ErrorInfo) instead of its own local timeout.
CLIENT_MARGIN_SECONDS = 0.02
# grpc.aio cancels a call whose client deadline passed a few ms before the contextvar's deadline
# (clocks differ): a cancellation this close to the deadline is the deadline's doing.
EXPIRY_TOLERANCE_SECONDS = 0.05

# Absolute deadline of the current call on the running loop's clock (loop.time()); None outside a call.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("makoto_call_deadline", default=None)


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long one call of a service may take."""

    default_seconds: float = 30.0  # when the client sent no grpc-timeout
    max_seconds: float = 300.0  # cap on what a client may ask for

    def effective(self, client_remaining: float | None, *, streaming: bool = False) -> float:
        """Seconds the call may take. A stream (upload, download, SSE) without a client deadline
        gets the cap: its length depends on the data, not on the backend's health."""
        if client_remaining is None:
            return self.max_seconds if streaming else self.default_seconds
        return max(0.0, min(float(client_remaining) - CLIENT_MARGIN_SECONDS, self.max_seconds))


def _now() -> float:
    return asyncio.get_running_loop().time()


def start(seconds: float) -> contextvars.Token[float | None]:
    """Begin a call that may take `seconds` from now; reset() the token when it ends."""
    return _deadline.set(_now() + seconds)


def reset(token: contextvars.Token[float | None]) -> None:
    try:
        _deadline.reset(token)
    except ValueError:  # a stream finalised from another context: nothing of ours is set there
        pass


def at() -> float | None:
    """The current call's absolute deadline (loop clock), or None outside a call."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds the current call has left (never negative), or None outside a call."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - _now())


def expired(tolerance: float = EXPIRY_TOLERANCE_SECONDS) -> bool:
    """Has the current call's deadline passed (or is it within `tolerance` of passing)?"""
    left = remaining()
    return left is not None and left <= tolerance


def timeout(cap: float, floor: float = 0.001) -> float:
    """A timeout for one downstream step: `cap`, shortened to what the call has left.

    Never zero (SDKs treat 0 as "no timeout" or refuse it): a spent call gets `floor`, so the
    step fails at once with its own timeout error.
    """
    left = remaining()
    if left is None:
        return cap
    return max(floor, min(cap, left))


def room_for_retry(min_seconds: float = 2.0) -> bool:
    """Is there time for an SDK's own back-off and another attempt? Outside a call: yes.

    For SDKs whose retry loop does not know our deadline (openai, anthropic: first back-off
    0.5-1 s): with less time left, one attempt and its real error (UNAVAILABLE) beat a retry
    that the deadline cuts off as DEADLINE_EXCEEDED.
    """
    left = remaining()
    return left is None or left >= min_seconds


def _exceeded() -> DeadlineExceeded:
    return DeadlineExceeded("the call's deadline passed before the backend answered")


async def run(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, cancelling it when the call's deadline passes (-> DeadlineExceeded)."""
    deadline = _deadline.get()
    if deadline is None:
        return await awaitable
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            return await awaitable
    except TimeoutError as exc:
        if scope.expired():
            raise _exceeded() from exc
        raise


async def stream(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """Re-yield a response stream, bounding the producer by the call's deadline.

    Only the wait for the next item is bounded (not the time the consumer takes between items),
    so a timeout never fires inside the consumer's code.
    """
    iterator = aiter(items)
    try:
        while True:
            deadline = _deadline.get()
            if deadline is not None and _now() >= deadline:
                # Spent while the consumer (a slow client) had the item: end here, without
                # resuming the producer, so its backend call is not blamed for the timeout.
                raise _exceeded()
            scope = asyncio.timeout_at(deadline)
            try:
                async with scope:
                    item = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                if scope.expired():
                    raise _exceeded() from exc
                raise
            yield item
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


# Per-service defaults (MeshSettings.deadline_default_seconds / deadline_max_seconds override
# them service by service): a call without grpc-timeout gets the first, none gets more than the
# second (long object streams and LLM answers need more than a directory lookup).
DEFAULT_SECONDS: dict[str, float] = {"tenant": 10.0, "storage": 30.0, "llm": 120.0, "metering": 15.0}
MAX_SECONDS: dict[str, float] = {"tenant": 60.0, "storage": 900.0, "llm": 600.0, "metering": 120.0}


def policy_for(service: str, defaults: dict[str, float], caps: dict[str, float]) -> DeadlinePolicy:
    """The policy of one service: the settings' entry for it, else the built-in one."""
    base = DeadlinePolicy()
    default = defaults.get(service, DEFAULT_SECONDS.get(service, base.default_seconds))
    cap = caps.get(service, MAX_SECONDS.get(service, base.max_seconds))
    return DeadlinePolicy(default_seconds=min(default, cap), max_seconds=cap)

"""Tenant lifecycle push over NATS: TenantService publishes, data-plane services listen.

Subject: `<prefix>.tenants.<tenant_id>.changed`, published by TenantService after every committed
change of a tenant (create, provisioned, update, suspend, resume, delete). The payload is the
tenant's new ResolveTenantResponse (state, bindings with secret references only, etag), so a
subscriber can apply it without a round trip; it still refetches for safety.

Core NATS, not JetStream: an invalidation is only useful now. A subscriber that was disconnected
may have missed some, so on every (re)connect it expires its whole cache instead of replaying.

NATS is optional. The link connects in the background and keeps retrying, so a service starts
and serves without NATS; while the link is down, callers fall back to polling (short TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

log = structlog.get_logger("makoto.tenant_events")


def changed_subject(prefix: str, tenant_id: str) -> str:
    return f"{prefix}.tenants.{tenant_id}.changed"


def all_changes(prefix: str) -> str:
    return f"{prefix}.tenants.*.changed"


def tenant_of(subject: str, prefix: str) -> str | None:
    head, tail = f"{prefix}.tenants.", ".changed"
    if subject.startswith(head) and subject.endswith(tail):
        tenant_id = subject[len(head) : -len(tail)]
        return tenant_id or None
    return None


class NatsLink:
    """One NATS connection, made and kept in the background.

    on_connect runs once, after the first successful connect (subscribe there: nats-py keeps
    subscriptions across reconnects). on_up / on_down follow the connection's state.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        on_connect: Callable[[NATS], Awaitable[None]] | None = None,
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
        reconnect_wait: int = 1,
    ) -> None:
        self.url = url
        self._name = name
        self._on_connect = on_connect
        self._on_up = on_up
        self._on_down = on_down
        self._reconnect_wait = reconnect_wait
        self._nc = NATS()
        self._task: asyncio.Task[None] | None = None
        self._complained = False
        self.up = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    async def _run(self) -> None:
        # max_reconnect_attempts=-1 makes nats-py retry the first connect forever too.
        await self._nc.connect(
            servers=[self.url],
            name=self._name,
            connect_timeout=1,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self._reconnect_wait,
            error_cb=self._error,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        if self._on_connect is not None:
            await self._on_connect(self._nc)
        await self._reconnected()

    async def _error(self, exc: Exception) -> None:
        # Once per outage at WARNING; the retries every second would flood the log.
        if not self._complained:
            self._complained = True
            log.warning("nats unreachable; retrying in the background", url=self.url, error=str(exc))

    async def _disconnected(self) -> None:
        if self.up.is_set():
            log.warning("nats disconnected", url=self.url)
        self.up.clear()
        if self._on_down is not None:
            self._on_down()

    async def _reconnected(self) -> None:
        self._complained = False
        log.info("nats connected", url=self.url)
        self.up.set()
        if self._on_up is not None:
            self._on_up()

    async def publish(self, subject: str, payload: bytes) -> bool:
        """False when nothing could be sent (never connected, or closed). While reconnecting
        nats-py buffers the message and sends it once the connection is back."""
        if self._nc.is_closed or not (self._nc.is_connected or self._nc.is_reconnecting):
            return False
        try:
            await self._nc.publish(subject, payload)
        except Exception as exc:  # a lost notification must never fail the admin call
            log.warning("nats publish failed", subject=subject, error=str(exc))
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            await self._nc.close()


MessageHandler = Callable[[Msg], Awaitable[None]]

"""Data-plane services resolve a tenant's state and bindings through TenantDirectoryService.

Answers are cached (services/common/directory_cache.py: serve-stale while TenantService is
down, bounded by directory_max_stale_seconds; refresh-ahead; NOT_FOUND remembered briefly).
Lifecycle changes arrive by push when MAKOTO_NATS_URL is set (services/common/tenant_events.py):
the pushed answer replaces the cached one at once and a refetch confirms it. Without NATS, or
while it is unreachable, answers are re-checked every directory_cache_ttl_seconds (polling).
"""

from __future__ import annotations

import grpc
import structlog
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common import deadline, tls
from services.common.config import MeshSettings
from services.common.dev_issuer import ServiceTokenSource
from services.common.directory_cache import DirectoryCache
from services.common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.tenant_events import NatsLink, all_changes, tenant_of
from services.common.trace_context import client_interceptors

log = structlog.get_logger("makoto.directory")

# Without a stale answer to fall back on, a lookup waits this long for TenantService.
FETCH_TIMEOUT_SECONDS = 5.0

_CHANNEL_OPTIONS = [
    # Reconnect quickly after TenantService restarts (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # A target naming several replicas: use every one that is up, skip the dead ones.
    ("grpc.lb_policy_name", "round_robin"),
]


def check_active(tenant_id: str, answer: directory_pb2.ResolveTenantResponse) -> None:
    """PermissionDenied if suspended, NotFound if deleted or being deleted, FailedPrecondition
    for any other state than ACTIVE (reasons in errors.LIFECYCLE_REFUSALS:
    the interceptor does not bill such calls)."""
    if answer.state == tenant_pb2.TENANT_STATE_ACTIVE:
        return
    if answer.state == tenant_pb2.TENANT_STATE_SUSPENDED:
        raise PermissionDenied(f"tenant {tenant_id} is suspended", reason="TENANT_SUSPENDED")
    if answer.state in (tenant_pb2.TENANT_STATE_DELETED, tenant_pb2.TENANT_STATE_DELETING):
        raise NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND")
    state = tenant_pb2.TenantState.Name(answer.state)
    raise FailedPrecondition(f"tenant {tenant_id} is not active ({state})", reason="TENANT_NOT_ACTIVE")


class TenantDirectory:
    def __init__(
        self,
        address: str,
        tokens: ServiceTokenSource,
        ttl_seconds: float = 1.0,
        *,
        push_ttl_seconds: float = 30.0,
        max_stale_seconds: float = 600.0,
        negative_ttl_seconds: float = 2.0,
        refresh_wait_seconds: float = 0.5,
        nats_url: str = "",
        subject_prefix: str = "makoto",
        name: str = "makoto",
    ) -> None:
        self._channel = tls.open_channel(
            tokens.settings,
            "tenant",
            identity=tokens.service_name,
            address=address,
            options=_CHANNEL_OPTIONS,
            interceptors=client_interceptors(),
        )
        self._stub = directory_pb2_grpc.TenantDirectoryServiceStub(self._channel)
        self._tokens = tokens
        self._poll_ttl = ttl_seconds
        self._push_ttl = max(push_ttl_seconds, ttl_seconds)
        self._prefix = subject_prefix
        self.cache = DirectoryCache(
            self._fetch,
            ttl=ttl_seconds,
            max_stale=max_stale_seconds,
            negative_ttl=negative_ttl_seconds,
            refresh_wait=refresh_wait_seconds,
        )
        self.push: NatsLink | None = None
        if nats_url:
            self.push = NatsLink(
                nats_url,
                name=f"{name}-directory",
                on_connect=self._subscribe,
                on_up=self._push_up,
                on_down=self._push_down,
            )
            self.push.start()

    @classmethod
    def from_settings(cls, settings: MeshSettings, service: str) -> TenantDirectory:
        """The directory a data-plane service uses (call inside the running event loop)."""
        return cls(
            settings.tenant_directory_target or settings.address("tenant"),
            ServiceTokenSource(settings, service, "tenant"),
            ttl_seconds=settings.directory_cache_ttl_seconds,
            push_ttl_seconds=settings.directory_push_ttl_seconds,
            max_stale_seconds=settings.directory_max_stale_seconds,
            negative_ttl_seconds=settings.directory_negative_ttl_seconds,
            refresh_wait_seconds=settings.directory_refresh_wait_seconds,
            nats_url=settings.nats_url,
            subject_prefix=settings.nats_subject_prefix,
            name=service,
        )

    # -- lookups ---------------------------------------------------------------------

    async def resolve(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        return await self.cache.resolve(tenant_id)

    async def require_active(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        """Resolve and insist the tenant may use the data plane right now."""
        answer = await self.resolve(tenant_id)
        check_active(tenant_id, answer)
        return answer

    async def _fetch(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse | None:
        try:
            answer: directory_pb2.ResolveTenantResponse = await self._stub.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id=tenant_id),
                metadata=self._tokens.metadata(),
                timeout=deadline.timeout(FETCH_TIMEOUT_SECONDS),  # never longer than the call
            )
            return answer
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise Unavailable("tenant directory unavailable") from err

    def invalidate(self, tenant_id: str) -> None:
        self.cache.expire(tenant_id)

    # -- push ------------------------------------------------------------------------

    async def _subscribe(self, nc: NATS) -> None:
        await nc.subscribe(all_changes(self._prefix), cb=self._on_change)

    async def _on_change(self, msg: Msg) -> None:
        tenant_id = tenant_of(msg.subject, self._prefix)
        if tenant_id is None:
            return
        try:
            answer = directory_pb2.ResolveTenantResponse.FromString(msg.data)
        except Exception:  # an unreadable push still says "this tenant changed"
            log.warning("unreadable tenant change event", tenant_id=tenant_id)
            self.cache.expire(tenant_id)
            self.cache.refresh_soon(tenant_id)
            return
        if answer.tenant_id != tenant_id:
            self.cache.expire(tenant_id)
        elif answer.state == tenant_pb2.TENANT_STATE_DELETED:
            self.cache.put(tenant_id, None)  # what ResolveTenant answers for it: NOT_FOUND
        else:
            self.cache.put(tenant_id, answer)
        # For safety: two TenantService replicas may publish out of order; TenantService's
        # current answer is the one that stays.
        self.cache.refresh_soon(tenant_id)

    def _push_up(self) -> None:
        # Pushes sent while we were away are lost: re-check everything we hold.
        self.cache.ttl = self._push_ttl
        self.cache.expire_all()

    def _push_down(self) -> None:
        log.warning("tenant change push unavailable; polling TenantService", ttl_seconds=self._poll_ttl)
        self.cache.clamp(self._poll_ttl)

    async def close(self) -> None:
        if self.push is not None:
            await self.push.close()
        await self.cache.close()
        await self._channel.close(None)

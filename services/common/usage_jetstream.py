"""Usage over NATS JetStream (MAKOTO_USAGE_TRANSPORT=jetstream): the scale path.

Producers keep the local SQLite spool exactly as in the default transport (a call answers OK
only once its usage is committed there), but the spool's sender publishes to a JetStream stream
instead of calling MeteringService.RecordUsage. Every MeteringService replica pulls from one
shared durable consumer (services/metering/usage_consumer.py), so many producers and several
MeteringService replicas work together and a replica's death only delays delivery.

Exactly once, end to end, from at-least-once parts:
* a spool batch is deleted only after JetStream acknowledged every message of it (PubAck: the
  message is stored in the stream's file storage);
* each message carries `Nats-Msg-Id` = the event id, so a batch published again (a producer
  killed between the PubAck and its spool delete) is dropped by the stream's duplicate window;
* MeteringService acks a message only after the database commit that stored it, and the insert
  ignores ids it already has, so a redelivery (a replica killed before its ack) stores nothing.

The stream is a work queue (a message leaves it once acked) on file storage.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
import structlog
from makoto.metering.v1 import metering_pb2
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.common.config import MeshSettings
from services.common.metering_client import SpoolingUsageRecorder

log = structlog.get_logger("makoto.usage_jetstream")

# Redeliveries of one id within this window are dropped by the stream itself; later ones by the
# database's primary key.
DUPLICATE_WINDOW_SECONDS = 120.0
MSG_ID_HEADER = "Nats-Msg-Id"


async def connect(settings: MeshSettings, name: str) -> NATS:
    """One connection attempt (bounded); nats-py reconnects by itself once connected."""
    if not settings.nats_url:
        raise RuntimeError("MAKOTO_USAGE_TRANSPORT=jetstream needs MAKOTO_NATS_URL")
    return await nats.connect(
        servers=[settings.nats_url],
        name=name,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )


async def ensure_stream(js: JetStreamContext, settings: MeshSettings) -> None:
    """Create the usage stream if it is missing (producers and consumers both may be first)."""
    try:
        await js.stream_info(settings.usage_stream)
        return
    except NotFoundError:
        pass
    config = StreamConfig(
        name=settings.usage_stream,
        subjects=[settings.usage_subject_name],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    with contextlib.suppress(Exception):  # created meanwhile by another process: fine
        await js.add_stream(config)
    await js.stream_info(settings.usage_stream)


class JetStreamUsageRecorder(SpoolingUsageRecorder):
    """The spooling recorder, delivering to JetStream instead of RecordUsage."""

    # Connected by the sender on first use (see _stream).
    _nc: NATS | None = None
    _js: JetStreamContext | None = None

    @staticmethod
    def _check_transport(settings: MeshSettings) -> None:
        if not settings.nats_url:
            raise ValueError("MAKOTO_USAGE_TRANSPORT=jetstream needs MAKOTO_NATS_URL")

    async def _open_transport(self) -> None:
        # Connected lazily by the sender: a service starts (and spools) while NATS is down.
        return None

    async def _close_transport(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = self._js = None

    async def _stream(self) -> JetStreamContext:
        if self._nc is not None and self._nc.is_closed:
            self._nc = self._js = None
        if self._js is None:
            # Bounded: the sender must come back to its retry loop, never hang here.
            async with asyncio.timeout(self.rpc_timeout_seconds):
                nc = await connect(self._settings, f"usage-{self._source}")
            try:
                js = nc.jetstream(timeout=self.rpc_timeout_seconds)
                await ensure_stream(js, self._settings)
            except BaseException:
                await nc.close()
                raise
            self._nc, self._js = nc, js
        return self._js

    async def _call_server(self, events: list[metering_pb2.UsageEvent]) -> None:
        try:
            await self._publish_batch(events)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being stopped
            # nats-py cancels its own futures when a connection drops; that is a failed send
            # (retried), not a reason for the sender task to end.
            raise RuntimeError("JetStream publish was cancelled by the client library") from exc

    async def _publish_batch(self, events: list[metering_pb2.UsageEvent]) -> None:
        js = await self._stream()
        subject = self._settings.usage_subject_name
        # Published concurrently: one PubAck round trip per batch instead of per event.
        async with asyncio.timeout(2 * self.rpc_timeout_seconds):
            acks = await self._publish_all(js, subject, events)
        failed = [a for a in acks if isinstance(a, BaseException)]
        if failed:
            # The batch stays in the spool; publishing it again is deduplicated by id.
            raise RuntimeError(f"JetStream stored {len(acks) - len(failed)} of {len(events)} events") from (
                failed[0]
            )

    async def _publish_all(
        self, js: JetStreamContext, subject: str, events: list[metering_pb2.UsageEvent]
    ) -> list[object]:
        return await asyncio.gather(
            *(
                js.publish(
                    subject,
                    e.SerializeToString(),
                    timeout=self.rpc_timeout_seconds,
                    stream=self._settings.usage_stream,
                    headers={MSG_ID_HEADER: e.id},
                )
                for e in events
            ),
            return_exceptions=True,
        )


def usage_recorder(
    settings: MeshSettings, source: str, *, flush_interval: float = 0.5, batch_size: int = 200
) -> SpoolingUsageRecorder:
    """The recorder the settings ask for (MAKOTO_USAGE_TRANSPORT)."""
    kind = JetStreamUsageRecorder if settings.usage_transport == "jetstream" else SpoolingUsageRecorder
    return kind(settings, source, flush_interval=flush_interval, batch_size=batch_size)


__all__ = ["JetStreamUsageRecorder", "connect", "ensure_stream", "usage_recorder"]

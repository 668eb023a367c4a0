"""MeteringService's JetStream consumer (MAKOTO_USAGE_TRANSPORT=jetstream).

Every replica pulls from the same durable consumer, so the stream's messages are shared among
the replicas that are up. A pulled batch is validated (the proto's rules, as RecordUsage does),
stored in ONE transaction (insert-or-ignore by event id), and only then acked. A replica killed
before its acks leaves the batch to be redelivered after usage_ack_wait_seconds, to any replica,
and the repeated insert stores nothing new. A message that is not a valid event can never be
stored: it is terminated (never redelivered) and logged, like the spool's dead letters.

Trust: producers are authenticated by NATS itself (its accounts / credentials), not by a
service token; deploy the usage subject in an account only the services can publish to.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from google.protobuf.message import DecodeError
from makoto.metering.v1 import metering_pb2
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import Counter

from services.common.config import MeshSettings
from services.common.errors import MakotoError
from services.common.interceptor import validate_message
from services.common.metering_client import MeterEvent
from services.common.usage_jetstream import connect, ensure_stream
from services.metering.metering import Metering

log = structlog.get_logger("makoto.usage_consumer")

CONSUMED = Counter("makoto_usage_consumed_events_total", "Usage events taken from JetStream", ["outcome"])

FETCH_BATCH = 1000
FETCH_WAIT_SECONDS = 1.0
RETRY_SECONDS = 1.0


def decode(msg: Msg) -> MeterEvent:
    """The message's event, checked like a RecordUsage request (raises on anything invalid)."""
    proto = metering_pb2.UsageEvent.FromString(msg.data)
    validate_message(proto)
    return MeterEvent.from_proto(proto)


class JetStreamUsageConsumer:
    def __init__(self, settings: MeshSettings, metering: Metering, *, batch: int = FETCH_BATCH) -> None:
        self._settings = settings
        self._metering = metering
        self._batch = batch
        self._nc: NATS | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-consumer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # close()
                # nats-py cancelled one of its own futures (a dropped connection): reconnect.
                log.warning("usage consumer interrupted; reconnecting")
            except Exception as exc:
                log.warning("usage consumer failed; retrying", error=f"{type(exc).__name__}: {exc}")
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()
                self._nc = None
            await asyncio.sleep(RETRY_SECONDS)

    async def _consume(self) -> None:
        s = self._settings
        self._nc = await connect(s, f"metering-consumer-{s.replica_index}")
        js = self._nc.jetstream()
        await ensure_stream(js, s)
        sub = await js.pull_subscribe(
            s.usage_subject_name,
            durable=s.usage_consumer,
            stream=s.usage_stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=s.usage_ack_wait_seconds,
                max_ack_pending=max(10 * self._batch, 10_000),
            ),
        )
        log.info("consuming usage", stream=s.usage_stream, consumer=s.usage_consumer)
        while True:
            try:
                msgs = await sub.fetch(self._batch, timeout=FETCH_WAIT_SECONDS)
            except TimeoutError:
                continue
            await self._handle(msgs)

    async def _handle(self, msgs: list[Msg]) -> None:
        events: list[MeterEvent] = []
        good: list[Msg] = []
        for msg in msgs:
            try:
                events.append(decode(msg))
                good.append(msg)
            except (DecodeError, MakotoError, ValueError) as exc:
                log.error("usage message is not a valid event; terminated", error=str(exc)[:300])
                CONSUMED.labels("invalid").inc()
                await msg.term()
        if events:
            try:
                # One transaction for the whole batch; acks only after it committed.
                accepted, duplicates = await self._metering.record(events)
            except Exception as exc:
                log.warning("usage batch not stored; redelivering", events=len(events), error=str(exc)[:300])
                for msg in good:
                    await msg.nak(delay=RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                return
            CONSUMED.labels("stored").inc(accepted)
            CONSUMED.labels("duplicate").inc(duplicates)
        for msg in good:
            await msg.ack()

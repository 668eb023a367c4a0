"""LLM usage -> usage events (llm_prompt_tokens, llm_completion_tokens; dims model, provider)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import structlog

from services.common.usage import LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS, UsageRecorder
from services.llm.ports import Usage

log = structlog.get_logger("makoto.llm.metering")


async def _logged(meter: str, record: Awaitable[None]) -> None:
    try:
        await record
    except asyncio.CancelledError:
        raise
    except Exception:  # metering must never fail the call it measures
        log.exception("usage record failed", meter=meter)


class UsageMeter:
    def __init__(self, recorder: UsageRecorder | None) -> None:
        self._recorder = recorder

    def start(
        self, tenant_id: str, *, model: str, provider: str, usage: Usage, estimated: bool = False
    ) -> list[asyncio.Task[None]]:
        """One task per event, each recording it. A task's first step appends its event to the
        recorder's spool queue, so events started before the call's own api_calls event is
        recorded (after the handler returns) commit in the same spool write or an earlier one:
        the call still answers only after they are durable, with one spool write fewer."""
        if self._recorder is None:
            return []
        dimensions = {"model": model, "provider": provider}
        if estimated:
            # The provider never reported usage (stream cut short): the offline estimate is billed.
            log.info("billing estimated usage", model=model, provider=provider)
        loop = asyncio.get_running_loop()
        return [
            loop.create_task(
                _logged(
                    meter,
                    self._recorder.record(
                        meter=meter, tenant_id=tenant_id, value=value, dimensions=dimensions
                    ),
                )
            )
            for meter, value in (
                (LLM_PROMPT_TOKENS, usage.prompt_tokens),
                (LLM_COMPLETION_TOKENS, usage.completion_tokens),
            )
            if value > 0
        ]

    async def record(
        self, tenant_id: str, *, model: str, provider: str, usage: Usage, estimated: bool = False
    ) -> None:
        """Record and wait until the events are durable (or their failure is logged)."""
        tasks = self.start(tenant_id, model=model, provider=provider, usage=usage, estimated=estimated)
        if tasks:
            await asyncio.gather(*tasks)

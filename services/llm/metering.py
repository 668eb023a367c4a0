"""LLM usage -> usage events (llm_prompt_tokens, llm_completion_tokens; dims model, provider)."""

from __future__ import annotations

import asyncio

import structlog

from services.common.usage import LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS, UsageRecorder
from services.llm.ports import Usage

log = structlog.get_logger("makoto.llm.metering")


class UsageMeter:
    def __init__(self, recorder: UsageRecorder | None) -> None:
        self._recorder = recorder

    async def record(
        self, tenant_id: str, *, model: str, provider: str, usage: Usage, estimated: bool = False
    ) -> None:
        if self._recorder is None:
            return
        dimensions = {"model": model, "provider": provider}
        if estimated:
            # The provider never reported usage (stream cut short): the offline estimate is billed.
            log.info("billing estimated usage", model=model, provider=provider)
        meters = [
            (meter, value)
            for meter, value in (
                (LLM_PROMPT_TOKENS, usage.prompt_tokens),
                (LLM_COMPLETION_TOKENS, usage.completion_tokens),
            )
            if value > 0
        ]
        # Both at once: the spool commits events that arrive together in one write (one thread
        # hop and one SQLite transaction per call instead of two).
        outcomes = await asyncio.gather(
            *(
                self._recorder.record(meter=meter, tenant_id=tenant_id, value=value, dimensions=dimensions)
                for meter, value in meters
            ),
            return_exceptions=True,
        )
        for (meter, _), outcome in zip(meters, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):  # metering must never fail the call it measures
                log.error("usage record failed", meter=meter, exc_info=outcome)

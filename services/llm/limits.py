"""LLM limits shared by every LLMService replica: requests and tokens per minute, and the
tenant's monthly budget (tokens and/or money).

- rpm (the binding's rpm_limit) and tpm (the lower of the binding's tpm_limit and the plan's
  llm_tokens_per_minute) are GCRA buckets in the shared store. A call reserves its estimated
  prompt tokens up front; the provider's reported usage settles the difference afterwards.
- The budget counters (tokens, money in nano-units) for the month live in the shared store too,
  raised to MeteringService's durable totals whenever a replica refreshes the tenant's limits.
  A call is charged its prompt estimate before it goes out (refused if that crosses the budget),
  a stream is charged chunk by chunk (and ended once it crosses: at most one chunk over), and the
  final usage settles the difference.
- Crossing 80 % or 100 % of a budget records one `llm_budget_alerts` usage event per tenant,
  month, budget and threshold (a fixed event id, so replicas racing record it once).

Round trips: one shared-store round trip per change cost more CPU than the rest of a chat, so
far from the budget a replica keeps the tenant's budget charges in memory (a ledger) and adds
them in one round trip once they reach 1/16 of the room left (so up to 16 replicas together
cannot cross the budget unseen), after FLUSH_SECONDS, before the floors are raised and on
close; near or over the budget every change goes out at once, as before. A call's tpm
settlement (its real usage minus the estimate it reserved) is carried to the tenant's next
reservation, which takes it in the same round trip (or to the next flush).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from services.common.errors import ResourceExhausted
from services.common.limits.counters import SharedCounters
from services.common.limits.gcra import MICROS, Bucket
from services.common.limits.keys import MONTH_TTL_SECONDS, budget_keys, to_nanos
from services.common.limits.model import EffectiveLimits
from services.common.limits.tenant_limits import TenantLimitsCache
from services.common.usage import LLM_BUDGET_ALERTS, UsageRecorder

log = structlog.get_logger("makoto.llm.limits")

BUDGET_EXCEEDED = "LLM_BUDGET_EXCEEDED"
ALERT_THRESHOLDS = (80, 100)
# A replica keeps at most this share of a tenant's budget room out of the shared store.
LEDGER_SHARE = 16
# Charges kept in memory reach the shared store at least this often.
FLUSH_SECONDS = 1.0
# A ledger not used for this long is forgotten (its next charge goes out at once again).
LEDGER_IDLE_SECONDS = 300.0


class BudgetExceeded(ResourceExhausted):
    reason = BUDGET_EXCEEDED


@dataclass
class Charge:
    """What one call has been charged against the tenant's budget so far."""

    limits: EffectiveLimits
    estimate: int
    tpm: Bucket | None
    tokens: int = 0
    nanos: int = 0
    over: bool = False
    settled: bool = field(default=False)
    # Streamed tokens not yet charged in the shared store, and how many may wait: a quarter of
    # the budget room seen at the last charge (so the chunk that crosses is still the one seen).
    pending: int = 0
    flush_at: int = 1


@dataclass(eq=False)
class _Ledger:
    """A tenant's budget counters for one month as this replica sees them: the shared totals
    after its last round trip, plus what it charged since and has not sent yet."""

    keys: tuple[str, str]
    seen_tokens: int = 0
    seen_nanos: int = 0
    tokens: int = 0
    nanos: int = 0
    # How much may wait here (0 until the shared totals are known: everything goes out).
    max_tokens: int = 0
    max_nanos: int = 0
    used_at: float = 0.0
    # The tenant's limits at its last charge (the budgets its alerts are judged against).
    limits: EffectiveLimits | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pending(self) -> bool:
        return bool(self.tokens or self.nanos)

    def must_flush(self) -> bool:
        return (self.tokens != 0 and (self.max_tokens <= 0 or self.tokens > self.max_tokens)) or (
            self.nanos != 0 and (self.max_nanos <= 0 or self.nanos > self.max_nanos)
        )


class LlmLimits:
    def __init__(
        self, counters: SharedCounters, limits: TenantLimitsCache, recorder: UsageRecorder | None
    ) -> None:
        self._counters = counters
        self._limits = limits
        self._recorder = recorder
        # The EffectiveLimits object each tenant's floors were last raised from.
        self._floored: dict[str, EffectiveLimits] = {}
        self._ledgers: dict[tuple[str, str], _Ledger] = {}
        # tpm bucket key -> (bucket, token units its next reservation also takes).
        self._tpm_debts: dict[str, tuple[Bucket, float]] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def reserve(self, tenant_id: str, estimate: int, *, rpm: int, tpm: int) -> Charge:
        """Before a provider call: rate buckets, then the prompt estimate against the budget."""
        eff = await self._limits.get(tenant_id)
        await self._raise_floors(eff)
        plan_tpm = eff.limits.llm_tokens_per_minute or 0
        if plan_tpm > 0 and (tpm <= 0 or plan_tpm < tpm):  # the lower of the two set
            tpm = plan_tpm
        tpm = max(tpm, 0)
        if tpm and estimate > tpm:
            raise ResourceExhausted(
                f"request needs about {estimate} tokens, more than the tenant's limit of "
                f"{tpm} tokens per minute",
                reason="LLM_TPM_LIMIT",
            )
        buckets: list[Bucket] = []
        if rpm > 0:
            buckets.append(Bucket(self._counters.key("llm", tenant_id, "rpm"), rpm / 60.0, rpm))
        tpm_bucket = None
        debt = 0.0
        if tpm > 0:
            tpm_bucket = Bucket(self._counters.key("llm", tenant_id, "tpm"), tpm / 60.0, tpm, float(estimate))
            _, debt = self._tpm_debts.pop(tpm_bucket.key, (tpm_bucket, 0.0))
            if debt < 0:  # earlier calls used less than they reserved: given back first
                await self._counters.adjust(tpm_bucket, debt)
                debt = 0.0
            # The earlier calls' settlement rides along: one round trip for both.
            buckets.append(dataclasses.replace(tpm_bucket, cost=estimate + debt) if debt else tpm_bucket)
        if buckets:
            try:
                decision = await self._counters.acquire(buckets)
            except BaseException:
                self._owe(tpm_bucket, debt)
                raise
            if not decision.allowed and tpm_bucket is not None and debt:
                # Refused: the settlement is still owed (as an unconditional adjustment, as it
                # would have been), and the call is judged on its own estimate.
                await self._counters.adjust(tpm_bucket, debt)
                buckets[-1] = tpm_bucket
                decision = await self._counters.acquire(buckets)
            if not decision.allowed:
                what = " and ".join(
                    f"{rpm} requests per minute" if b.key.endswith("rpm") else f"{tpm} tokens per minute"
                    for b in buckets
                )
                raise ResourceExhausted(
                    f"tenant LLM rate limit reached ({what})",
                    retry_after_seconds=round(decision.retry_after_us / MICROS, 3),
                    reason="LLM_RATE_LIMITED",
                )
        charge = Charge(eff, estimate, tpm_bucket)
        await self._charge(tenant_id, charge, estimate, eff.prompt_price)
        if charge.over:
            await self._refund_all(tenant_id, charge)
            raise BudgetExceeded(self._over_message(eff), retry_after_seconds=None)
        return charge

    async def add_output(self, tenant_id: str, charge: Charge, tokens: int) -> bool:
        """Charge streamed completion tokens; True once the budget is crossed. Far from the
        budget, chunks are charged in batches (one shared-store round trip per chunk cost more
        than the rest of a stream); near it, chunk by chunk."""
        if tokens > 0:
            charge.pending += tokens
            if charge.pending >= charge.flush_at:
                pending, charge.pending = charge.pending, 0
                await self._charge(tenant_id, charge, pending, charge.limits.completion_price)
        return charge.over

    async def settle(self, tenant_id: str, charge: Charge, prompt: int, completion: int) -> None:
        """The call is over: charge exactly its usage (0, 0 when nothing was delivered)."""
        if charge.settled:
            return
        charge.settled = True
        eff = charge.limits
        tokens = prompt + completion
        nanos = to_nanos(prompt * eff.prompt_price + completion * eff.completion_price)
        delta_tokens, delta_nanos = tokens - charge.tokens, nanos - charge.nanos
        if delta_tokens or delta_nanos:
            await self._add(tenant_id, charge, delta_tokens, delta_nanos)
        if charge.tpm is not None and tokens != charge.estimate:
            # Taken by the tenant's next reservation (or the next flush), not a round trip now.
            self._owe(charge.tpm, float(tokens - charge.estimate))
            self._start_flusher()

    async def close(self) -> None:
        """On shutdown: whatever is still kept here goes to the shared store."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def flush(self) -> None:
        """Send every kept budget charge and tpm settlement to the shared store now."""
        for ledger in list(self._ledgers.values()):
            if ledger.pending:
                await self._flush(ledger)
        debts, self._tpm_debts = self._tpm_debts, {}
        for bucket, debt in debts.values():
            if debt:
                await self._counters.adjust(bucket, debt)

    # -- internals -------------------------------------------------------------------------

    async def _charge(self, tenant_id: str, charge: Charge, tokens: int, unit_price: Decimal) -> None:
        await self._add(tenant_id, charge, tokens, to_nanos(tokens * unit_price))

    async def _add(self, tenant_id: str, charge: Charge, tokens: int, nanos: int) -> None:
        eff = charge.limits
        budget_tokens = eff.limits.llm_monthly_tokens
        budget_nanos = (
            to_nanos(eff.limits.llm_monthly_spend) if eff.limits.llm_monthly_spend is not None else None
        )
        ledger = self._ledger(tenant_id, eff.month)
        ledger.limits = eff
        ledger.tokens += tokens
        ledger.nanos += nanos
        if ledger.must_flush():
            await self._flush(ledger)
        else:
            self._start_flusher()
        new_tokens, new_nanos = ledger.seen_tokens + ledger.tokens, ledger.seen_nanos + ledger.nanos
        ledger.max_tokens = self._room_share(budget_tokens, ledger.seen_tokens)
        ledger.max_nanos = self._room_share(budget_nanos, ledger.seen_nanos)
        charge.tokens += tokens
        charge.nanos += nanos
        charge.flush_at = self._flush_at(eff, budget_tokens, budget_nanos, new_tokens, new_nanos)
        if tokens > 0 or nanos > 0:
            if (budget_tokens is not None and new_tokens > budget_tokens) or (
                budget_nanos is not None and new_nanos > budget_nanos
            ):
                charge.over = True

    def _ledger(self, tenant_id: str, month: str) -> _Ledger:
        ledger = self._ledgers.get((tenant_id, month))
        if ledger is None:
            ledger = self._ledgers[(tenant_id, month)] = _Ledger(
                budget_keys(self._counters, tenant_id, month)
            )
        ledger.used_at = time.monotonic()
        return ledger

    async def _flush(self, ledger: _Ledger) -> None:
        async with ledger.lock:  # one round trip at a time, so the totals seen stay in order
            if not ledger.pending:
                return  # a flush that ran while this one waited took it
            tokens, nanos = ledger.tokens, ledger.nanos
            ledger.tokens = ledger.nanos = 0
            try:
                ledger.seen_tokens, ledger.seen_nanos = await self._counters.add(
                    ledger.keys, [tokens, nanos], MONTH_TTL_SECONDS
                )
            except BaseException:
                ledger.tokens += tokens  # never lost: counted again by the next flush
                ledger.nanos += nanos
                raise
            await self._alerts(ledger, tokens, nanos)

    async def _alerts(self, ledger: _Ledger, tokens: int, nanos: int) -> None:
        """Thresholds this round trip moved the shared totals across. The add is atomic, so of
        all replicas exactly one sees each crossing."""
        eff = ledger.limits
        if eff is None or (tokens <= 0 and nanos <= 0):
            return
        spend = eff.limits.llm_monthly_spend
        for kind, budget, added, after in (
            ("tokens", eff.limits.llm_monthly_tokens, tokens, ledger.seen_tokens),
            ("spend", to_nanos(spend) if spend is not None else None, nanos, ledger.seen_nanos),
        ):
            if budget is None:
                continue
            for threshold in ALERT_THRESHOLDS:
                mark = budget * threshold / 100
                if after - added < mark <= after:
                    await self._alert(eff.tenant_id, eff.month, kind, threshold)

    @staticmethod
    def _room_share(budget: int | None, seen: int) -> int:
        if budget is None:
            return sys.maxsize
        return max(0, (budget - seen) // LEDGER_SHARE)

    def _owe(self, bucket: Bucket | None, debt: float) -> None:
        if bucket is None or not debt:
            return
        _, owed = self._tpm_debts.get(bucket.key, (bucket, 0.0))
        self._tpm_debts[bucket.key] = (bucket, owed + debt)

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # the shared store's own fallback failed: try again next time
                log.exception("llm limits flush failed")
            idle = time.monotonic() - LEDGER_IDLE_SECONDS
            for key, ledger in list(self._ledgers.items()):
                if not ledger.pending and ledger.used_at < idle:
                    del self._ledgers[key]
            if not self._tpm_debts and not any(ledger.pending for ledger in self._ledgers.values()):
                return  # restarted by the next charge kept here

    @staticmethod
    def _flush_at(
        eff: EffectiveLimits, budget_tokens: int | None, budget_nanos: int | None, used: int, spent: int
    ) -> int:
        room: int | None = None
        if budget_tokens is not None:
            room = budget_tokens - used
        per_token = to_nanos(eff.completion_price)
        if budget_nanos is not None and per_token > 0:
            by_spend = (budget_nanos - spent) // per_token
            room = by_spend if room is None else min(room, by_spend)
        if room is None:
            return sys.maxsize  # no budget: the final settle charges the stream
        return max(1, room // 4)

    async def _refund_all(self, tenant_id: str, charge: Charge) -> None:
        await self._add(tenant_id, charge, -charge.tokens, -charge.nanos)
        charge.settled = True
        if charge.tpm is not None:
            await self._counters.adjust(charge.tpm, -float(charge.estimate))

    async def _raise_floors(self, eff: EffectiveLimits) -> None:
        if self._floored.get(eff.tenant_id) is eff:
            return
        self._floored[eff.tenant_id] = eff
        ledger = self._ledgers.get((eff.tenant_id, eff.month))
        if ledger is not None and ledger.pending:
            # First: raised to a durable total that already counts calls charged only here,
            # the shared counter would count them twice once they are sent.
            await self._flush(ledger)
        tokens_key, nanos_key = budget_keys(self._counters, eff.tenant_id, eff.month)
        tokens = await self._counters.raise_to(tokens_key, eff.llm_tokens_used, MONTH_TTL_SECONDS)
        nanos = await self._counters.raise_to(nanos_key, to_nanos(eff.llm_spend_used), MONTH_TTL_SECONDS)
        if ledger is not None:
            ledger.seen_tokens, ledger.seen_nanos = (
                max(ledger.seen_tokens, tokens),
                max(ledger.seen_nanos, nanos),
            )

    async def _alert(self, tenant_id: str, month: str, kind: str, threshold: int) -> None:
        log.warning(
            "llm budget threshold crossed", tenant_id=tenant_id, month=month, budget=kind, threshold=threshold
        )
        if self._recorder is None:
            return
        try:
            await self._recorder.record(
                meter=LLM_BUDGET_ALERTS,
                tenant_id=tenant_id,
                value=1,
                dimensions={"budget": kind, "threshold": str(threshold), "month": month},
                event_id=f"llm-budget-alert:{tenant_id}:{month}:{kind}:{threshold}",
            )
        except Exception:  # an alert never fails the call that crossed it
            log.exception("budget alert record failed", tenant_id=tenant_id)

    @staticmethod
    def _over_message(eff: EffectiveLimits) -> str:
        return f"the tenant's monthly LLM budget for {eff.month} is used up"

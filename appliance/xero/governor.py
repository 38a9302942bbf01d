"""Rate governor and retry policy: pure decisions about when a call to Xero may go.

This module owns Xero's documented limits as arithmetic (developer.xero.com/documentation/guides/oauth2/limits,
research notes §1.1): per tenant 5 calls in flight, 60 a minute and a day budget (1,000 on the Starter tier,
5,000 above it), and 10,000 a minute per app across all its tenants. It keeps its own counts, corrects them from
the `X-MinLimit-Remaining`, `X-DayLimit-Remaining` and `X-AppMinLimit-Remaining` headers Xero puts on every
response, and turns a 429 into a decision.

It must not do I/O, sleep, read a clock or raise for rate limits: every method takes `now` (seconds on any
monotonic scale the caller chooses) and returns a `Decision` the client acts on. A spent day budget is a
`CHECKPOINT` decision, never a long sleep: the backup stops the tenant and resumes after the reset.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from appliance.settings import RateLimits, XeroTier

MINUTE = 60.0
DAY = 86_400.0

# Xero: "1,000 calls per day for starter, 5,000 calls per day for higher tiers" (LIMITS, research §1.1).
DAY_BUDGET_BY_TIER: Mapping[str, int] = {
    "starter": 1_000,
    "core": 5_000,
    "plus": 5_000,
    "advanced": 5_000,
    "enterprise": 5_000,
}

# Xero does not promise Retry-After on concurrent or app-minute 429s (research §1.2), so these
# defaults stand in when it is missing.
DEFAULT_CONCURRENT_BACKOFF = 1.0
DEFAULT_MINUTE_BACKOFF = MINUTE
REGROW_AFTER = 10
"""Answers without a concurrency 429 before one more call may be in flight again."""


class Verdict(enum.Enum):
    GO = "go"
    """The call may start now; the governor has counted it (call `release` when it ends)."""
    WAIT = "wait"
    """Wait `delay` seconds (or, for `Limit.CONCURRENT` with no delay, until a call of this tenant ends)."""
    CHECKPOINT = "checkpoint"
    """The tenant's day budget is spent: stop, record progress, resume at `resume_at`."""


class Limit(enum.Enum):
    NONE = "none"
    CONCURRENT = "concurrent"
    MINUTE = "minute"
    DAY = "day"
    APP_MINUTE = "app_minute"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    limit: Limit = Limit.NONE
    delay: float = 0.0
    """Seconds to wait (WAIT) or until the day window resets (CHECKPOINT)."""
    resume_at: float | None = None
    """On the caller's clock: when the tenant may be called again (CHECKPOINT)."""

    @property
    def go(self) -> bool:
        return self.verdict is Verdict.GO


GO = Decision(Verdict.GO)


def day_budget(limits: RateLimits, tier: XeroTier) -> int:
    """The per-tenant day budget: the explicit setting, else the tier's documented limit."""
    if limits.tenant_per_day is not None:
        return limits.tenant_per_day
    return DAY_BUDGET_BY_TIER.get(tier, 5_000)


def classify_problem(problem: str | None) -> Limit:
    """Which limit a 429's `X-Rate-Limit-Problem` names.

    Xero does not enumerate the values: real responses show `minute` and `day`, older docs "Daily or Minute",
    third-party code "DayLimit" or "Minute limit" (research §1.2). Match substrings, app first because
    "AppMinLimit" also contains "min".
    """
    text = (problem or "").lower()
    if "app" in text:
        return Limit.APP_MINUTE
    if "day" in text or "daily" in text:
        return Limit.DAY
    if "concurren" in text:
        return Limit.CONCURRENT
    return Limit.MINUTE


class _Window:
    """Calls counted over a sliding minute: (time, count) pairs, so header corrections stay cheap.

    A sliding window is stricter than Xero's fixed windows ("reset at different times for each tenant",
    LIMITS): never more than `limit` calls in any 60 s means never more than `limit` in any fixed minute.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - MINUTE:
            self.total -= self.entries.popleft()[1]

    def remaining(self, now: float) -> int:
        self._expire(now)
        return self.limit - self.total

    def wait(self, now: float) -> float:
        """Seconds until one more call fits (0 if it fits now)."""
        self._expire(now)
        if self.total < self.limit:
            return 0.0
        # Drop the oldest entries until one slot is free; the last dropped one's expiry is the wait.
        excess = self.total - self.limit + 1
        for at, count in self.entries:
            excess -= count
            if excess <= 0:
                return max(0.0, at + MINUTE - now)
        return MINUTE  # pragma: no cover - unreachable while total counts the entries

    def add(self, now: float, count: int = 1) -> None:
        if count <= 0:
            return
        self.entries.append((now, count))
        self.total += count

    def spent_until(self, now: float, reset_at: float) -> None:
        """Xero says the minute is spent until `reset_at` (a minute 429's Retry-After): count the calls we did not
        see so that they age out exactly then. Xero's windows are fixed (LIMITS: "Requests are counted against a
        fixed window"), so the whole allowance is back at the reset; our own calls keep counting for their 60 s."""
        missing = self.remaining(now)
        if missing <= 0:
            return
        at = min(now, reset_at - MINUTE)
        self.entries = deque(sorted([*self.entries, (at, missing)], key=lambda entry: entry[0]))
        self.total += missing

    def sync(self, now: float, server_remaining: int) -> None:
        """Xero says `server_remaining` calls are left: if that is fewer than we think, count the difference."""
        ours = self.remaining(now)
        if server_remaining < ours:
            self.add(now, ours - server_remaining)


@dataclass
class _TenantState:
    minute: _Window
    day_budget: int
    in_flight: int = 0
    day_used: int = 0
    day_window_start: float | None = None
    day_remaining_hint: int | None = None
    """The last `X-DayLimit-Remaining`, adjusted for calls made since."""
    day_reset_at: float | None = None
    """Set by a day-limit 429: the tenant is spent until then."""
    blocked_until: float = 0.0
    """Set by a minute or concurrent 429's Retry-After."""
    calls: int = 0
    rate_limited: int = 0
    concurrent_cap: int = 5
    """Calls allowed in flight now: cut after a concurrency 429 (someone else shares the tenant), regrown
    one at a time (additive increase, multiplicative-ish decrease) so a storm settles instead of repeating."""
    answers_since_cut: int = 0


@dataclass
class RateGovernor:
    """Per-tenant and per-app call admission for one Xero app (one tier).

    Use: `decision = acquire(tenant, now)`; on GO make the call, then `on_response(tenant, headers, now)`
    (or `on_429`) and always `release(tenant)`.
    """

    limits: RateLimits = field(default_factory=RateLimits)
    tier: XeroTier = "starter"

    def __post_init__(self) -> None:
        self._tenants: dict[str, _TenantState] = {}
        self._app = _Window(self.limits.app_per_minute)
        self._app_blocked_until = 0.0

    # -- state ----------------------------------------------------------------------------
    def _tenant(self, tenant_id: str) -> _TenantState:
        state = self._tenants.get(tenant_id)
        if state is None:
            state = _TenantState(
                minute=_Window(self.limits.tenant_per_minute),
                day_budget=day_budget(self.limits, self.tier),
                concurrent_cap=self.limits.tenant_concurrent,
            )
            self._tenants[tenant_id] = state
        return state

    def _roll_day(self, state: _TenantState, now: float) -> None:
        """Start a fresh day window once ours has passed or Xero's reset time has come."""
        if state.day_reset_at is not None and now >= state.day_reset_at:
            state.day_reset_at = None
            state.day_used = 0
            state.day_remaining_hint = None
            state.day_window_start = now
        elif state.day_window_start is not None and now - state.day_window_start >= DAY:
            state.day_used = 0
            state.day_remaining_hint = None
            state.day_window_start = now

    def day_remaining(self, tenant_id: str, now: float) -> int:
        """Calls left today for the tenant, as best we know (Xero's header wins over our count)."""
        state = self._tenant(tenant_id)
        self._roll_day(state, now)
        if state.day_reset_at is not None:
            return 0
        ours = state.day_budget - state.day_used
        if state.day_remaining_hint is not None:
            ours = min(ours, state.day_remaining_hint)
        return max(0, ours)

    def in_flight(self, tenant_id: str) -> int:
        return self._tenant(tenant_id).in_flight

    # -- decisions ------------------------------------------------------------------------
    def decide(self, tenant_id: str, now: float) -> Decision:
        """What should happen to a call for `tenant_id` at `now`; counts nothing."""
        state = self._tenant(tenant_id)
        if self.day_remaining(tenant_id, now) <= 0:
            resume_at = state.day_reset_at
            if resume_at is None:
                start = state.day_window_start if state.day_window_start is not None else now
                resume_at = start + DAY
            return Decision(Verdict.CHECKPOINT, Limit.DAY, delay=max(0.0, resume_at - now), resume_at=resume_at)
        if state.blocked_until > now:
            return Decision(Verdict.WAIT, Limit.MINUTE, delay=state.blocked_until - now)
        if self._app_blocked_until > now:
            return Decision(Verdict.WAIT, Limit.APP_MINUTE, delay=self._app_blocked_until - now)
        if state.in_flight >= state.concurrent_cap:
            return Decision(Verdict.WAIT, Limit.CONCURRENT)
        wait = state.minute.wait(now)
        if wait > 0:
            return Decision(Verdict.WAIT, Limit.MINUTE, delay=wait)
        wait = self._app.wait(now)
        if wait > 0:
            return Decision(Verdict.WAIT, Limit.APP_MINUTE, delay=wait)
        return GO

    def delay_before_call(self, tenant_id: str, now: float) -> float:
        """Seconds before a call could start (0 now; inf while the day budget is spent or all slots are busy)."""
        decision = self.decide(tenant_id, now)
        if decision.go:
            return 0.0
        if decision.verdict is Verdict.CHECKPOINT or (decision.limit is Limit.CONCURRENT and not decision.delay):
            return math.inf
        return decision.delay

    def acquire(self, tenant_id: str, now: float) -> Decision:
        """Like `decide`, and on GO count the call against every window."""
        decision = self.decide(tenant_id, now)
        if decision.go:
            state = self._tenant(tenant_id)
            state.in_flight += 1
            state.calls += 1
            state.minute.add(now)
            self._app.add(now)
            if state.day_window_start is None:
                state.day_window_start = now
            state.day_used += 1
            if state.day_remaining_hint is not None:
                state.day_remaining_hint -= 1
        return decision

    def release(self, tenant_id: str) -> None:
        """A call admitted by `acquire` has ended (any outcome)."""
        state = self._tenant(tenant_id)
        state.in_flight = max(0, state.in_flight - 1)

    # -- feedback from Xero ---------------------------------------------------------------
    def on_response(self, tenant_id: str, headers: Mapping[str, str], now: float) -> None:
        """Correct our counts from the `X-*-Remaining` headers of any response (before `release`)."""
        state = self._tenant(tenant_id)
        state.answers_since_cut += 1
        if state.concurrent_cap < self.limits.tenant_concurrent and state.answers_since_cut >= REGROW_AFTER:
            state.concurrent_cap += 1
            state.answers_since_cut = 0
        lowered = {key.lower(): value for key, value in headers.items()}
        # The headers count this call; calls admitted after it are still in flight and not yet counted by Xero.
        others_in_flight = max(0, state.in_flight - 1)
        minute = _int_header(lowered, "x-minlimit-remaining")
        if minute is not None:
            state.minute.sync(now, minute - others_in_flight)
        app = _int_header(lowered, "x-appminlimit-remaining")
        if app is not None:
            self._app.sync(now, app - others_in_flight)
        day = _int_header(lowered, "x-daylimit-remaining")
        if day is not None:
            self._roll_day(state, now)
            # Xero's fixed day window resets at a time we cannot see; its count is the truth, up or down.
            state.day_remaining_hint = max(0, day - others_in_flight)
            state.day_used = max(0, state.day_budget - state.day_remaining_hint)
            if day > 0:
                state.day_reset_at = None

    def on_429(self, tenant_id: str, problem: str | None, retry_after: float | None, now: float) -> Decision:
        """Xero answered 429: block the limit it named and return what to do next."""
        state = self._tenant(tenant_id)
        state.rate_limited += 1
        limit = classify_problem(problem)
        if limit is Limit.DAY:
            # A day-limit Retry-After can be ~18 h (Codat's log, research §1.2): never retry it in a loop.
            if retry_after is None:
                start = state.day_window_start if state.day_window_start is not None else now
                retry_after = max(MINUTE, start + DAY - now)
            state.day_reset_at = now + retry_after
            state.day_remaining_hint = 0
            return Decision(Verdict.CHECKPOINT, Limit.DAY, delay=retry_after, resume_at=state.day_reset_at)
        if limit is Limit.APP_MINUTE:
            delay = DEFAULT_MINUTE_BACKOFF if retry_after is None else retry_after
            self._app_blocked_until = max(self._app_blocked_until, now + delay)
            return Decision(Verdict.WAIT, Limit.APP_MINUTE, delay=delay)
        if limit is Limit.CONCURRENT:
            delay = DEFAULT_CONCURRENT_BACKOFF if retry_after is None else retry_after
            # Another client is using this tenant's slots: admit fewer than were in flight when Xero refused.
            state.concurrent_cap = max(1, min(state.concurrent_cap, state.in_flight) - 1)
            state.answers_since_cut = 0
        else:
            delay = DEFAULT_MINUTE_BACKOFF if retry_after is None else retry_after
            # Our minute count was wrong (another process shares the tenant): the minute is spent until Xero's
            # fixed window resets, which is what Retry-After says.
            state.minute.spent_until(now, now + delay)
        state.blocked_until = max(state.blocked_until, now + delay)
        return Decision(Verdict.WAIT, limit, delay=delay)

    def usage(self, tenant_id: str) -> tuple[int, int]:
        """(calls admitted, 429s seen) for the tenant since this governor was made."""
        state = self._tenant(tenant_id)
        return state.calls, state.rate_limited


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


# --- retries -------------------------------------------------------------------------------


class RandomSource(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (the AWS Architecture Blog's "Exponential Backoff And Jitter"),
    bounded in attempts and in delay. For 5xx, timeouts, dropped connections and truncated bodies, which
    Xero produces under load (Xero-Java#156, research §8.15)."""

    max_retries: int = 6
    base: float = 0.5
    cap: float = 30.0

    def next_delay(self, attempt: int, rng: RandomSource) -> float | None:
        """Seconds to wait before retry number `attempt` (1-based), or None when retries are used up."""
        if attempt < 1 or attempt > self.max_retries:
            return None
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        return ceiling * rng.random()

"""Rate-governor and retry-policy decisions with an injected clock (no I/O, no sleeping)."""

from __future__ import annotations

import math
import random

import pytest

from appliance.settings import RateLimits
from appliance.xero.governor import (
    DAY,
    Limit,
    RateGovernor,
    RetryPolicy,
    Verdict,
    classify_problem,
    day_budget,
)

T = "tenant-a"


def admit(governor: RateGovernor, tenant: str, now: float, count: int) -> None:
    for _ in range(count):
        decision = governor.acquire(tenant, now)
        assert decision.go, decision
        governor.release(tenant)


def test_day_budget_follows_the_tier_unless_set() -> None:
    assert day_budget(RateLimits(), "starter") == 1_000
    assert day_budget(RateLimits(), "core") == 5_000
    assert day_budget(RateLimits(), "advanced") == 5_000
    assert day_budget(RateLimits(tenant_per_day=42), "starter") == 42


def test_five_calls_in_flight_then_wait_for_a_slot() -> None:
    governor = RateGovernor(RateLimits(), "core")
    for _ in range(5):
        assert governor.acquire(T, 0.0).go
    decision = governor.acquire(T, 0.0)
    assert decision.verdict is Verdict.WAIT
    assert decision.limit is Limit.CONCURRENT
    assert governor.delay_before_call(T, 0.0) == math.inf
    # Another tenant is not affected.
    assert governor.acquire("tenant-b", 0.0).go
    governor.release(T)
    assert governor.acquire(T, 0.0).go
    assert governor.in_flight(T) == 5


def test_sixty_a_minute_then_wait_until_the_oldest_call_leaves_the_window() -> None:
    governor = RateGovernor(RateLimits(), "core")
    admit(governor, T, 0.0, 30)
    admit(governor, T, 10.0, 30)
    decision = governor.decide(T, 20.0)
    assert decision.verdict is Verdict.WAIT
    assert decision.limit is Limit.MINUTE
    assert decision.delay == pytest.approx(40.0)
    assert governor.delay_before_call(T, 20.0) == pytest.approx(40.0)
    # At 60 s the first 30 expire, so the call goes.
    assert governor.acquire(T, 60.0).go


def test_app_minute_limit_spans_tenants() -> None:
    governor = RateGovernor(RateLimits(app_per_minute=10), "core")
    for index in range(10):
        admit(governor, f"t{index}", 5.0, 1)
    decision = governor.decide("t-new", 6.0)
    assert decision.limit is Limit.APP_MINUTE
    assert decision.delay == pytest.approx(59.0)


def test_day_budget_exhaustion_is_a_checkpoint_not_a_wait() -> None:
    governor = RateGovernor(RateLimits(tenant_per_minute=10_000), "starter")
    for second in range(1_000):
        admit(governor, T, float(second) * 0.01, 1)
    decision = governor.acquire(T, 100.0)
    assert decision.verdict is Verdict.CHECKPOINT
    assert decision.limit is Limit.DAY
    # Our own day window started at the first call: resume a day after it.
    assert decision.resume_at == pytest.approx(DAY)
    assert decision.delay == pytest.approx(DAY - 100.0)
    assert governor.delay_before_call(T, 100.0) == math.inf
    # After the window, calls go again.
    assert governor.acquire(T, DAY + 1.0).go


def test_headers_correct_the_minute_count_downwards() -> None:
    governor = RateGovernor(RateLimits(), "core")
    assert governor.acquire(T, 0.0).go
    # Another process shares the tenant: Xero says only 2 calls remain this minute.
    governor.on_response(T, {"X-MinLimit-Remaining": "2", "X-DayLimit-Remaining": "4000"}, 1.0)
    governor.release(T)
    admit(governor, T, 1.0, 2)
    decision = governor.decide(T, 1.0)
    assert decision.limit is Limit.MINUTE
    assert decision.delay > 0


def test_day_header_is_authoritative_both_ways() -> None:
    governor = RateGovernor(RateLimits(), "core")
    assert governor.acquire(T, 0.0).go
    governor.on_response(T, {"x-daylimit-remaining": "3"}, 0.0)
    governor.release(T)
    assert governor.day_remaining(T, 0.0) == 3
    admit(governor, T, 61.0, 3)
    assert governor.decide(T, 62.0).verdict is Verdict.CHECKPOINT
    # Xero's fixed window reset (we cannot see when): its header raises the count again.
    governor.on_response(T, {"X-DayLimit-Remaining": "4999"}, 63.0)
    assert governor.day_remaining(T, 63.0) == 4999
    assert governor.decide(T, 63.0).go


def test_in_flight_calls_are_subtracted_from_header_counts() -> None:
    governor = RateGovernor(RateLimits(), "core")
    for _ in range(3):
        assert governor.acquire(T, 0.0).go
    # The first response says 10 left today, but two other calls are already on their way.
    governor.on_response(T, {"X-DayLimit-Remaining": "10"}, 0.0)
    assert governor.day_remaining(T, 0.0) == 8


def test_app_header_syncs_the_app_window() -> None:
    governor = RateGovernor(RateLimits(app_per_minute=100), "core")
    assert governor.acquire(T, 0.0).go
    governor.on_response(T, {"X-AppMinLimit-Remaining": "0"}, 0.0)
    governor.release(T)
    decision = governor.decide("other-tenant", 1.0)
    assert decision.limit is Limit.APP_MINUTE


@pytest.mark.parametrize(
    ("problem", "limit"),
    [
        ("minute", Limit.MINUTE),
        ("Minute limit", Limit.MINUTE),
        ("day", Limit.DAY),
        ("DayLimit", Limit.DAY),
        ("Daily", Limit.DAY),
        ("concurrent", Limit.CONCURRENT),
        ("AppMinLimit", Limit.APP_MINUTE),
        ("appminute", Limit.APP_MINUTE),
        (None, Limit.MINUTE),
    ],
)
def test_rate_limit_problem_values(problem: str | None, limit: Limit) -> None:
    assert classify_problem(problem) is limit


def test_minute_429_blocks_the_tenant_for_retry_after() -> None:
    governor = RateGovernor(RateLimits(), "core")
    decision = governor.on_429(T, "minute", 7.0, 100.0)
    assert decision.verdict is Verdict.WAIT
    assert decision.delay == 7.0
    blocked = governor.decide(T, 103.0)
    assert blocked.verdict is Verdict.WAIT
    assert blocked.delay == pytest.approx(4.0)
    assert governor.decide("tenant-b", 103.0).go
    # Xero's window is fixed: once Retry-After has passed, the allowance is back (the unseen calls age out then).
    assert governor.decide(T, 106.9).verdict is Verdict.WAIT
    assert governor.decide(T, 107.0).go
    assert governor.acquire(T, 107.0).go
    assert governor.usage(T) == (1, 1)


def test_minute_429_keeps_our_own_recent_calls_counted() -> None:
    governor = RateGovernor(RateLimits(tenant_per_minute=10), "core")
    for second in range(4):
        assert governor.acquire(T, 100.0 + second).go
        governor.release(T)
    governor.on_429(T, "minute", 5.0, 104.0)
    # At the reset only the calls Xero counted for someone else age out: our 4 still fill their own minute.
    for _ in range(6):
        assert governor.acquire(T, 109.0).go
        governor.release(T)
    assert governor.decide(T, 109.0).verdict is Verdict.WAIT
    assert governor.decide(T, 160.0).go


def test_day_429_checkpoints_with_xero_retry_after() -> None:
    governor = RateGovernor(RateLimits(), "core")
    decision = governor.on_429(T, "day", 66_975.0, 10.0)
    assert decision.verdict is Verdict.CHECKPOINT
    assert decision.resume_at == pytest.approx(66_985.0)
    again = governor.acquire(T, 20.0)
    assert again.verdict is Verdict.CHECKPOINT
    assert again.delay == pytest.approx(66_965.0)
    assert governor.acquire(T, 66_985.0).go


def test_concurrent_429_without_retry_after_backs_off_briefly() -> None:
    governor = RateGovernor(RateLimits(), "core")
    decision = governor.on_429(T, "concurrent", None, 0.0)
    assert decision.limit is Limit.CONCURRENT
    assert 0 < decision.delay <= 5


def test_app_429_blocks_every_tenant() -> None:
    governor = RateGovernor(RateLimits(), "core")
    governor.on_429(T, "appminute", 30.0, 0.0)
    assert governor.decide("tenant-b", 10.0).limit is Limit.APP_MINUTE
    assert governor.decide("tenant-b", 31.0).go


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_retry_policy_is_bounded_exponential_full_jitter() -> None:
    policy = RetryPolicy(max_retries=5, base=0.5, cap=4.0)
    top = FixedRandom(0.999999)
    ceilings = [policy.next_delay(attempt, top) for attempt in range(1, 6)]
    assert ceilings == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0], rel=1e-5)
    assert policy.next_delay(6, top) is None
    assert policy.next_delay(0, top) is None
    assert policy.next_delay(3, FixedRandom(0.0)) == 0.0
    rng = random.Random(7)
    delays = [policy.next_delay(4, rng) for _ in range(200)]
    assert all(d is not None and 0.0 <= d <= 4.0 for d in delays)
    assert len({round(d or 0, 6) for d in delays}) > 100  # jittered, not constant


def test_concurrency_429_shrinks_the_cap_and_it_regrows() -> None:
    governor = RateGovernor(RateLimits(), "core")
    for _ in range(5):
        assert governor.acquire(T, 0.0).go
    # Another process holds slots: Xero refuses the fifth.
    governor.on_response(T, {}, 0.0)
    governor.on_429(T, "concurrent", 0.0, 0.0)
    for _ in range(5):
        governor.release(T)
    for _ in range(4):
        assert governor.acquire(T, 1.0).go
    assert governor.decide(T, 1.0).limit is Limit.CONCURRENT
    for _ in range(4):
        governor.on_response(T, {}, 1.0)
        governor.release(T)
    # Ten answers without a concurrency 429 give one slot back, up to the documented five.
    for _ in range(30):
        admit(governor, T, 2.0, 1)
        governor.on_response(T, {}, 2.0)
    for _ in range(5):
        assert governor.acquire(T, 3.0).go
    assert governor.decide(T, 3.0).limit is Limit.CONCURRENT

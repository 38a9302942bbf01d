"""The fleet scheduler with a fake clock: due times, fairness, backoff, and Xero's app limit over 5,000 orgs."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from appliance.daemon.scheduler import (
    DAY,
    Budget,
    OrgSchedule,
    OrgState,
    RecentJob,
    Retry,
    Window,
    choose,
    due_at,
    progress,
)

NIGHT = Window.parse("01:00", "06:00")
DAILY = OrgSchedule(window=NIGHT)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_window_contains_and_crosses_midnight() -> None:
    late = Window.parse("22:00", "04:00")
    assert late.contains(datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    assert late.contains(datetime(2026, 3, 1, 3, 59, tzinfo=UTC))
    assert not late.contains(datetime(2026, 3, 1, 4, 0, tzinfo=UTC))
    assert late.length_seconds == 6 * 3600
    assert Window.parse("00:00", "00:00").all_day
    assert NIGHT.next_open(at("2026-03-01T12:00:00"), UTC) == at("2026-03-02T01:00:00")
    assert NIGHT.next_open(at("2026-03-02T00:30:00"), UTC) == at("2026-03-02T01:00:00")
    assert NIGHT.next_open(at("2026-03-02T02:00:00"), UTC) == at("2026-03-02T02:00:00")


def test_window_in_a_time_zone() -> None:
    auckland = ZoneInfo("Pacific/Auckland")
    # 01:00 in Auckland on 2 March 2026 (NZDT, UTC+13) is 12:00 UTC on 1 March.
    assert NIGHT.next_open(at("2026-03-01T06:00:00"), auckland) == at("2026-03-01T12:00:00")


def test_daily_org_runs_once_per_night_wherever_it_ran_last_night() -> None:
    retry = Retry()
    for last in ("2026-03-01T01:00:00", "2026-03-01T05:59:00", "2026-03-01T00:59:00"):
        org = OrgState("a", last_good_at=at(last), schedule=DAILY)
        assert due_at(org, now=at("2026-03-01T15:00:00"), tz=UTC, retry=retry) == at("2026-03-02T01:00:00"), last
    # Backed up by hand in the afternoon: tonight still runs, half a day after it.
    afternoon = OrgState("a", last_good_at=at("2026-03-01T14:00:00"), schedule=DAILY)
    assert due_at(afternoon, now=at("2026-03-01T15:00:00"), tz=UTC, retry=retry) == at("2026-03-02T02:00:00")
    # Backed up inside tonight's window: not again tonight.
    org = OrgState("a", last_good_at=at("2026-03-02T01:10:00"), schedule=DAILY)
    assert due_at(org, now=at("2026-03-02T03:00:00"), tz=UTC, retry=retry) == at("2026-03-03T01:00:00")
    # Never backed up: due at once inside the window, at the opening outside it.
    never = OrgState("b", last_good_at=None, schedule=DAILY)
    assert due_at(never, now=at("2026-03-02T03:00:00"), tz=UTC, retry=retry) == at("2026-03-02T03:00:00")
    assert due_at(never, now=at("2026-03-02T09:00:00"), tz=UTC, retry=retry) == at("2026-03-03T01:00:00")


def test_override_more_often_than_daily_runs_all_day() -> None:
    often = OrgState("a", last_good_at=at("2026-03-02T09:00:00"), schedule=OrgSchedule(interval_seconds=4 * 3600))
    assert due_at(often, now=at("2026-03-02T10:00:00"), tz=UTC, retry=Retry()) == at("2026-03-02T13:00:00")


def test_failures_back_off_exponentially_and_day_budget_pauses_wait() -> None:
    retry = Retry(base_seconds=600, max_seconds=3600)
    now = at("2026-03-02T02:00:00")
    delays = []
    for failures in range(1, 6):
        org = OrgState("a", None, schedule=DAILY, failures=failures, last_attempt_at=now)
        when = due_at(org, now=now, tz=UTC, retry=retry)
        assert when is not None
        delays.append(when - now)
    assert delays == [600, 1200, 2400, 3600, 3600]
    paused = OrgState("a", None, schedule=DAILY, paused_until=now + 1800)
    assert due_at(paused, now=now, tz=UTC, retry=retry) == now + 1800


def test_inactive_and_paused_orgs_are_never_scheduled_but_requests_are() -> None:
    now = at("2026-03-02T02:00:00")
    assert due_at(OrgState("a", None, schedule=DAILY, active=False), now=now, tz=UTC, retry=Retry()) is None
    paused = OrgState("a", None, schedule=OrgSchedule(window=NIGHT, paused=True))
    assert due_at(paused, now=now, tz=UTC, retry=Retry()) is None
    asked = replace(paused, requested=True, failures=3, last_attempt_at=now)
    assert due_at(asked, now=now, tz=UTC, retry=Retry()) == now


def test_oldest_point_first_requests_first_running_never_twice() -> None:
    now = at("2026-03-02T02:00:00")
    orgs = [
        OrgState("recent", at("2026-02-28T02:00:00"), schedule=DAILY),
        OrgState("old", at("2026-02-01T02:00:00"), schedule=DAILY),
        OrgState("never", None, schedule=DAILY),
        OrgState("busy", None, schedule=DAILY, running=True),
        OrgState("asked", at("2026-03-02T01:30:00"), schedule=DAILY, requested=True),
    ]
    decision = choose(orgs, now=now, tz=UTC, budget=Budget(max_concurrent=10))
    assert decision.start == ["asked", "never", "old", "recent"]
    limited = choose(orgs, now=now, tz=UTC, budget=Budget(max_concurrent=3))
    assert limited.start == ["asked", "never"]  # "busy" holds the third slot
    assert limited.held_by_budget == 2


def test_app_call_budget_holds_the_line_instead_of_letting_small_jobs_overtake() -> None:
    now = at("2026-03-02T02:00:00")
    budget = Budget(max_concurrent=100, app_calls_per_minute=200, tenant_calls_per_minute=60, headroom=1.0)
    orgs = [
        OrgState("big", None, schedule=DAILY, calls_estimate=5000),  # reserves 60 (the tenant's minute cap)
        OrgState("small-1", at("2026-03-01T02:00:00"), schedule=DAILY, calls_estimate=10),
        OrgState("small-2", at("2026-03-01T02:01:00"), schedule=DAILY, calls_estimate=10),
    ]
    running = [OrgState(f"r{i}", None, schedule=DAILY, running=True, calls_estimate=60) for i in range(2)]
    recent = [RecentJob(calls=30, finished_at=now - 10), RecentJob(calls=1000, finished_at=now - 61)]
    decision = choose([*orgs, *running], now=now, tz=UTC, budget=budget, recent=recent)
    # 120 running + 30 recent = 150 reserved; "big" (60) does not fit 200, so nothing behind it starts.
    assert decision.start == []
    assert decision.load == 150
    later = choose([*orgs, *running], now=now + 30, tz=UTC, budget=budget, recent=recent)
    assert later.start == []  # the 30 recent calls still count in this window
    freed = choose([*orgs, running[0]], now=now + 61, tz=UTC, budget=budget, recent=recent)
    assert freed.start == ["big", "small-1", "small-2"]


def test_progress_line() -> None:
    now = at("2026-03-02T03:00:00")
    orgs = [
        OrgState("a", at("2026-03-02T01:30:00")),
        OrgState("b", at("2026-03-01T01:30:00"), failures=2),
        OrgState("c", None, running=True),
        OrgState("d", None, active=False),
    ]
    line = progress(orgs, now=now, tz=UTC, window=NIGHT).status_line()
    assert line == "1/3 backed up today, 1 running, 1 failing, 1 need consent"


def _simulate(
    count: int, *, budget: Budget, tick: float, seed: int, failing: frozenset[str] = frozenset()
) -> dict[str, object]:
    """Run a night for `count` orgs with jobs that spend their calls at the tenant's minute rate.

    Returns starts per org, app calls per fixed minute window, and overlap violations."""
    rng = random.Random(seed)
    start_of_night = at("2026-03-02T01:00:00")
    calls = {f"org-{i:05d}": rng.choice((20, 40, 60, 90, 150, 240)) for i in range(count)}
    state = {
        org_id: OrgState(org_id, at("2026-03-01T02:00:00") - rng.randrange(0, 86400), schedule=DAILY)
        for org_id in calls
    }
    initial = {org_id: org.last_good_at for org_id, org in state.items()}
    starts: dict[str, list[float]] = defaultdict(list)
    finishing: list[tuple[float, str, float]] = []  # (finish, org, started)
    recent: list[RecentJob] = []
    per_window: dict[int, float] = defaultdict(float)
    overlaps = 0
    now = start_of_night
    rate = budget.tenant_calls_per_minute / 60.0  # calls per second per job
    while now < start_of_night + 5 * 3600:
        for finish, org_id, started in [f for f in finishing if f[0] <= now]:
            finishing.remove((finish, org_id, started))
            spent = calls[org_id]
            recent.append(RecentJob(calls=spent, finished_at=finish))
            org = state[org_id]
            if org_id in failing:
                state[org_id] = replace(
                    org, running=False, failures=org.failures + 1, last_attempt_at=finish, calls_estimate=spent
                )
            else:
                state[org_id] = replace(
                    org, running=False, failures=0, last_good_at=finish, last_attempt_at=finish, calls_estimate=spent
                )
        recent = [job for job in recent if now - job.finished_at < 60]
        decision = choose(state.values(), now=now, tz=UTC, budget=budget, recent=recent)
        for org_id in decision.start:
            if state[org_id].running:
                overlaps += 1
            state[org_id] = replace(state[org_id], running=True)
            starts[org_id].append(now)
            duration = calls[org_id] / rate
            finishing.append((now + duration, org_id, now))
            # Spread the job's calls over the fixed minute windows it overlaps, at the tenant's rate.
            t = now
            while t < now + duration:
                window = math.floor(t / 60)
                end = min((window + 1) * 60, now + duration)
                per_window[window] += (end - t) * rate
                t = end
        now += tick
        if (
            not finishing
            and all(starts[org_id] for org_id in state)
            and all(len(starts[org_id]) >= 3 for org_id in failing)
        ):
            break
    return {"starts": starts, "per_window": per_window, "overlaps": overlaps, "state": state, "initial": initial}


def test_five_thousand_orgs_one_night_within_the_app_limit_and_nobody_starved() -> None:
    budget = Budget(max_concurrent=400, app_calls_per_minute=10_000, tenant_calls_per_minute=60, headroom=0.8)
    failing = frozenset({"org-00007", "org-04242"})
    result = _simulate(5000, budget=budget, tick=60.0, seed=3, failing=failing)
    starts: dict[str, list[float]] = result["starts"]  # type: ignore[assignment]
    per_window: dict[int, float] = result["per_window"]  # type: ignore[assignment]
    assert result["overlaps"] == 0
    healthy = [org_id for org_id in result["state"] if org_id not in failing]  # type: ignore[attr-defined]
    assert all(len(starts[org_id]) == 1 for org_id in healthy), "every healthy org backed up exactly once"
    assert max(per_window.values()) <= 10_000
    # Failing orgs were retried, with growing gaps.
    for org_id in failing:
        gaps = [b - a for a, b in zip(starts[org_id], starts[org_id][1:], strict=False)]
        assert len(starts[org_id]) >= 3
        assert gaps == sorted(gaps)
    # Fairness: first starts happened in the order of the orgs' points before the night (oldest first).
    initial: dict[str, float] = result["initial"]  # type: ignore[assignment]
    order = sorted(initial, key=lambda org_id: (starts[org_id][0], initial[org_id]))
    points_in_start_order = [initial[org_id] for org_id in order]
    assert points_in_start_order == sorted(points_in_start_order)


def test_start_order_follows_the_oldest_point() -> None:
    budget = Budget(max_concurrent=20, app_calls_per_minute=10_000)
    now = at("2026-03-02T01:00:00")
    rng = random.Random(5)
    orgs = [
        OrgState(f"o{i}", at("2026-03-01T00:00:00") - rng.randrange(0, 10 * 86400), schedule=DAILY) for i in range(500)
    ]
    decision = choose(orgs, now=now, tz=UTC, budget=budget)
    chosen = {org.org_id: org.last_good_at for org in orgs if org.org_id in decision.start}
    waiting = [org.last_good_at for org in orgs if org.org_id not in decision.start]
    assert len(chosen) == 20
    assert max(v for v in chosen.values() if v is not None) <= min(v for v in waiting if v is not None)


def test_daily_round_repeats_next_night() -> None:
    org = OrgState("a", last_good_at=at("2026-03-02T01:00:05"), schedule=DAILY)
    next_night = due_at(org, now=at("2026-03-02T06:00:00"), tz=UTC, retry=Retry())
    assert next_night == at("2026-03-03T01:00:00")
    assert next_night - at("2026-03-02T01:00:05") < DAY

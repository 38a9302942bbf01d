"""The fleet scheduler: which organisations' backups to start now. Pure: no I/O, no clock of its own.

Given what is known about every organisation (newest good point, failures, a day-budget pause, whether a job
runs, whether a person asked for a backup) and the schedule, `choose` returns the organisations to start at
`now`. The daemon supplies the facts and the time; tests drive it with a fake clock.

The rules, and why:
- **Due**: by default once a day inside a night window (in the firm's time zone); per-organisation overrides
  may shorten the interval (e.g. every 4 hours, then all day unless the override names a window) or pause it.
  A daily organisation is due at the first window opening after its last point (and at least half an
  interval after it), so it runs once per night whatever time it ran last, and never twice in one night.
- **Fair**: due organisations start oldest newest-point first (never backed up counts as oldest); a person's
  request goes before the schedule. When the head of the line does not fit the call budget nothing behind it
  starts either, so a big organisation is never overtaken forever by a stream of small ones (no starvation).
- **Failures** retry with exponential backoff (`base * 2^(failures-1)`, capped); a run paused on the tenant's
  day budget waits for the reset time its run recorded.
- **Never two jobs on one organisation**: running organisations are never candidates.
- **Xero's limits**: per tenant, the client's rate governor enforces 5 in flight / 60 a minute / the day
  budget. The per-APP limit (10,000 calls a minute across all tenants, developer.xero.com/documentation/
  guides/oauth2/limits) is this module's job, with a global concurrency cap. Xero counts fixed windows; in any
  window, a job spends at most min(its calls, the tenant's per-minute limit) because the governor holds each
  tenant to its minute limit. So the calls in the current window are bounded by that reservation summed over
  running jobs and jobs that finished within the last 60 s (a job that ended earlier cannot touch the current
  window). A job starts only while the sum stays within `headroom` of the app limit. Calls per job are
  estimated from the organisation's last finished backup.

It must not import the store, the Xero client, asyncio or anything that does I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo

DAY = 86_400.0
WINDOW_SECONDS = 60.0
"""Xero's rate-limit window: limits are counted per fixed minute."""


@dataclass(frozen=True)
class Window:
    """A daily window in local time, `[start, end)` in minutes after midnight; equal ends mean all day."""

    start_minute: int
    end_minute: int

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        """From "HH:MM" strings ("24:00" is accepted as an end)."""
        return cls(_minutes(start), _minutes(end) % (24 * 60))

    @property
    def all_day(self) -> bool:
        return self.start_minute == self.end_minute

    @property
    def length_seconds(self) -> float:
        if self.all_day:
            return DAY
        return ((self.end_minute - self.start_minute) % (24 * 60)) * 60.0

    def contains(self, moment: datetime) -> bool:
        if self.all_day:
            return True
        minute = moment.hour * 60 + moment.minute
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute  # crosses midnight

    def next_open(self, timestamp: float, tz: tzinfo) -> float:
        """`timestamp` if it is inside the window, else the next time the window opens."""
        if self.contains(datetime.fromtimestamp(timestamp, tz)):
            return timestamp
        return self.opening_after(timestamp, tz)

    def opening_after(self, timestamp: float, tz: tzinfo) -> float:
        """The first time the window opens strictly after `timestamp`."""
        local = datetime.fromtimestamp(timestamp, tz)
        start = time(self.start_minute // 60, self.start_minute % 60)
        opening = datetime.combine(local.date(), start, tzinfo=tz)
        if opening.timestamp() <= timestamp:
            opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=tz)
        return opening.timestamp()

    def last_open(self, timestamp: float, tz: tzinfo) -> float:
        """When the current or most recent window opened (local midnight for an all-day window)."""
        local = datetime.fromtimestamp(timestamp, tz)
        minute = 0 if self.all_day else self.start_minute
        opening = datetime.combine(local.date(), time(minute // 60, minute % 60), tzinfo=tz)
        if opening.timestamp() > timestamp:
            opening = datetime.combine(local.date() - timedelta(days=1), time(minute // 60, minute % 60), tzinfo=tz)
        return opening.timestamp()


def _minutes(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"not a time of day: {text!r}")
    return value


@dataclass(frozen=True)
class OrgSchedule:
    interval_seconds: float = DAY
    window: Window | None = None
    """Start scheduled backups only inside this window; None: any time."""
    paused: bool = False


@dataclass(frozen=True)
class OrgState:
    """What the scheduler knows about one organisation."""

    org_id: str
    last_good_at: float | None
    """`taken_at` of its newest point; None when it has none."""
    schedule: OrgSchedule = field(default_factory=OrgSchedule)
    active: bool = True
    """False when it needs consent again or is disconnected: nothing to schedule until a person acts."""
    last_attempt_at: float | None = None
    failures: int = 0
    """Consecutive failed backups."""
    paused_until: float | None = None
    """Its last run paused on the day budget; Xero resets the budget at this time."""
    calls_estimate: int | None = None
    """API calls its last finished backup made."""
    running: bool = False
    requested: bool = False
    """A person queued a backup: it goes first, regardless of the schedule and the backoff."""


@dataclass(frozen=True)
class Budget:
    max_concurrent: int
    """Jobs at once (the daemon's cap), counting every running backup."""
    app_calls_per_minute: int = 10_000
    tenant_calls_per_minute: int = 60
    headroom: float = 0.8
    default_calls: int = 60
    """Assumed calls of a backup with no estimate."""

    @property
    def app_allowance(self) -> int:
        return max(1, math.floor(self.app_calls_per_minute * self.headroom))

    def reservation(self, calls: int | None) -> int:
        """Calls a job can spend in one rate window: its estimate, capped by the tenant's minute limit."""
        estimate = self.default_calls if calls is None else max(1, calls)
        return min(estimate, self.tenant_calls_per_minute)


@dataclass(frozen=True)
class Retry:
    base_seconds: float = 900.0
    max_seconds: float = 6 * 3600.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.base_seconds * 2 ** min(failures - 1, 30), self.max_seconds)


@dataclass(frozen=True)
class RecentJob:
    """A backup that finished recently: its calls may still count in Xero's current window."""

    calls: int
    finished_at: float


@dataclass
class Decision:
    start: list[str]
    """Organisations to start now, in order."""
    due: int
    """Organisations due now and not running (including those started)."""
    held_by_budget: int
    """Due organisations not started because of the concurrency cap or the app call budget."""
    load: int
    """Calls reserved in the current rate window after the starts."""
    next_due_at: float | None
    """The earliest time a not-yet-due organisation becomes due (a hint for how long to sleep)."""


def due_at(org: OrgState, *, now: float, tz: tzinfo, retry: Retry) -> float | None:
    """When the organisation may next start a backup; None when it is not to be scheduled at all."""
    if not org.active:
        return None
    if org.requested:
        return now if org.paused_until is None else max(now, org.paused_until)
    schedule = org.schedule
    if schedule.paused:
        return None
    when = _earliest(org.last_good_at, schedule, org.failures, org.last_attempt_at, org.paused_until, tz, retry)
    if when <= now:
        when = now
    return _next_open(schedule.window, when, tz) if schedule.window is not None else when


@functools.lru_cache(maxsize=65_536)
def _earliest(
    last_good_at: float | None,
    schedule: OrgSchedule,
    failures: int,
    last_attempt_at: float | None,
    paused_until: float | None,
    tz: tzinfo,
    retry: Retry,
) -> float:
    # Independent of `now`, so cached: the daemon asks about 5,000 mostly unchanged organisations every tick.
    window = schedule.window
    if last_good_at is None:
        when = float("-inf")
    elif window is None or window.all_day or schedule.interval_seconds < DAY:
        when = last_good_at + schedule.interval_seconds
    else:
        # Once per window: the first opening after the window it last ran in (`interval - DAY` later for
        # intervals of several days), and never sooner than half an interval after it ran (so a backup taken
        # by hand just before the window opens does not start another one a minute later).
        opening = window.opening_after(last_good_at + schedule.interval_seconds - DAY, tz)
        when = max(opening, last_good_at + schedule.interval_seconds / 2)
    if failures > 0 and last_attempt_at is not None:
        when = max(when, last_attempt_at + retry.delay(failures))
    if paused_until is not None:
        when = max(when, paused_until)
    return when


@functools.lru_cache(maxsize=4096)
def _next_open(window: Window, timestamp: float, tz: tzinfo) -> float:
    return window.next_open(timestamp, tz)


def choose(
    orgs: Iterable[OrgState],
    *,
    now: float,
    tz: tzinfo,
    budget: Budget,
    retry: Retry | None = None,
    recent: Sequence[RecentJob] = (),
    other_running: int = 0,
) -> Decision:
    """Pick the backups to start now. `other_running`: jobs of other kinds holding concurrency slots."""
    retry = retry or Retry()
    running_orgs: list[OrgState] = []
    candidates: list[tuple[tuple[int, float, float, str], OrgState]] = []
    next_due: float | None = None
    for org in orgs:
        if org.running:
            running_orgs.append(org)
            continue
        when = due_at(org, now=now, tz=tz, retry=retry)
        if when is None:
            continue
        if when <= now:
            oldest = org.last_good_at if org.last_good_at is not None else float("-inf")
            candidates.append(((0 if org.requested else 1, oldest, when, org.org_id), org))
        elif next_due is None or when < next_due:
            next_due = when
    candidates.sort(key=lambda item: item[0])

    load = sum(budget.reservation(org.calls_estimate) for org in running_orgs)
    load += sum(
        min(job.calls, budget.tenant_calls_per_minute) for job in recent if now - job.finished_at < WINDOW_SECONDS
    )
    slots = budget.max_concurrent - len(running_orgs) - other_running
    allowance = budget.app_allowance
    start: list[str] = []
    for _key, org in candidates:
        if slots <= 0:
            break
        cost = budget.reservation(org.calls_estimate)
        if load + cost > allowance and (load > 0 or start):
            break  # head-of-line: nothing overtakes the oldest waiting organisation
        start.append(org.org_id)
        load += cost
        slots -= 1
    return Decision(
        start=start,
        due=len(candidates),
        held_by_budget=len(candidates) - len(start),
        load=load,
        next_due_at=next_due,
    )


@dataclass(frozen=True)
class FleetProgress:
    total: int
    backed_up_today: int
    running: int
    failing: int
    needing_consent: int

    def status_line(self) -> str:
        """The one line systemd shows, e.g. "412/5000 backed up today, 3 running, 1 failing"."""
        text = f"{self.backed_up_today}/{self.total} backed up today, {self.running} running, {self.failing} failing"
        if self.needing_consent:
            text += f", {self.needing_consent} need consent"
        return text


def progress(orgs: Iterable[OrgState], *, now: float, tz: tzinfo, window: Window | None) -> FleetProgress:
    """Fleet figures for STATUS=: "today" starts when the current (or last) backup window opened."""
    since = (window or Window(0, 0)).last_open(now, tz)
    total = backed = running = failing = consent = 0
    for org in orgs:
        if not org.active:
            consent += 1
            continue
        total += 1
        backed += org.last_good_at is not None and org.last_good_at >= since
        running += org.running
        failing += org.failures > 0
    return FleetProgress(total, backed, running, failing, consent)


# -- refresh tokens -------------------------------------------------------------------------------------------
REFRESH_TOKEN_LIFETIME_DAYS = 60
"""Xero: "Unused refresh tokens expire after 60 days" (OAUTH-FAQ; shared/research/xero-api.md §5.1 and §8.1)."""


@dataclass(frozen=True)
class AgeingToken:
    """A grant whose refresh token nears (or passed) Xero's expiry for unused tokens."""

    grant_id: str
    saved_at: float
    expires_at: float


def ageing_refresh_tokens(saved: Mapping[str, float], *, now: float, warn_days: float) -> list[AgeingToken]:
    """The grants (grant_id -> when their tokens were last saved) whose refresh token is older than `warn_days`,
    oldest first; one saved exactly `warn_days` ago is not yet due. Each token is renewed by every refresh, so
    its age is the time since it was saved."""
    due = [
        AgeingToken(grant_id, saved_at, saved_at + REFRESH_TOKEN_LIFETIME_DAYS * DAY)
        for grant_id, saved_at in saved.items()
        if now - saved_at > warn_days * DAY
    ]
    return sorted(due, key=lambda token: (token.saved_at, token.grant_id))

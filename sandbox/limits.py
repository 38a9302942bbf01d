"""Xero's rate limits for the sandbox: per tenant concurrent/minute/day, per app minute.

This module owns the limit values (Xero's defaults, overridable per sandbox or per tenant through
the admin API), the in-process fixed minute windows and concurrency counters, the day decision
against the `usage` table, and the `X-*Limit-Remaining` / `Retry-After` headers.

It must not do I/O except through the `SandboxStore` handed to `admit_day`; the in-process part
(`RateLimiter`) is pure bookkeeping with an injected clock and must be called from one event loop.

Source: https://developer.xero.com/documentation/guides/oauth2/limits/ ("LIMITS"):
5 concurrent calls, 60 calls a minute and 5,000 a day per tenant (1,000 on the Starter tier),
10,000 a minute per app; "Requests are counted against a fixed window"; every response carries
`X-DayLimit-Remaining`, `X-MinLimit-Remaining`, `X-AppMinLimit-Remaining`; a 429 carries
`X-Rate-Limit-Problem` and, for the minute and day limits, `Retry-After` in seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sandbox.store import SandboxStore

CONCURRENT = 5
PER_MINUTE = 60
PER_DAY = 5_000
PER_DAY_STARTER = 1_000
APP_PER_MINUTE = 10_000
WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one tenant's calls."""

    concurrent: int = CONCURRENT
    minute: int = PER_MINUTE
    day: int = PER_DAY
    app_minute: int = APP_PER_MINUTE
    # Sandbox-only: the length of the "minute" window in seconds. Xero's is 60; tests shorten it so a minute
    # 429 storm and its Retry-After take seconds, with every rule otherwise unchanged.
    window: int = int(WINDOW_S)


def limits_for(store: SandboxStore, tenant_id: str, tier: str) -> Limits:
    """Xero's defaults for the tier, then sandbox-wide overrides, then the tenant's own."""
    base = Limits(day=PER_DAY_STARTER if tier == "starter" else PER_DAY)
    config: dict[str, Any] = store.get_config("limits", {}) or {}
    merged = {k: v for k, v in config.items() if k in Limits.__dataclass_fields__ and v is not None}
    merged.update(
        {
            k: v
            for k, v in (config.get("tenants", {}).get(tenant_id, {}) or {}).items()
            if k in Limits.__dataclass_fields__ and v is not None
        }
    )
    return replace(base, **{k: int(v) for k, v in merged.items()})


def set_limits(store: SandboxStore, values: dict[str, Any], tenant_id: str | None = None) -> dict[str, Any]:
    """Override limits sandbox-wide or for one tenant; a `None` value restores Xero's default."""
    unknown = set(values) - set(Limits.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown limit(s): {', '.join(sorted(unknown))}")
    config: dict[str, Any] = store.get_config("limits", {}) or {}
    target = config.setdefault("tenants", {}).setdefault(tenant_id, {}) if tenant_id else config
    for key, value in values.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = int(value)
    store.set_config("limits", config)
    return config


@contextlib.contextmanager
def write_transaction(store: SandboxStore) -> Iterator[None]:
    """A transaction that takes SQLite's write lock up front (`BEGIN IMMEDIATE`).

    A deferred transaction that reads, then writes after another connection committed, fails at once
    with SQLITE_BUSY (a stale WAL snapshot) without waiting on the busy timeout; read-then-write
    sequences shared between threads and processes (usage, codes, refresh tokens) need the lock first.
    Nested use inside an open transaction joins it.
    """
    if store.db.in_transaction:
        with store.db:
            yield
        return
    store.db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    store.db.execute("COMMIT")


def day_key(now_ms: int) -> str:
    return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().isoformat()


def seconds_to_next_day(now_ms: int) -> int:
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


def day_calls(store: SandboxStore, tenant_id: str, now_ms: int) -> int:
    return int(store.scalar("SELECT calls FROM usage WHERE tenant_id=? AND day=?", (tenant_id, day_key(now_ms))) or 0)


def admit_day(store: SandboxStore, tenant_id: str, limit: int, now_ms: int) -> tuple[bool, int]:
    """Count one call against the tenant's day window (shared by every process using the state file).

    Returns (admitted, calls made today including this one if admitted).
    """
    day = day_key(now_ms)
    with write_transaction(store):
        calls = day_calls(store, tenant_id, now_ms)
        admitted = calls < limit
        store.add_usage(tenant_id, day, int(admitted), 0, rejected=int(not admitted))
    return admitted, calls + int(admitted)


def exhaust_day(store: SandboxStore, tenant_id: str, limit: int, now_ms: int) -> None:
    """Fault: use up the tenant's day allowance (the next call gets 429 `day`)."""
    missing = limit - day_calls(store, tenant_id, now_ms)
    if missing > 0:
        store.add_usage(tenant_id, day_key(now_ms), missing, 0)


@dataclass
class _Window:
    start: float = 0.0
    count: int = 0

    length: float = WINDOW_S

    def roll(self, now: float, length: float) -> None:
        self.length = length
        if now - self.start >= length:
            self.start = now
            self.count = 0

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.start + self.length - now))


@dataclass
class Admission:
    """The outcome of the in-process checks for one call."""

    allowed: bool
    problem: str | None = None  # minute | appminute | concurrent | day
    retry_after: int | None = None
    minute_remaining: int = 0
    app_minute_remaining: int = 0
    day_remaining: int = 0

    def headers(self) -> dict[str, str]:
        headers = {
            "X-DayLimit-Remaining": str(max(0, self.day_remaining)),
            "X-MinLimit-Remaining": str(max(0, self.minute_remaining)),
            "X-AppMinLimit-Remaining": str(max(0, self.app_minute_remaining)),
        }
        if self.problem:
            headers["X-Rate-Limit-Problem"] = self.problem
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass
class RateLimiter:
    """Fixed minute windows and in-flight counts, per tenant and per app, for this process."""

    clock: Callable[[], float] = time.monotonic
    _tenant_windows: dict[str, _Window] = field(default_factory=dict)
    _app_windows: dict[str, _Window] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)
    rejections: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(tenant id, problem) -> 429s this process sent: which limit a client ran into."""

    def reset(self) -> None:
        self._tenant_windows.clear()
        self._app_windows.clear()

    def acquire(self, tenant_id: str, client_id: str, limits: Limits) -> Admission:
        """Admit or refuse a call; an admitted call holds a concurrency slot until `release`."""
        now = self.clock()
        tenant = self._tenant_windows.setdefault(tenant_id, _Window(start=now))
        app = self._app_windows.setdefault(client_id, _Window(start=now))
        tenant.roll(now, limits.window)
        app.roll(now, limits.window)
        in_flight = self._in_flight.get(tenant_id, 0)
        admission = Admission(
            allowed=False,
            minute_remaining=limits.minute - tenant.count,
            app_minute_remaining=limits.app_minute - app.count,
        )
        if tenant.count >= limits.minute:
            admission.problem, admission.retry_after = "minute", tenant.retry_after(now)
        elif app.count >= limits.app_minute:
            admission.problem, admission.retry_after = "appminute", app.retry_after(now)
        elif in_flight >= limits.concurrent:
            # LIMITS does not promise Retry-After for this limit; a short hint is harmless.
            admission.problem, admission.retry_after = "concurrent", 1
        else:
            tenant.count += 1
            app.count += 1
            self._in_flight[tenant_id] = in_flight + 1
            admission.allowed = True
            admission.minute_remaining = limits.minute - tenant.count
            admission.app_minute_remaining = limits.app_minute - app.count
        if admission.problem:
            self.rejections[(tenant_id, admission.problem)] += 1
        return admission

    def rollback(self, tenant_id: str, client_id: str) -> None:
        """Undo an `acquire` whose call was then refused by the day limit."""
        self.rejections[(tenant_id, "day")] += 1
        self.release(tenant_id)
        for windows, key in ((self._tenant_windows, tenant_id), (self._app_windows, client_id)):
            window = windows.get(key)
            if window and window.count > 0:
                window.count -= 1

    def release(self, tenant_id: str) -> None:
        self._in_flight[tenant_id] = max(0, self._in_flight.get(tenant_id, 0) - 1)

    def in_flight(self, tenant_id: str) -> int:
        return self._in_flight.get(tenant_id, 0)


def describe(limits: Limits) -> dict[str, int]:
    return asdict(limits)

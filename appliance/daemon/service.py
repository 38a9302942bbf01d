"""`strongroom daemon`: the asyncio service that runs the fleet's jobs under systemd.

This module owns the daemon's main loop, plugged into `appliance.daemon.lifecycle.run_daemon`:

- start-up: refuse to run twice on one data directory (the `daemon` row names a live process), re-queue jobs
  whose worker died, drop stale organisation locks, then `READY=1`;
- every tick (and whenever a job ends): reap finished jobs, pass cancel requests to running jobs, start
  queued jobs people asked for, ask the pure scheduler which backups to start within the concurrency cap and
  Xero's app limit, queue retention and check jobs that are due, raise alerts for stale organisations and
  for refresh tokens nearing Xero's 60-day expiry (`alert_pass`, in a worker thread), and report `STATUS=`
  ("412/5000 backed up today, 3 running, 1 failing") plus a heartbeat row the CLI uses to tell that a daemon
  runs;
- SIGHUP: re-read the settings (new jobs use them; running ones finish with the old);
- SIGTERM: set every running job's cancel Event, so the backup engine stops at its next checkpoint and restic
  children get SIGINT (releasing their locks), wait for them, and leave their jobs queued to resume; the
  lifecycle cancels whatever is still running after `stop_grace_seconds`.

It must not contain scheduling policy (`scheduler`) or job semantics (`jobs`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance import alerts
from appliance.alerts import Alerter
from appliance.daemon import scheduler
from appliance.daemon.jobs import BACKUP, CHECK, RETENTION, JobRunner
from appliance.daemon.lifecycle import Lifecycle, run_daemon
from appliance.daemon.notify import Notifier
from appliance.errors import ConfigError, OrganisationLocked
from appliance.models import OrgStatus
from appliance.service import Appliance
from appliance.settings import Settings
from appliance.store import Job, JobState
from appliance.store.fleet import Fleet

log = logging.getLogger(__name__)

MAINTENANCE_PER_TICK = 10
"""Retention and check jobs queued per tick at most, so a fleet's weekly maintenance spreads out."""


@dataclass
class _Running:
    job: Job
    task: asyncio.Task[Job]
    cancel: threading.Event
    calls_estimate: int | None = None


@dataclass
class FleetFacts:
    """What one tick read from the state database."""

    orgs: list[scheduler.OrgState]
    names: dict[str, str]
    queued: list[Job]
    statuses: dict[str, OrgStatus] = field(default_factory=dict)


def schedule_for(settings: Settings, org_id: str) -> scheduler.OrgSchedule:
    """The organisation's schedule: the fleet's, with its overrides applied."""
    fleet = settings.schedule
    override = fleet.organisations.get(org_id)
    interval = (override.interval_hours if override and override.interval_hours else fleet.interval_hours) * 3600
    window: scheduler.Window | None = None
    if override and override.window_start and override.window_end:
        window = scheduler.Window.parse(override.window_start, override.window_end)
    elif interval >= scheduler.DAY:
        window = scheduler.Window.parse(fleet.window_start, fleet.window_end)
    return scheduler.OrgSchedule(interval_seconds=interval, window=window, paused=bool(override and override.paused))


def time_zone(settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(f"schedule.timezone {settings.schedule.timezone!r} is not a known time zone") from error


class Daemon:
    """The fleet daemon of one installation."""

    def __init__(self, settings: Settings, *, reload_settings: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self.appliance = Appliance(settings)
        self.running: dict[int, _Running] = {}
        self.recent: list[scheduler.RecentJob] = []
        self._wake = asyncio.Event()
        self._round_complete = False
        self._alerting: asyncio.Future[None] | None = None

    # --- settings -------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: build new settings; if they are invalid the old ones stay (the lifecycle reports it)."""
        if self._reload_settings is None:
            return
        settings = self._reload_settings()
        time_zone(settings)
        self.settings = settings
        self.appliance = Appliance(settings, state=self.appliance.state)
        log.info("settings reloaded")

    # --- main -------------------------------------------------------------------------------------------------
    async def main(self, lifecycle: Lifecycle) -> None:
        lifecycle.status("starting")
        state = self.appliance.state
        fleet = Fleet(state.db)
        other = fleet.running_daemon()
        if other is not None and other.owner_pid != os.getpid():
            raise OrganisationLocked(
                f"a Strongroom daemon already runs on {self.settings.data_dir} (pid {other.owner_pid})"
            )
        fleet.register_daemon()
        requeued = state.jobs.recover_stale(max_attempts=5)
        cleared = state.locks.clear_stale()
        if requeued or cleared:
            log.info("recovered %d job(s) and %d lock(s) a dead process left", len(requeued), len(cleared))
        time_zone(self.settings)
        try:
            lifecycle.ready(self.tick(lifecycle))
            while not lifecycle.stop_requested.is_set():
                await self._wait(lifecycle)
                if lifecycle.stop_requested.is_set():
                    break
                self.tick(lifecycle)
        finally:
            await self._stop_jobs(lifecycle)
            fleet.unregister_daemon()

    async def _wait(self, lifecycle: Lifecycle) -> None:
        """Sleep until the next tick, a stop request, or a job ending (which frees a slot)."""
        self._wake.clear()
        waiters = {asyncio.ensure_future(lifecycle.stop_requested.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=self.settings.schedule.tick_seconds, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _stop_jobs(self, lifecycle: Lifecycle) -> None:
        if not self.running:
            return
        log.info("stopping: asking %d running job(s) to checkpoint", len(self.running))
        lifecycle.status(f"stopping: waiting for {len(self.running)} job(s) to checkpoint")
        for running in self.running.values():
            running.cancel.set()
        await asyncio.gather(*(running.task for running in self.running.values()), return_exceptions=True)
        self.running.clear()

    # --- one tick ---------------------------------------------------------------------------------------------
    def tick(self, lifecycle: Lifecycle) -> str:
        """Do one round of bookkeeping and starts; returns (and reports) the status line."""
        now = time.time()
        state = self.appliance.state
        fleet = Fleet(state.db)
        self._reap(now)
        self._pass_cancels()
        facts = self._facts(fleet)
        busy_orgs = {running.job.org_id for running in self.running.values()}
        slots = self.settings.schedule.max_concurrent_jobs - len(self.running)

        # Work people asked for that costs no Xero calls starts first, oldest request first.
        for job in sorted(facts.queued, key=lambda j: (-j.priority, j.job_id)):
            if slots <= 0:
                break
            if job.kind == BACKUP or (job.not_before is not None and job.not_before > now):
                continue
            if job.org_id is not None and job.org_id in busy_orgs:
                continue
            if self._start(fleet, job, None):
                busy_orgs.add(job.org_id)
                slots -= 1

        tz = time_zone(self.settings)
        budget = scheduler.Budget(
            max_concurrent=self.settings.schedule.max_concurrent_jobs,
            app_calls_per_minute=self.settings.limits.app_per_minute,
            tenant_calls_per_minute=self.settings.limits.tenant_per_minute,
            headroom=self.settings.schedule.app_call_headroom,
            default_calls=self.settings.schedule.default_calls_per_backup,
        )
        retry = scheduler.Retry(
            base_seconds=self.settings.schedule.retry_base_minutes * 60,
            max_seconds=self.settings.schedule.retry_max_hours * 3600,
        )
        orgs = [org if org.org_id not in busy_orgs or org.running else _replace_running(org) for org in facts.orgs]
        other_running = sum(1 for running in self.running.values() if running.job.kind != BACKUP)
        decision = scheduler.choose(
            orgs, now=now, tz=tz, budget=budget, retry=retry, recent=self.recent, other_running=other_running
        )
        queued_backups = {job.org_id: job for job in facts.queued if job.kind == BACKUP and job.org_id}
        estimates = {org.org_id: org.calls_estimate for org in orgs}
        for org_id in decision.start:
            job = queued_backups.get(org_id) or state.jobs.enqueue(BACKUP, org_id=org_id, params={"scheduled": True})
            self._start(fleet, job, estimates.get(org_id))

        self._queue_maintenance(fleet, facts, now)
        if self._alerting is None or self._alerting.done():
            # apprise is synchronous: deliver from a worker thread so the event loop (and WATCHDOG=1) never waits.
            self._alerting = asyncio.ensure_future(asyncio.to_thread(self.alert_pass, facts, now))
        window = scheduler.Window.parse(self.settings.schedule.window_start, self.settings.schedule.window_end)
        current = [org if org.org_id not in self.running_orgs() else _replace_running(org) for org in facts.orgs]
        figures = scheduler.progress(current, now=now, tz=tz, window=window)
        line = figures.status_line()
        if decision.held_by_budget:
            line += f", {decision.held_by_budget} waiting for Xero budget"
        lifecycle.status(line)
        fleet.daemon_heartbeat(line)
        self._heartbeat(figures)
        return line

    def running_orgs(self) -> set[str]:
        return {running.job.org_id for running in self.running.values() if running.job.org_id}

    def _facts(self, fleet: Fleet) -> FleetFacts:
        state = self.appliance.state
        organisations = state.orgs.list()
        points = fleet.last_points()
        entries = fleet.entries()
        queued = state.jobs.list(state=JobState.QUEUED, limit=1_000_000)
        requested = {job.org_id for job in queued if job.kind == BACKUP and job.org_id}
        running = self.running_orgs()
        orgs = []
        for organisation in organisations:
            entry = entries.get(organisation.org_id)
            orgs.append(
                scheduler.OrgState(
                    org_id=organisation.org_id,
                    last_good_at=points.get(organisation.org_id),
                    schedule=schedule_for(self.settings, organisation.org_id),
                    active=organisation.status is OrgStatus.ACTIVE,
                    last_attempt_at=entry.last_attempt_at if entry else None,
                    failures=entry.failures if entry else 0,
                    paused_until=entry.paused_until if entry else None,
                    calls_estimate=entry.last_calls if entry else None,
                    running=organisation.org_id in running,
                    requested=organisation.org_id in requested,
                )
            )
        return FleetFacts(
            orgs=orgs,
            names={o.org_id: o.name for o in organisations},
            queued=queued,
            statuses={o.org_id: o.status for o in organisations},
        )

    def _start(self, fleet: Fleet, job: Job, calls_estimate: int | None) -> bool:
        claimed = fleet.claim_job(job.job_id)
        if claimed is None:
            return False
        cancel = threading.Event()
        runner = JobRunner(self.appliance, alerter=self._alerter(fleet), requeue_on_stop=True)
        task = asyncio.ensure_future(runner.execute(claimed, cancel))
        task.add_done_callback(lambda _task: self._wake.set())
        self.running[claimed.job_id] = _Running(claimed, task, cancel, calls_estimate)
        log.info("started job %d: %s %s", claimed.job_id, claimed.kind, claimed.org_id or "")
        return True

    def _alerter(self, fleet: Fleet) -> Alerter:
        return Alerter(self.settings.alerts, fleet)

    def _reap(self, now: float) -> None:
        self.recent = [job for job in self.recent if now - job.finished_at < scheduler.WINDOW_SECONDS]
        for job_id, running in list(self.running.items()):
            if not running.task.done():
                continue
            del self.running[job_id]
            if running.task.cancelled():
                continue
            error = running.task.exception()
            if error is not None:
                log.error("job %d ended on an error: %s", job_id, error)
                continue
            final = running.task.result()
            if final.kind == BACKUP and isinstance(final.result, dict):
                self.recent.append(scheduler.RecentJob(calls=int(final.result.get("calls") or 0), finished_at=now))
            log.info("job %d (%s) ended %s", job_id, final.kind, final.state.value)

    def _pass_cancels(self) -> None:
        state = self.appliance.state
        for job_id, running in self.running.items():
            if running.cancel.is_set():
                continue
            current = state.jobs.find(job_id)
            if current is not None and current.cancel_requested:
                log.info("cancelling job %d as asked", job_id)
                running.cancel.set()

    def _queue_maintenance(self, fleet: Fleet, facts: FleetFacts, now: float) -> None:
        schedule = self.settings.schedule
        waiting = {(job.kind, job.org_id) for job in facts.queued}
        with_points = {org.org_id for org in facts.orgs if org.last_good_at is not None}
        running_orgs = self.running_orgs()
        queued = 0
        for kind, every_days in ((RETENTION, schedule.retention_every_days), (CHECK, schedule.check_every_days)):
            if every_days <= 0:
                continue
            last = fleet.maintenance_times(kind)
            for org_id in sorted(with_points, key=lambda o: last.get(o, -1.0)):
                if queued >= MAINTENANCE_PER_TICK:
                    return
                if org_id not in last:
                    # The first point starts the clock: maintenance comes `every_days` after it, not at once.
                    fleet.record_maintenance(org_id, "local", kind, ok=True, error="not run yet")
                    continue
                if now - last[org_id] < every_days * 86_400 or (kind, org_id) in waiting:
                    continue
                if org_id in running_orgs:
                    continue
                self.appliance.state.jobs.enqueue(kind, org_id=org_id, priority=-10)
                fleet.record_maintenance(org_id, "local", kind, ok=True, error="queued")
                queued += 1

    def alert_pass(self, facts: FleetFacts | None = None, now: float | None = None) -> None:
        """The periodic alerts: stale organisations, refresh tokens nearing expiry. Blocking (apprise delivers
        synchronously): the tick runs it in a worker thread. Each alert is deduplicated by the `Alerter`."""
        settings = self.settings.alerts
        if not (settings.urls or settings.url_secrets):
            return
        state = self.appliance.state
        fleet = Fleet(state.db)
        facts = facts if facts is not None else self._facts(fleet)
        now = time.time() if now is None else now
        alerter = self._alerter(fleet)
        threshold = settings.stale_after_hours * 3600
        for org in facts.orgs:
            if org.active and org.last_good_at is not None and now - org.last_good_at > threshold:
                alerter.send(alerts.stale(org.org_id, facts.names[org.org_id], (now - org.last_good_at) / 3600))
        for token in scheduler.ageing_refresh_tokens(
            state.grants.tokens_saved(), now=now, warn_days=settings.refresh_warn_days
        ):
            names = [org.name for org in state.orgs.list(status=OrgStatus.ACTIVE, grant_id=token.grant_id)]
            if names:
                alerter.send(alerts.refresh_token_ageing(token.grant_id, names, token.saved_at, token.expires_at))

    def _heartbeat(self, figures: scheduler.FleetProgress) -> None:
        complete = figures.total > 0 and figures.backed_up_today == figures.total
        if complete and not self._round_complete and self.settings.alerts.heartbeat_url:
            threading.Thread(target=Alerter(self.settings.alerts).heartbeat, daemon=True).start()
        self._round_complete = complete


def _replace_running(org: scheduler.OrgState) -> scheduler.OrgState:
    return replace(org, running=True)


def serve(settings: Settings, *, reload_settings: Callable[[], Settings] | None = None) -> int:
    """Run the daemon until SIGTERM; returns the process exit code."""
    daemon = Daemon(settings, reload_settings=reload_settings)
    return run_daemon(
        daemon.main,
        Notifier.from_environment(unset=True),
        on_reload=daemon.reload,
        stop_grace=settings.schedule.stop_grace_seconds,
        announce_ready=False,
    )

"""Jobs: the kinds of long work, and the runner that executes one claimed job and records how it ended.

Kinds: `backup` (the backup engine), `replicate` (copy points to the organisation's region), `retention`
(forget + prune on the primary and on non-append-only replicas), `check` (`restic check` of the primary and
the replica), and `export`/`restore`, which dispatch to handlers later issues register with
`register_handler`. The daemon and the CLI (when no daemon runs) execute jobs through the same
`JobRunner.execute`, so a job behaves the same whoever runs it.

A backup Xero refuses with 403 asks `GET /connections` whether the tenant is still connected; when it is not,
the organisation becomes `disconnected` (distinct from `needs_consent`, a refresh token Xero no longer accepts)
and a person is told once.

How a job ends:
- done / failed with a JSON `result` (a backup's outcome, a replication's figures...);
- cancelled when a person asked (`strongroom jobs cancel`): the runner sees the request in the progress
  heartbeat or the daemon's poll, sets the job's cancel Event, and restic is interrupted with SIGINT so it
  releases its lock;
- back in the queue when the daemon is stopping (SIGTERM): the backup engine checkpoints its run, so the
  re-queued job resumes on the next start instead of starting over.

It must not schedule (the scheduler and daemon decide what to run) and must not parse arguments or print.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance import alerts
from appliance.alerts import Alerter
from appliance.backup.run import BackupOutcome, Progress, host_for
from appliance.daemon.lifecycle import stop_signals_raise
from appliance.errors import Interrupted, NotFound, OrganisationLocked, ResticCancelled, StrongroomError, UsageError
from appliance.models import OrgStatus
from appliance.service import Appliance
from appliance.store import Job, JobState
from appliance.store.fleet import Fleet
from appliance.vault import retention as retention_rules
from appliance.vault.replication import Replicator, effective_region, find_copy
from appliance.vault.repository import Repository

log = logging.getLogger(__name__)

BACKUP = "backup"
REPLICATE = "replicate"
RETENTION = "retention"
CHECK = "check"
EXPORT = "export"
RESTORE = "restore"
KINDS = (BACKUP, REPLICATE, RETENTION, CHECK, EXPORT, RESTORE)
PROGRESS_INTERVAL = 1.0
"""Seconds between progress writes of one job (each is a durable SQLite commit)."""


@dataclass
class JobContext:
    """What a handler gets: the job, the installation, a cancel Event, and a way to report progress."""

    job: Job
    appliance: Appliance
    cancel: threading.Event
    alerter: Alerter | None
    report: Callable[[dict[str, Any]], None]

    @property
    def org_id(self) -> str:
        if self.job.org_id is None:
            raise UsageError(f"a {self.job.kind} job needs an organisation")
        return self.job.org_id

    @property
    def fleet(self) -> Fleet:
        return Fleet(self.appliance.state.db)


@dataclass
class JobOutcome:
    """What a handler returns: a final state, a JSON-able result, and follow-up jobs to queue."""

    state: JobState = JobState.DONE
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    follow_up: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    """(kind, org_id, params) to enqueue after this job finished."""
    requeue_after: float | None = None
    """Paused at a checkpoint (e.g. Xero's day budget): back in the queue, to run again from this UNIX time."""


Handler = Callable[[JobContext], Awaitable[JobOutcome]]
_EXTRA_HANDLERS: dict[str, Handler] = {}
_HANDLER_MODULES = {EXPORT: "appliance.points.export_job", RESTORE: "appliance.restore.job"}
"""Modules that register a kind's handler when imported (loaded on first use, so every runner has them)."""


def register_handler(kind: str, handler: Handler) -> None:
    """Plug in a job kind (export and restore are implemented by later issues)."""
    _EXTRA_HANDLERS[kind] = handler


class _Stopped(Interrupted):
    """The job stopped because its cancel Event was set (a person's cancel or the daemon stopping)."""


class JobRunner:
    """Executes claimed jobs for one installation."""

    def __init__(
        self,
        appliance: Appliance,
        *,
        alerter: Alerter | None = None,
        requeue_on_stop: bool = False,
        on_progress: Callable[[Job, dict[str, Any]], None] | None = None,
    ) -> None:
        """`requeue_on_stop`: the daemon's mode; an interrupted job goes back to the queue instead of ending
        cancelled. `on_progress`: also hand each progress report to the caller (the CLI's display)."""
        self.appliance = appliance
        self.alerter = alerter
        self.requeue_on_stop = requeue_on_stop
        self.on_progress = on_progress
        self.handlers: dict[str, Handler] = {
            BACKUP: _backup,
            REPLICATE: _replicate,
            RETENTION: _retention,
            CHECK: _check,
        }

    def handler(self, kind: str) -> Handler | None:
        if kind not in self.handlers and kind not in _EXTRA_HANDLERS and kind in _HANDLER_MODULES:
            importlib.import_module(_HANDLER_MODULES[kind])
        return self.handlers.get(kind) or _EXTRA_HANDLERS.get(kind)

    async def execute(self, job: Job, cancel: threading.Event) -> Job:
        """Run a job this process claimed, record its end (or re-queue it), and return the final row."""
        state = self.appliance.state
        fleet = Fleet(state.db)
        last_write = 0.0

        def report(progress: dict[str, Any]) -> None:
            nonlocal last_write
            if self.on_progress is not None:
                self.on_progress(job, progress)
            now = time.monotonic()
            if now - last_write < PROGRESS_INTERVAL and progress.get("phase") not in ("done", "snapshot"):
                return
            last_write = now
            try:
                if state.jobs.update_progress(job.job_id, progress):
                    cancel.set()
            except StrongroomError as error:
                log.warning("could not record progress of job %d: %s", job.job_id, error)

        handler = self.handler(job.kind)
        if handler is None:
            return state.jobs.finish(job.job_id, JobState.FAILED, error=f"no handler for {job.kind!r} jobs yet")
        context = JobContext(job, self.appliance, cancel, self.alerter, report)
        try:
            outcome = await handler(context)
        except asyncio.CancelledError:
            cancel.set()  # restic in a worker thread gets SIGINT and releases its lock
            self._stopped(job, fleet, "cancelled while running")
            raise
        except (_Stopped, Interrupted, ResticCancelled, KeyboardInterrupt) as error:
            cancel.set()
            return self._stopped(job, fleet, str(error) or "interrupted")
        except StrongroomError as error:
            log.error("job %d (%s) failed: %s", job.job_id, job.kind, error)
            return state.jobs.finish(job.job_id, JobState.FAILED, error=str(error))
        except Exception as error:
            log.exception("job %d (%s) failed unexpectedly", job.job_id, job.kind)
            return state.jobs.finish(job.job_id, JobState.FAILED, error=f"{type(error).__name__}: {error}")
        if outcome.requeue_after is not None:
            progress = {"phase": "paused", "resume_after": outcome.requeue_after, "detail": outcome.error or ""}
            fleet.requeue(job.job_id, progress=progress, not_before=outcome.requeue_after)
            log.info("job %d (%s) paused at a checkpoint; queued again", job.job_id, job.kind)
            return state.jobs.get(job.job_id)
        final = state.jobs.finish(job.job_id, outcome.state, result=outcome.result, error=outcome.error)
        for kind, org_id, params in outcome.follow_up:
            if org_id is None or fleet.queued_for(org_id, kind) is None:
                state.jobs.enqueue(kind, org_id=org_id, params=params)
        return final

    def _stopped(self, job: Job, fleet: Fleet, reason: str) -> Job:
        state = self.appliance.state
        current = state.jobs.get(job.job_id)
        if current.state is not JobState.RUNNING:
            return current
        if self.requeue_on_stop and not current.cancel_requested:
            fleet.requeue(job.job_id, progress={"phase": "queued", "detail": "stopped at a checkpoint; resumes"})
            log.info("job %d (%s) stopped at a checkpoint and is queued again", job.job_id, job.kind)
            return state.jobs.get(job.job_id)
        return state.jobs.finish(job.job_id, JobState.CANCELLED, error=reason)


# --- running a job without a daemon ----------------------------------------------------------------------------


def run_in_process(
    appliance: Appliance,
    kind: str,
    *,
    org_id: str | None = None,
    params: dict[str, Any] | None = None,
    alerter: Alerter | None = None,
    on_progress: Callable[[Job, dict[str, Any]], None] | None = None,
) -> list[Job]:
    """Queue a job and run it here (and the follow-ups it queues for the same organisation); returns the rows.

    SIGTERM and Ctrl-C interrupt it the way the daemon's stop does (restic gets SIGINT)."""
    state = appliance.state
    fleet = Fleet(state.db)
    job = state.jobs.enqueue(kind, org_id=org_id, params=params or {}, priority=100)
    runner = JobRunner(appliance, alerter=alerter, on_progress=on_progress)
    finished: list[Job] = []
    pending = [job]
    with stop_signals_raise():
        while pending:
            queued = pending.pop(0)
            claimed = fleet.claim_job(queued.job_id)
            if claimed is None:
                state.jobs.request_cancel(queued.job_id)
                raise OrganisationLocked(
                    f"organisation {org_id} already has a running job", hint="see `strongroom jobs`"
                )
            final = asyncio.run(runner.execute(claimed, threading.Event()))
            finished.append(final)
            if final.state is JobState.DONE:
                pending += [
                    follow
                    for follow in state.jobs.list(state=JobState.QUEUED, org_id=org_id)
                    if follow.job_id > final.job_id and follow.kind in (REPLICATE,)
                ]
    return finished


# --- handlers --------------------------------------------------------------------------------------------------


async def _backup(ctx: JobContext) -> JobOutcome:
    appliance = ctx.appliance
    org_id = ctx.org_id
    organisation = appliance.state.orgs.get(org_id)

    def progress(event: Progress) -> None:
        ctx.report(dataclasses.asdict(event))

    outcomes = await appliance.backup([org_id], full=bool(ctx.job.params.get("full")), progress=progress,
                                      cancel=ctx.cancel)  # fmt: skip
    if not outcomes:
        raise NotFound(f"no organisation {org_id!r}")
    outcome = outcomes[0]
    if ctx.cancel.is_set() and outcome.status != "succeeded":
        # restic stopped by our SIGINT reports a failure; it was a stop, and the run keeps its checkpoint.
        raise _Stopped(outcome.error or "stopped")
    disconnected = organisation.status is OrgStatus.DISCONNECTED
    refused = outcome.status == "failed" and _refused(outcome) and organisation.status is OrgStatus.ACTIVE
    if refused and await appliance.connection_gone(organisation):
        disconnected = True
        if appliance.state.orgs.mark_disconnected(org_id):
            log.warning("%s is no longer connected to app %s in Xero", organisation.name, organisation.app_name)
        outcome.error = f"{organisation.name} is no longer connected to app {organisation.app_name} in Xero"
    entry = ctx.fleet.record_backup(
        org_id, outcome.status, calls=outcome.calls, error=outcome.error, paused_until=outcome.resume_at
    )
    result = outcome.as_dict()
    if ctx.alerter is not None:
        # apprise delivers synchronously: off the event loop, so a slow webhook never stalls the daemon.
        await asyncio.to_thread(
            _backup_alerts, ctx.alerter, organisation.name, entry.failures, outcome, disconnected=disconnected
        )
    if outcome.status == "succeeded":
        follow_up: list[tuple[str, str | None, dict[str, Any]]] = []
        settings = appliance.settings
        region = effective_region(organisation, settings)
        if settings.schedule.replicate_after_backup and region is not None and region in settings.regions:
            follow_up.append((REPLICATE, org_id, {}))
        return JobOutcome(JobState.DONE, result, follow_up=follow_up)
    if outcome.status == "paused":
        return JobOutcome(JobState.DONE, result)
    return JobOutcome(JobState.FAILED, result, error=outcome.error or outcome.status)


def _backup_alerts(
    alerter: Alerter, name: str, failures: int, outcome: BackupOutcome, *, disconnected: bool = False
) -> None:
    status, org_id = outcome.status, outcome.org_id
    if status == "needs_consent":
        alerter.send(alerts.needs_consent(org_id, name))
    elif disconnected:
        # Not "backups failing": nothing will succeed until a person reconnects the organisation.
        alerter.send(alerts.disconnected(org_id, name))
    elif status == "paused" and outcome.resume_at is not None:
        resume = datetime.fromtimestamp(outcome.resume_at, UTC).isoformat(timespec="minutes")
        alerter.send(alerts.day_limit(org_id, name, resume))
    elif status == "failed" and failures >= alerter.settings.failures_before_alert:
        alerter.send(alerts.backup_failing(org_id, name, failures, outcome.error))


def _refused(outcome: BackupOutcome) -> bool:
    """Whether a backup failed on Xero refusing the tenant (`XeroForbidden`, HTTP 403). Xero answers 403
    `AuthenticationUnsuccessful` for a tenant not connected to the app (NangoHQ/nango#203,
    XeroAPI/xero-python#116; connections: shared/research/xero-api.md §5.1), and 401 for a missing scope; a
    403 is still only a reason to ask `GET /connections`, which decides."""
    return outcome.error_kind == "XeroForbidden"


def _replicator(appliance: Appliance) -> Replicator:
    return Replicator(appliance.settings, appliance.state.orgs.repository_password)


async def _replicate(ctx: JobContext) -> JobOutcome:
    appliance = ctx.appliance
    org_id = ctx.org_id
    organisation = appliance.state.orgs.get(org_id)
    own_region = effective_region(organisation, appliance.settings)
    target = ctx.job.params.get("region") or own_region
    if target is None:
        return JobOutcome(JobState.DONE, {"skipped": "the organisation has no region"})
    points = appliance.state.points.list(org_id)
    if not points:
        return JobOutcome(JobState.DONE, {"skipped": "no backup point to copy yet"})
    ctx.report({"phase": "copy", "region": target})
    fleet = ctx.fleet
    try:
        with appliance.state.locks.hold(org_id, purpose=REPLICATE, job_id=ctx.job.job_id):
            result = await asyncio.to_thread(
                _replicator(appliance).replicate,
                appliance.repository(org_id),
                org_id,
                own_region,
                host=host_for(org_id),
                region=target,
                cancel=ctx.cancel,
            )
    except (ResticCancelled, Interrupted):
        raise
    except StrongroomError as error:
        fleet.record_replica(org_id, target, replicated_through=None, snapshots=0, error=str(error))
        await asyncio.to_thread(_lag_alert, ctx, organisation.name, target, str(error))
        raise
    copied = [point.taken_at for point in points if point.snapshot_id in result.originals]
    fleet.record_replica(org_id, target, replicated_through=max(copied, default=None), snapshots=result.snapshots)
    await asyncio.to_thread(_lag_alert, ctx, organisation.name, target, None)
    return JobOutcome(
        JobState.DONE,
        {
            "region": target,
            "created": result.created,
            "snapshots": result.snapshots,
            "points_copied": len(copied),
            "seconds": result.seconds,
        },
    )


def _lag_alert(ctx: JobContext, name: str, region: str, error: str | None) -> None:
    if ctx.alerter is None:
        return
    lag = ctx.fleet.replication_lag(ctx.org_id, region, time.time())
    if lag > 0 and lag >= ctx.alerter.settings.replication_lag_hours * 3600:
        ctx.alerter.send(alerts.replication_lag(ctx.org_id, name, region, lag / 3600, error))


def _replica_if_any(appliance: Appliance, org_id: str) -> tuple[str, Repository] | None:
    organisation = appliance.state.orgs.get(org_id)
    region = effective_region(organisation, appliance.settings)
    if region is None or region not in appliance.settings.regions:
        return None
    replica = _replicator(appliance).replica(org_id, region, region)
    return (region, replica) if replica.exists() else None


async def _retention(ctx: JobContext) -> JobOutcome:
    appliance = ctx.appliance
    org_id = ctx.org_id
    policy = appliance.settings.retention
    organisation = appliance.state.orgs.get(org_id)
    disconnected = organisation.status.value == "disconnected"
    if ctx.job.params.get("dry_run"):
        # A prediction from the points table with restic's own algorithm; restic is not touched.
        points = appliance.state.points.list(org_id)
        keep = retention_rules.predict_kept(
            [datetime.fromtimestamp(p.taken_at, UTC) for p in points], policy, disconnected=disconnected
        )
        kept = [points[i].snapshot_id for i in keep]
        removed = [p.snapshot_id for i, p in enumerate(points) if i not in set(keep)]
        return JobOutcome(JobState.DONE, {"dry_run": True, "kept": kept, "removed": removed})
    ctx.report({"phase": "forget"})

    def apply() -> dict[str, Any]:
        with appliance.state.locks.hold(org_id, purpose=RETENTION, job_id=ctx.job.job_id):
            primary = appliance.repository(org_id)
            decided = primary.forget(policy, host=host_for(org_id), disconnected=disconnected)
            appliance.state.points.remove(org_id, decided.removed)
            if ctx.cancel.is_set():
                raise _Stopped("stopped before prune")
            primary.prune()
            summary: dict[str, Any] = {"kept": decided.kept, "removed": decided.removed, "replicas": {}}
            replica = _replica_if_any(appliance, org_id)
            if replica is not None:
                region, repository = replica
                if appliance.settings.regions[region].append_only:
                    summary["replicas"][region] = "skipped: append-only"
                else:
                    forgotten = repository.forget(policy, host=host_for(org_id), disconnected=disconnected)
                    repository.prune()
                    summary["replicas"][region] = {"removed": len(forgotten.removed)}
            Fleet(appliance.state.db).record_maintenance(org_id, "local", RETENTION, ok=True)
            return summary

    return JobOutcome(JobState.DONE, await asyncio.to_thread(apply))


async def _check(ctx: JobContext) -> JobOutcome:
    appliance = ctx.appliance
    org_id = ctx.org_id
    organisation = appliance.state.orgs.get(org_id)
    subset = ctx.job.params.get("read_data_subset", appliance.settings.schedule.check_read_data_subset)
    ctx.report({"phase": "check"})

    def run() -> dict[str, Any]:
        results: dict[str, Any] = {}
        fleet = Fleet(appliance.state.db)
        with appliance.state.locks.hold(org_id, purpose=CHECK, job_id=ctx.job.job_id):
            targets: list[tuple[str, Repository]] = [("local", appliance.repository(org_id))]
            replica = _replica_if_any(appliance, org_id)
            if replica is not None:
                targets.append(replica)
            for region, repository in targets:
                try:
                    repository.check(read_data_subset=subset)
                except (ResticCancelled, Interrupted):
                    raise
                except StrongroomError as error:
                    fleet.record_maintenance(org_id, region, CHECK, ok=False, error=str(error))
                    results[region] = {"ok": False, "error": str(error)}
                    if ctx.alerter is not None:
                        ctx.alerter.send(alerts.check_failed(org_id, organisation.name, region, str(error)))
                    continue
                fleet.record_maintenance(org_id, region, CHECK, ok=True)
                results[region] = {"ok": True}
        return results

    results = await asyncio.to_thread(run)
    failed = [region for region, entry in results.items() if not entry["ok"]]
    if failed:
        return JobOutcome(JobState.FAILED, results, error=f"check failed in {', '.join(failed)}")
    return JobOutcome(JobState.DONE, results)


def restore_point_from_replica(
    appliance: Appliance, org_id: str, snapshot_id: str, target: Any, *, region: str | None = None
) -> str:
    """Disaster recovery: restore a primary point from the organisation's replica (the primary may be gone).

    Returns the replica's snapshot id that was restored."""
    organisation = appliance.state.orgs.get(org_id)
    own = effective_region(organisation, appliance.settings)
    replica = _replicator(appliance).replica(org_id, own, region or own or "")
    copy = find_copy(replica, snapshot_id, host=host_for(org_id))
    if copy is None:
        raise NotFound(f"point {snapshot_id[:8]} of organisation {org_id} is not in its replica")
    replica.restore(copy.id, target)
    return copy.id

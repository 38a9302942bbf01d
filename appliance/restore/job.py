"""The restore as a job: the `restore` job kind's handler, and running a restore's job without a daemon.

A restore is long (a large organisation spans days of Xero's limits), so it runs as a job (kind `restore`,
the target organisation as the job's organisation, params `{"restore_id": ...}`) that the daemon executes
and the CLI and the TUI enqueue and watch; with no daemon the CLI runs the same job in-process through the
same `JobRunner.execute`. The handler maps the restore's end onto the job's:

- finished -> done; failed -> failed (the journal keeps what was written);
- paused by Xero's day budget -> the job goes back to the queue, not before the day window resets;
- cancelled by a person (`restore cancel`, `jobs cancel`) -> cancelled; `restore resume` queues it again;
- stopped by the daemon stopping (SIGTERM) or a signal -> the restore is paused at its checkpoint and the
  daemon re-queues the job, so it resumes on the next start.

Progress reports are `{"phase": "restore", "restore_id", "step", "done", "total"}` (one step at a time, in
the plan's order), which `jobs`, `restore status` and the TUI show. It must not print or parse arguments.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from appliance.daemon.jobs import RESTORE, JobContext, JobOutcome, JobRunner, register_handler
from appliance.daemon.lifecycle import stop_signals_raise
from appliance.errors import Interrupted, OrganisationLocked, UsageError
from appliance.restore import usecases
from appliance.service import Appliance
from appliance.store import Job, JobState
from appliance.store.fleet import Fleet

log = logging.getLogger(__name__)

STOPPED_AT_CHECKPOINT = "stopped at a checkpoint; resumable"


async def restore_job(ctx: JobContext) -> JobOutcome:
    """Run (or resume) the restore named by the job's params until it finishes, pauses or is stopped."""
    restore_id = ctx.job.params.get("restore_id")
    if not restore_id:
        raise UsageError("a restore job needs params {'restore_id': ...}")
    appliance = ctx.appliance
    restores = appliance.state.restores
    restore = restores.get(str(restore_id))

    def progress(step: str, done: int, total: int) -> None:
        ctx.report({"phase": "restore", "restore_id": restore.restore_id, "step": step, "done": done, "total": total})

    ctx.report({"phase": "prepare", "restore_id": restore.restore_id, "step": None, "done": 0, "total": 0})
    try:
        outcome = await usecases.run_restore_async(appliance, restore.restore_id, progress=progress, cancel=ctx.cancel)
    except (Interrupted, KeyboardInterrupt, asyncio.CancelledError):
        _stopped(ctx, restore.restore_id)
        raise
    result = outcome.as_dict()
    ctx.report({"phase": "done", "restore_id": restore.restore_id, "status": outcome.status})
    if outcome.status == "cancelled":
        if _person_cancelled(ctx, restore.restore_id):
            return JobOutcome(JobState.CANCELLED, result, error="cancelled; `strongroom restore resume` continues it")
        # The daemon is stopping: the push stopped between batches; the runner re-queues the job.
        restores.update(restore.restore_id, status="paused", error=STOPPED_AT_CHECKPOINT, finished_at=None)
        raise Interrupted(STOPPED_AT_CHECKPOINT)
    if outcome.status == "paused":
        return JobOutcome(JobState.DONE, result, error=outcome.error, requeue_after=outcome.resume_after or 0.0)
    if outcome.status == "failed":
        return JobOutcome(JobState.FAILED, result, error=outcome.error)
    return JobOutcome(JobState.DONE, result)


def _person_cancelled(ctx: JobContext, restore_id: str) -> bool:
    job = ctx.appliance.state.jobs.find(ctx.job.job_id)
    return bool(job and job.cancel_requested) or ctx.appliance.state.restores.get(restore_id).cancel_requested


def _stopped(ctx: JobContext, restore_id: str) -> None:
    """A signal or the daemon's stop interrupted the push mid-way: record where the restore stands."""
    restores = ctx.appliance.state.restores
    try:
        if restores.get(restore_id).status != "running":
            return
        if _person_cancelled(ctx, restore_id):
            restores.update(restore_id, status="cancelled", error="interrupted")
        else:
            restores.update(restore_id, status="paused", error=STOPPED_AT_CHECKPOINT)
    except Exception:  # the job's own end is recorded by the runner; this is bookkeeping only
        log.warning("could not record the stop of restore %s", restore_id[:8], exc_info=True)


register_handler(RESTORE, restore_job)


def run_here(
    appliance: Appliance,
    restore_id: str,
    *,
    on_progress: Callable[[Job, dict[str, Any]], None] | None = None,
) -> Job:
    """No daemon: run the restore's job in this process (claiming the job already queued for it, e.g. one a
    day budget paused or a killed process left, else a new one). SIGTERM and Ctrl-C stop it like the daemon's
    stop does; the journal makes any stop safe."""
    state = appliance.state
    fleet = Fleet(state.db)
    state.jobs.recover_stale()  # a process killed mid-restore left its job "running"
    job = usecases.active_job(appliance, restore_id)
    if job is not None and job.state is JobState.RUNNING:
        raise OrganisationLocked(
            f"restore {restore_id[:8]} is already running (job {job.job_id})", hint="see `strongroom jobs`"
        )
    if job is None:
        job = usecases.enqueue_restore(appliance, restore_id, priority=100)
    claimed = fleet.claim_job(job.job_id)
    if claimed is None:
        raise OrganisationLocked(
            f"the target organisation of restore {restore_id[:8]} already has a running job",
            hint="see `strongroom jobs`",
        )
    runner = JobRunner(appliance, on_progress=on_progress)
    with stop_signals_raise():
        return asyncio.run(runner.execute(claimed, threading.Event()))

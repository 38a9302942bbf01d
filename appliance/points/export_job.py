"""The export as a job: the `export` job kind's handler, and submitting an export (daemon or in-process).

An export of a large organisation reads the point out of restic, indexes it and streams every table to CSV,
so it runs as a job (kind `export`, the point's organisation as the job's organisation) that the daemon
executes and the CLI and the TUI enqueue and watch. Params:

    {"snapshot_id": str, "out": str, "types": [str, ...] | null, "format": "csv" | "xero-import",
     "age_recipient": str | null}

With no daemon, `submit_export` runs the same job in this process through `appliance.daemon.jobs`'s
in-process runner, so both paths are the same code. Progress reports are `{"phase", "done", "total"}` with
the phases of opening a point (`read`, `index`, `search`) and `export`. A cancel stops the export at its next
progress report (each CSV is written under a temporary name, so no half file is left under a final name).

It must not print or parse arguments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.daemon.jobs import EXPORT, JobContext, JobOutcome, register_handler, run_in_process
from appliance.errors import Interrupted, UsageError
from appliance.points.export import FORMATS
from appliance.points.usecases import PointsService
from appliance.service import Appliance
from appliance.store import Job, JobState
from appliance.store.fleet import Fleet

WATCH_INTERVAL = 0.5


def export_params(
    snapshot_id: str,
    out: Path | str,
    *,
    types: list[str] | None = None,
    format: str = "csv",
    age_recipient: str | None = None,
) -> dict[str, Any]:
    """An export job's params (the contract the CLI and the TUI enqueue)."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}", hint=f"one of: {', '.join(FORMATS)}")
    return {
        "snapshot_id": snapshot_id,
        "out": str(Path(out).resolve()),
        "types": list(types) if types else None,
        "format": format,
        "age_recipient": age_recipient,
    }


async def export_job(ctx: JobContext) -> JobOutcome:
    """Export the point named by the job's params; the result is the export's `export.json` summary."""
    params = ctx.job.params
    snapshot_id = params.get("snapshot_id")
    out = params.get("out")
    if not snapshot_id or not out:
        raise UsageError("an export job needs params {'snapshot_id': ..., 'out': ...}")
    service = PointsService(ctx.appliance)

    def progress(phase: str, done: int, total: int) -> None:
        if ctx.cancel.is_set():
            raise Interrupted("export stopped")
        ctx.report({"phase": phase, "done": done, "total": total})

    ctx.report({"phase": "read", "done": 0, "total": 0})
    summary = await asyncio.to_thread(
        service.export,
        ctx.org_id,
        str(snapshot_id),
        Path(str(out)),
        types=params.get("types") or None,
        progress=progress,
        format=str(params.get("format") or "csv"),
        age_recipient=params.get("age_recipient") or None,
    )
    ctx.report({"phase": "done", "done": 1, "total": 1})
    return JobOutcome(JobState.DONE, {"out": str(out), **summary})


register_handler(EXPORT, export_job)


def submit_export(
    appliance: Appliance,
    org_key: str,
    point: str,
    out: Path,
    *,
    types: list[str] | None = None,
    format: str = "csv",
    age_recipient: str | None = None,
    on_progress: Callable[[Job, dict[str, Any]], None] | None = None,
) -> Job:
    """Queue the export for the running daemon and watch it, or run the same job here; returns the job's row."""
    service = PointsService(appliance)
    organisation, backup_point = service.resolve(org_key, point)
    params = export_params(backup_point.snapshot_id, out, types=types, format=format, age_recipient=age_recipient)
    state = appliance.state
    if Fleet(state.db).running_daemon() is None:
        (job,) = run_in_process(appliance, EXPORT, org_id=organisation.org_id, params=params, on_progress=on_progress)
        return job
    job = state.jobs.enqueue(EXPORT, org_id=organisation.org_id, params=params, priority=50)
    while job.state not in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
        time.sleep(WATCH_INTERVAL)
        job = state.jobs.get(job.job_id)
        if on_progress is not None and job.state is JobState.RUNNING and job.progress:
            on_progress(job, job.progress)
    return job

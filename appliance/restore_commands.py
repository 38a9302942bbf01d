"""CLI commands for restoring a backup point into a new Xero organisation: `strongroom restore ...`.

`plan` (a dry run), `run` (plan, record, and run the restore's job), `resume` (run its job again), `status`
(with the job's live progress), `cancel` (the job stops at its next checkpoint), `retry` (queue refused records
again after fixing their cause), `verify` (reports to the cent and the exceptions, Markdown or `--json`) and
`checklist [--tick N]`. `run` and `resume` queue a `restore` job for the daemon and watch it when a daemon
runs, else run the same job in this process (`appliance.restore.job`). Thin: each command calls the restore's
use cases and prints; data (and `--json`) on stdout, progress and diagnostics on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from appliance.errors import Interrupted, PartialFailure, StrongroomError, UsageError
from appliance.restore import usecases
from appliance.restore.push import RunOutcome
from appliance.service import Appliance
from appliance.store import Job, JobState
from appliance.store.fleet import Fleet

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
OrgArgument = Annotated[str, typer.Argument(help="The organisation the point belongs to (id, prefix or name).")]
PointArgument = Annotated[str, typer.Argument(help="The backup point (snapshot id or prefix).")]
TargetOption = Annotated[str, typer.Option("--target", help="The connected, new organisation to restore into.")]
AllowNonEmptyOption = Annotated[bool, typer.Option("--allow-non-empty", help="Accept a target with data.")]
err = Console(stderr=True)
WATCH_INTERVAL = 0.5

restore_app = typer.Typer(help="Restore a backup point into a new Xero organisation.", no_args_is_help=True)


def _appliance(ctx: typer.Context) -> Appliance:
    return Appliance(ctx.obj.settings())


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


def _quiet(ctx: typer.Context) -> bool:
    return bool(getattr(ctx.obj, "quiet", False))


def _run(ctx: typer.Context, appliance: Appliance, restore_id: str, json_output: bool) -> None:
    """Run the restore's job: queued for the daemon and watched when one runs, else in this process."""
    from appliance.restore.job import run_here

    quiet = _quiet(ctx) or json_output
    restore = appliance.state.restores.get(restore_id)
    job: Job | None = None
    shown: dict[str, Any] = {}

    def show(job: Job, progress: dict[str, Any]) -> None:
        line = _progress_line(progress)
        if not quiet and line and line != shown.get("line"):
            err.print(f"job {job.job_id}: {line}", highlight=False)
            shown["line"] = line

    if restore.status != "finished":
        if Fleet(appliance.state.db).running_daemon() is not None:
            job = usecases.enqueue_restore(appliance, restore.restore_id, now=True)
            if not quiet:
                err.print(
                    f"restore {restore.restore_id[:8]} is job {job.job_id} of the running daemon; watching "
                    "(Ctrl-C stops watching, not the restore)",
                    highlight=False,
                )
            job = _watch(appliance, job, show)
        else:
            job = run_here(appliance, restore.restore_id, on_progress=show)
    outcome = usecases.outcome_of(appliance, restore.restore_id)
    _print_outcome(outcome, json_output)
    if outcome.status == "failed":
        raise StrongroomError(f"restore {outcome.restore_id[:8]} failed: {outcome.error}")
    if outcome.status == "cancelled" or (job is not None and job.state is JobState.CANCELLED):
        raise Interrupted(
            f"restore {outcome.restore_id[:8]} cancelled", hint="`strongroom restore resume` continues it"
        )
    if outcome.status != "finished":
        raise PartialFailure(
            f"restore {outcome.restore_id[:8]} {outcome.status}: {outcome.error}",
            hint=f"it resumes by itself when a daemon runs, or `strongroom restore resume {outcome.restore_id[:8]}`",
        )


def _progress_line(progress: dict[str, Any]) -> str:
    phase = progress.get("phase")
    if phase == "restore" and progress.get("total"):
        return f"{progress.get('step')}: {progress.get('done')}/{progress.get('total')}"
    if phase == "paused":
        return f"paused: {progress.get('detail') or ''}".strip()
    return str(phase or "")


def _watch(appliance: Appliance, job: Job, show: Callable[[Job, dict[str, Any]], None]) -> Job:
    """Follow a job the daemon runs until it ends, or goes back to the queue (paused or the daemon stopped)."""
    state = appliance.state
    ran = job.state is JobState.RUNNING
    while True:
        job = state.jobs.get(job.job_id)
        show(job, {**job.progress, "phase": job.state.value} if job.state is not JobState.RUNNING else job.progress)
        if job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            return job
        if job.state is JobState.RUNNING:
            ran = True
        elif ran or (job.not_before is not None and job.not_before > time.time()):
            return job  # back in the queue: paused by the day budget, or the daemon stopped
        time.sleep(WATCH_INTERVAL)


def _print_outcome(outcome: RunOutcome, json_output: bool) -> None:
    if json_output:
        _print_json(outcome.as_dict())
        return
    refused = sum(statuses.get("refused", 0) for statuses in outcome.counts.values())
    done = sum(statuses.get("done", 0) for statuses in outcome.counts.values())
    typer.echo(
        f"restore {outcome.restore_id}: {outcome.status}; {done} written, {refused} refused, {outcome.calls} API calls"
    )


def register(app: typer.Typer) -> None:
    """Add `strongroom restore ...` to the root CLI."""
    app.add_typer(restore_app, name="restore")


@restore_app.command("plan")
def plan_command(
    ctx: typer.Context,
    org: OrgArgument,
    point: PointArgument,
    target: TargetOption,
    allow_non_empty: AllowNonEmptyOption = False,
    json_output: JsonOption = False,
) -> None:
    """Dry run: preflight checks, the ordered steps, calls/days/bytes, and what will not come back."""
    appliance = _appliance(ctx)
    try:
        plan = usecases.plan_restore(appliance, org, point, target, allow_non_empty=allow_non_empty)
    finally:
        appliance.close()
    if json_output:
        _print_json(plan.as_dict())
    else:
        for problem in plan.problems:
            err.print(
                f"[{'red' if problem.severity == 'blocker' else 'yellow'}]{problem.severity}[/]: {problem.message}"
            )
            if problem.hint:
                err.print(f"  hint: {problem.hint}", highlight=False)
        table = Table("step", "records", "calls", "bytes", "what")
        for step in plan.steps:
            table.add_row(step.name, str(step.records), str(step.calls), str(step.bytes), step.description)
        Console().print(table)
        typer.echo(f"about {plan.calls} API calls, {plan.days} day(s) of the target's limit, {plan.bytes:,} bytes")
        typer.echo("not restored through Xero's API:")
        for item in plan.not_restored:
            typer.echo(f"  - {item.item}: {item.reason} [{item.source}]")
    if plan.blocked:
        raise UsageError("the restore would be refused (see the blockers above)")


@restore_app.command("run")
def run_command(
    ctx: typer.Context,
    org: OrgArgument,
    point: PointArgument,
    target: TargetOption,
    allow_non_empty: AllowNonEmptyOption = False,
    json_output: JsonOption = False,
) -> None:
    """Plan (refusing on a blocker), record and run a restore (the daemon's job, or in this process)."""
    appliance = _appliance(ctx)
    try:
        restore = usecases.start_restore(appliance, org, point, target, allow_non_empty=allow_non_empty)
        err.print(f"restore {restore.restore_id} started", highlight=False)
        _run(ctx, appliance, restore.restore_id, json_output)
    finally:
        appliance.close()


@restore_app.command("resume")
def resume_command(
    ctx: typer.Context,
    restore_id: Annotated[str, typer.Argument(help="The restore (id or prefix).")],
    json_output: JsonOption = False,
) -> None:
    """Resume a paused, failed or interrupted restore exactly where it stopped."""
    appliance = _appliance(ctx)
    try:
        _run(ctx, appliance, restore_id, json_output)
    finally:
        appliance.close()


@restore_app.command("status")
def status_command(
    ctx: typer.Context,
    restore_id: Annotated[str | None, typer.Argument(help="One restore; all when left out.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Where a restore is: status, step, counts per step, calls."""
    appliance = _appliance(ctx)
    try:
        if restore_id is None:
            rows = [usecases.status(appliance, r.restore_id) for r in usecases.restores(appliance)]
        else:
            rows = [usecases.status(appliance, restore_id)]
    finally:
        appliance.close()
    if json_output:
        _print_json({"restores": rows})
        return
    table = Table("restore", "status", "step", "done", "refused", "pending", "calls", "job")
    for row in rows:
        counts = row["counts"].values()
        job = row.get("job")
        job_text = f"{job['job_id']} {job['state']} {_progress_line(job['progress'])}".strip() if job else "-"
        table.add_row(
            row["restore_id"][:8],
            row["status"],
            row["step"] or "-",
            str(sum(c.get("done", 0) for c in counts)),
            str(sum(c.get("refused", 0) for c in counts)),
            str(sum(c.get("pending", 0) + c.get("sent", 0) for c in counts)),
            str(row["calls"]),
            job_text,
        )
    Console().print(table)


@restore_app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    restore_id: Annotated[str, typer.Argument(help="The restore (id or prefix).")],
    json_output: JsonOption = False,
) -> None:
    """Stop a restore between batches; what is written stays written."""
    appliance = _appliance(ctx)
    try:
        restore = usecases.cancel_restore(appliance, restore_id)
    finally:
        appliance.close()
    if json_output:
        _print_json({"restore_id": restore.restore_id, "status": restore.status})
    else:
        typer.echo(f"restore {restore.restore_id}: {restore.status} (cancel requested)")


@restore_app.command("retry")
def retry_command(
    ctx: typer.Context,
    restore_id: Annotated[str, typer.Argument(help="The restore (id or prefix).")],
    step: Annotated[str | None, typer.Option("--step", help="Only this step's refused records.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Queue the refused records again (fix their cause first), then `restore resume`."""
    appliance = _appliance(ctx)
    try:
        count = usecases.retry_refused(appliance, restore_id, step)
    finally:
        appliance.close()
    if json_output:
        _print_json({"restore_id": restore_id, "requeued": count})
    else:
        typer.echo(f"{count} refused record(s) queued again; run `strongroom restore resume {restore_id}`")


@restore_app.command("verify")
def verify_command(
    ctx: typer.Context,
    restore_id: Annotated[str, typer.Argument(help="The restore (id or prefix).")],
    json_output: JsonOption = False,
) -> None:
    """Trial balance, P&L and balance sheet of the target vs the point, to the cent; every exception."""
    appliance = _appliance(ctx)
    try:
        report = usecases.verify_restore(appliance, restore_id)
    finally:
        appliance.close()
    if json_output:
        _print_json(report.as_dict())
    else:
        typer.echo(report.markdown(), nl=False)
    if not report.balanced:
        # Exit code 3 (partial): the report is printed; the exit code says it is not a clean match.
        raise PartialFailure(f"restore {report.restore_id[:8]}: the target does not match the point")


@restore_app.command("checklist")
def checklist_command(
    ctx: typer.Context,
    restore_id: Annotated[str, typer.Argument(help="The restore (id or prefix).")],
    tick: Annotated[int | None, typer.Option("--tick", help="Tick manual item N.")] = None,
    untick: Annotated[int | None, typer.Option("--untick", help="Untick manual item N.")] = None,
    json_output: JsonOption = False,
) -> None:
    """The manual and automatic steps of a restore, with their status; `--tick N` records a manual one."""
    appliance = _appliance(ctx)
    try:
        if tick is not None:
            usecases.tick(appliance, restore_id, tick)
        if untick is not None:
            usecases.tick(appliance, restore_id, untick, ticked=False)
        items = usecases.checklist(appliance, restore_id)
    finally:
        appliance.close()
    if json_output:
        _print_json({"restore_id": restore_id, "items": [item.as_dict() for item in items]})
        return
    for item in items:
        mark = {"done": "x", "partial": "~", "running": ">"}.get(item.status, " ")
        detail = f" ({item.detail})" if item.detail else ""
        typer.echo(f"[{mark}] {item.number:2d}. {item.title}{detail}")

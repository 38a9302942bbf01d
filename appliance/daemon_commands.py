"""CLI commands for the daemon and its jobs: `daemon`, `jobs`, `jobs cancel`, `replicate`, `retention`, `check`,
and `orgs set-region`.

Thin like the rest of the CLI. Long work is a job: when a daemon runs (its heartbeat row names a live
process) these commands queue the job and watch it; otherwise they run the same job in this process through
the same code path (`appliance.daemon.jobs.run_in_process`). Data (and `--json`) goes to stdout; progress and
diagnostics to stderr.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from appliance.errors import ExitCode, PartialFailure, StrongroomError, UsageError
from appliance.service import Appliance
from appliance.store import Job, JobState
from appliance.store.fleet import Fleet

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
OrgOption = Annotated[
    list[str] | None, typer.Option("--org", help="Organisation id or name (repeatable; default: all).")
]
err = Console(stderr=True)
WATCH_INTERVAL = 0.5


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "org_id": job.org_id,
        "state": job.state.value,
        "params": job.params,
        "progress": job.progress,
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _targets(appliance: Appliance, keys: list[str] | None) -> list[str]:
    if keys:
        return [appliance.organisation(key).org_id for key in keys]
    return [org.org_id for org in appliance.organisations() if appliance.points(org.org_id)]


def submit(
    appliance: Appliance, kind: str, org_ids: list[str], params: dict[str, Any], *, quiet: bool = False
) -> list[Job]:
    """Queue the jobs for the daemon and watch them, or run them here when no daemon runs."""
    from appliance.alerts import Alerter
    from appliance.daemon.jobs import run_in_process

    state = appliance.state
    fleet = Fleet(state.db)
    if fleet.running_daemon() is not None:
        jobs = [state.jobs.enqueue(kind, org_id=org_id, params=params, priority=50) for org_id in org_ids]
        if not quiet:
            err.print(f"queued {len(jobs)} {kind} job(s) for the running daemon; watching (Ctrl-C stops watching)")
        return _watch(appliance, [job.job_id for job in jobs], quiet=quiet)
    alerter = Alerter(appliance.settings.alerts, fleet)
    finished: list[Job] = []

    def show(job: Job, progress: dict[str, Any]) -> None:
        if not quiet and progress.get("phase") in ("plan", "snapshot", "done", "copy", "forget", "check"):
            err.print(f"job {job.job_id} {job.kind} {job.org_id or ''}: {progress.get('phase')}", highlight=False)

    for org_id in org_ids:
        finished += run_in_process(appliance, kind, org_id=org_id, params=params, alerter=alerter, on_progress=show)
    return finished


def _watch(appliance: Appliance, job_ids: list[int], *, quiet: bool) -> list[Job]:
    state = appliance.state
    seen: dict[int, str] = {}
    while True:
        jobs = [state.jobs.get(job_id) for job_id in job_ids]
        for job in jobs:
            phase = f"{job.state.value} {job.progress.get('phase', '')}".strip()
            if not quiet and seen.get(job.job_id) != phase:
                err.print(f"job {job.job_id} {job.kind} {job.org_id or ''}: {phase}", highlight=False)
            seen[job.job_id] = phase
        if all(job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED) for job in jobs):
            return jobs
        time.sleep(WATCH_INTERVAL)


def _report(jobs: list[Job], json_output: bool) -> None:
    if json_output:
        _print_json({"jobs": [job_dict(job) for job in jobs]})
    else:
        table = Table("job", "kind", "organisation", "state", "result")
        for job in jobs:
            summary = job.error or _summary(job.result)
            table.add_row(str(job.job_id), job.kind, (job.org_id or "-")[:8], job.state.value, summary)
        Console().print(table)
    bad = [job for job in jobs if job.state is not JobState.DONE]
    if not bad:
        return
    if all(job.state is JobState.CANCELLED for job in bad):
        error: StrongroomError = PartialFailure(f"{len(bad)} of {len(jobs)} jobs were cancelled")
        error.exit_code = ExitCode.INTERRUPTED
        raise error
    error = PartialFailure(f"{len(bad)} of {len(jobs)} jobs did not succeed")
    if len(bad) == len(jobs):
        error.exit_code = ExitCode.FAILURE
    raise error


def _summary(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    keys = ("status", "region", "snapshots", "points_copied", "skipped", "removed", "local")
    parts = []
    for key in keys:
        if key in result:
            value = result[key]
            parts.append(f"{key}={len(value) if isinstance(value, list) else value}")
    return " ".join(parts)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI."""

    @app.command()
    def daemon(ctx: typer.Context) -> None:
        """Run the fleet daemon (what systemd starts): schedules backups and runs every queued job."""
        from appliance import settings as settings_module
        from appliance.daemon.service import serve

        config = ctx.obj.config

        def reload_settings() -> settings_module.Settings:
            return settings_module.load(settings_module.config_path(config))

        code = serve(ctx.obj.settings(), reload_settings=reload_settings)
        if code:
            raise typer.Exit(code)

    jobs_app = typer.Typer(help="Jobs queued, running and finished.", invoke_without_command=True)
    app.add_typer(jobs_app, name="jobs")

    @jobs_app.callback()
    def jobs(
        ctx: typer.Context,
        json_output: JsonOption = False,
        state: Annotated[str | None, typer.Option(help="Only jobs in this state (queued, running...).")] = None,
        limit: Annotated[int, typer.Option(help="Newest this many.")] = 50,
    ) -> None:
        """List jobs, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        appliance = Appliance(ctx.obj.settings())
        wanted = JobState(state) if state else None
        rows = appliance.state.jobs.list(state=wanted, limit=1_000_000)[-limit:][::-1]
        daemon_row = Fleet(appliance.state.db).running_daemon()
        if json_output:
            _print_json(
                {
                    "daemon": {"pid": daemon_row.owner_pid, "status": daemon_row.status} if daemon_row else None,
                    "jobs": [job_dict(job) for job in rows],
                }
            )
            return
        if not ctx.obj.quiet:
            err.print(
                f"daemon: running (pid {daemon_row.owner_pid}): {daemon_row.status}"
                if daemon_row
                else "daemon: not running",
                highlight=False,
            )
        table = Table("job", "kind", "organisation", "state", "created", "progress / result")
        for job in rows:
            detail = job.error or (job.progress.get("phase") if job.state is JobState.RUNNING else _summary(job.result))
            table.add_row(
                str(job.job_id), job.kind, (job.org_id or "-")[:8], job.state.value, _when(job.created_at), detail or ""
            )
        Console().print(table)

    @jobs_app.command("cancel")
    def jobs_cancel(
        ctx: typer.Context,
        job_id: Annotated[int, typer.Argument(help="The job's number.")],
        json_output: JsonOption = False,
    ) -> None:
        """Cancel a queued job, or ask a running one to stop (restic is interrupted cleanly)."""
        appliance = Appliance(ctx.obj.settings())
        job = appliance.state.jobs.request_cancel(job_id)
        if json_output:
            _print_json(job_dict(job))
        elif job.state is JobState.RUNNING:
            typer.echo(f"job {job_id}: cancel requested; it stops at its next checkpoint")
        else:
            typer.echo(f"job {job_id}: {job.state.value}")

    @app.command()
    def replicate(ctx: typer.Context, org: OrgOption = None, json_output: JsonOption = False) -> None:
        """Copy backup points to each organisation's offsite region."""
        appliance = Appliance(ctx.obj.settings())
        targets = _targets(appliance, org)
        _report(submit(appliance, "replicate", targets, {}, quiet=ctx.obj.quiet or json_output), json_output)

    @app.command()
    def retention(
        ctx: typer.Context,
        org: OrgOption = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; change nothing.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Apply the retention policy: forget old points, then prune (primary and non-append-only replicas)."""
        appliance = Appliance(ctx.obj.settings())
        targets = _targets(appliance, org)
        params = {"dry_run": True} if dry_run else {}
        _report(submit(appliance, "retention", targets, params, quiet=ctx.obj.quiet or json_output), json_output)

    @app.command()
    def check(
        ctx: typer.Context,
        org: OrgOption = None,
        read_data_subset: Annotated[
            str | None, typer.Option("--read-data-subset", help="Also read back this share of the data (5%, 1/10).")
        ] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Verify each organisation's repositories (`restic check`), primary and replica."""
        appliance = Appliance(ctx.obj.settings())
        targets = _targets(appliance, org)
        params = {"read_data_subset": read_data_subset} if read_data_subset else {}
        _report(submit(appliance, "check", targets, params, quiet=ctx.obj.quiet or json_output), json_output)

    _orgs_group(app)


def _orgs_group(app: typer.Typer) -> None:
    """Add `strongroom orgs set-region ORG REGION` to the `orgs` group (commands.py; `strongroom orgs` lists)."""
    orgs_app = next((info.typer_instance for info in app.registered_groups if info.name == "orgs"), None)
    if orgs_app is None:
        raise RuntimeError("register appliance.commands (the `orgs` group) before appliance.daemon_commands")

    @orgs_app.command("set-region")
    def set_region(
        ctx: typer.Context,
        org: Annotated[str, typer.Argument(help="Organisation id or name.")],
        region: Annotated[str, typer.Argument(help="A region named in the settings (regions.NAME), or 'none'.")],
        force: Annotated[
            bool, typer.Option("--force", help="Change it even though points were already copied elsewhere.")
        ] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Set the region an organisation's offsite copies must live in."""
        appliance = Appliance(ctx.obj.settings())
        organisation = appliance.organisation(org)
        new_region = None if region.lower() == "none" else region
        if new_region is not None and new_region not in appliance.settings.regions:
            known = ", ".join(sorted(appliance.settings.regions)) or "none configured"
            raise UsageError(f"no region named {region!r} (known: {known})", hint="add [regions.NAME] to the settings")
        copied = [r.region for r in Fleet(appliance.state.db).replicas(organisation.org_id) if r.snapshots]
        elsewhere = [r for r in copied if r != new_region]
        if elsewhere and not force:
            raise UsageError(
                f"{organisation.name} already has copies in {', '.join(elsewhere)}",
                hint="those copies stay where they are; pass --force to change the region anyway",
            )
        updated = appliance.state.orgs.update_details(organisation.org_id, region=new_region)
        if json_output:
            _print_json({"org_id": updated.org_id, "name": updated.name, "region": updated.region})
        else:
            typer.echo(f"{updated.name}: region {updated.region or 'none'}")

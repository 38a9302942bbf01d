"""`strongroom status` (the fleet at a glance) and `strongroom doctor` (can this installation do its job?)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from appliance.doctor import run_checks
from appliance.errors import StrongroomError
from appliance.fleet import FleetService, FleetTotals
from appliance.service import Appliance

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
err = Console(stderr=True)
DAY = 86_400.0


class DoctorFailed(StrongroomError):
    """At least one check failed."""


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI."""

    @app.command()
    def status(
        ctx: typer.Context,
        all_rows: Annotated[bool, typer.Option("--all", help="List healthy organisations too.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """The fleet: last good point per organisation, failures, findings, budgets spent, replication lag."""
        appliance = Appliance(ctx.obj.settings())
        try:
            service = FleetService(appliance)
            rows = service.status()
            totals = FleetTotals.of(rows)
            daemon = service.daemon_running()
            calls = appliance.state.runs.calls_since(time.time() - DAY)
        finally:
            appliance.close()
        now = time.time()
        if json_output:
            _print_json(
                {
                    "daemon_running": daemon,
                    "totals": totals.__dict__,
                    "calls_last_24h": sum(calls.values()),
                    "organisations": [
                        {
                            "org_id": row.org_id,
                            "name": row.name,
                            "health": row.health.value,
                            "last_point_at": row.last_point_at,
                            "last_point_id": row.last_point_id,
                            "points": row.points,
                            "next_due_at": row.next_due_at,
                            "failures": row.failures,
                            "last_error": row.last_error,
                            "findings": row.findings,
                            "region": row.region,
                            "replication_lag_seconds": row.replication_lag,
                            "calls_last_24h": calls.get(row.org_id, 0),
                            "job": row.job_state,
                        }
                        for row in rows
                    ],
                }
            )
            return
        typer.echo(
            f"{totals.organisations} organisations: {totals.healthy} healthy, {totals.stale} stale, "
            f"{totals.failing} failing, {totals.needs_consent} need consent; {totals.findings} open finding(s); "
            f"{sum(calls.values()):,} Xero calls in 24 h; daemon {'running' if daemon else 'not running'}"
        )
        shown = rows if all_rows else [row for row in rows if row.health.value != "healthy" or row.findings]
        if not shown:
            return
        table = Table("organisation", "health", "last point", "failures", "findings", "region", "lag", "calls 24h")
        for row in shown:
            table.add_row(
                row.name,
                row.health.value,
                _age(row.age(now)),
                str(row.failures),
                str(row.findings),
                row.region or "-",
                _age(row.replication_lag) if row.replication_lag is not None else "-",
                str(calls.get(row.org_id, 0)),
            )
        Console().print(table)

    @app.command()
    def doctor(
        ctx: typer.Context,
        offline: Annotated[bool, typer.Option("--offline", help="Skip the checks that reach Xero.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Check restic, repositories, keys and permissions, settings, clock, Xero reachability and disk space."""
        appliance = Appliance(ctx.obj.settings())
        try:
            if sys.stderr.isatty() and not json_output:
                with Progress(TextColumn("repositories"), BarColumn(), MofNCompleteColumn(), console=err) as bar:
                    task = bar.add_task("repositories", total=None)
                    checks = run_checks(
                        appliance, network=not offline, progress=lambda d, t: bar.update(task, completed=d, total=t)
                    )
            else:
                checks = run_checks(appliance, network=not offline)
        finally:
            appliance.close()
        failed = [check for check in checks if check.level == "fail"]
        if json_output:
            _print_json({"ok": not failed, "checks": [check.as_dict() for check in checks]})
        else:
            colours = {"ok": "green", "warn": "yellow", "fail": "red"}
            for check in checks:
                Console().print(f"[{colours[check.level]}]{check.level:>4}[/] {check.name}: {check.detail}")
        if failed:
            raise DoctorFailed(f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}")

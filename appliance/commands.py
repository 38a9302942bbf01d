"""CLI commands for connecting and backing up: `init`, `connect`, `orgs`, `backup`, `points`.

Thin like the rest of the CLI: each command parses, calls `appliance.service.Appliance`, and prints.
Data (and `--json`) goes to stdout; instructions, progress and diagnostics go to stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from appliance.backup.run import BackupOutcome
from appliance.backup.run import Progress as BackupProgress
from appliance.errors import ExitCode, PartialFailure, UsageError, XeroUnavailable
from appliance.service import Appliance
from appliance.xero.oauth import CallbackReceiver, parse_redirect, ssh_forward_hint

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
err = Console(stderr=True)


def _appliance(ctx: typer.Context) -> Appliance:
    return Appliance(ctx.obj.settings())


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI."""

    @app.command()
    def init(ctx: typer.Context, json_output: JsonOption = False) -> None:
        """Create the data directory, the encryption key and the state database (safe to run again)."""
        settings = ctx.obj.settings()
        appliance = Appliance.initialise(settings)
        appliance.close()
        if json_output:
            _print_json({"data_dir": str(settings.data_dir), "key": str(settings.data_dir / "keys")})
        else:
            typer.echo(f"initialised {settings.data_dir}")

    @app.command()
    def connect(
        ctx: typer.Context,
        app_name: Annotated[str | None, typer.Option("--app", help="Which configured Xero app.")] = None,
        paste: Annotated[
            bool, typer.Option("--paste", help="Paste the redirect URL instead of listening for it.")
        ] = False,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for consent.")] = 900.0,
        json_output: JsonOption = False,
    ) -> None:
        """Connect Xero organisations: consent in a browser, then every organisation it covers is registered."""
        appliance = _appliance(ctx)
        app, pending = appliance.begin_connect(app_name)
        err.print("Open this address in a browser and choose the organisations to back up:\n")
        err.print(pending.url, soft_wrap=True, highlight=False)
        if paste:
            err.print("\nAfter consenting, the browser goes to a page that may not load. Paste its address here:")
            line = sys.stdin.readline()
            if not line.strip():
                raise UsageError("no redirect URL was pasted")
            code = parse_redirect(line, pending.state)
        else:
            port = urlsplit(app.redirect_uri).port or 80
            path = urlsplit(app.redirect_uri).path or "/callback"
            err.print(
                f"\nWaiting on 127.0.0.1:{port} for the redirect. Over SSH, forward the port first:\n"
                f"  {ssh_forward_hint(port)}\n(or run `strongroom connect --paste`)"
            )

            async def wait() -> str:
                async with CallbackReceiver(port, path=path) as receiver:
                    return await receiver.wait(pending.state, timeout)

            code = asyncio.run(wait())
        organisations = asyncio.run(appliance.complete_connect(app, pending, code, state=pending.state))
        if json_output:
            _print_json({"organisations": [{"org_id": o.org_id, "name": o.name} for o in organisations]})
        else:
            for org in organisations:
                typer.echo(f"connected {org.name} ({org.org_id})")

    # A group: `strongroom orgs` lists; subcommands (`orgs set-region`, daemon_commands) change organisations.
    orgs_app = typer.Typer(help="Connected organisations.", invoke_without_command=True)
    app.add_typer(orgs_app, name="orgs")

    @orgs_app.callback()
    def orgs(ctx: typer.Context, json_output: JsonOption = False) -> None:
        """List connected organisations with their last backup point (subcommands change them)."""
        if ctx.invoked_subcommand is not None:
            return
        appliance = _appliance(ctx)
        rows: list[dict[str, Any]] = []
        for org in appliance.organisations():
            points = appliance.points(org.org_id)
            last = points[-1] if points else None
            rows.append(
                {
                    "org_id": org.org_id,
                    "name": org.name,
                    "status": org.status.value,
                    "country": org.country,
                    "base_currency": org.base_currency,
                    "region": org.region,
                    "points": len(points),
                    "last_point": last.snapshot_id if last else None,
                    "last_point_at": last.taken_at if last else None,
                }
            )
        if json_output:
            _print_json({"organisations": rows})
            return
        table = Table("name", "id", "status", "country", "points", "last point")
        for row in rows:
            table.add_row(
                row["name"],
                row["org_id"][:8],
                row["status"],
                row["country"] or "-",
                str(row["points"]),
                _when(row["last_point_at"]),
            )
        Console().print(table)

    @app.command()
    def backup(
        ctx: typer.Context,
        org: Annotated[list[str] | None, typer.Option("--org", help="Organisation id or name (repeatable).")] = None,
        all_orgs: Annotated[bool, typer.Option("--all", help="Every active organisation.")] = False,
        full: Annotated[bool, typer.Option("--full", help="Read everything, not only changes.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Back up organisations now (in this process)."""
        if not org and not all_orgs:
            raise UsageError("say which organisations: --org ID (repeatable) or --all")
        appliance = _appliance(ctx)
        org_ids = None if all_orgs else [appliance.organisation(key).org_id for key in org or []]
        with _progress(not json_output and not ctx.obj.quiet) as on_progress:
            outcomes = asyncio.run(appliance.backup(org_ids, full=full, progress=on_progress))
        _report(outcomes, json_output)

    @app.command()
    def points(ctx: typer.Context, org: Annotated[str, typer.Argument(help="Organisation id or name.")],
               json_output: JsonOption = False) -> None:  # fmt: skip
        """List an organisation's backup points, oldest first."""
        appliance = _appliance(ctx)
        organisation = appliance.organisation(org)
        rows: list[dict[str, Any]] = [
            {
                "snapshot_id": p.snapshot_id,
                "taken_at": p.taken_at,
                "mode": p.mode,
                "run_id": p.run_id,
                "size_bytes": p.size_bytes,
                "summary": p.summary,
            }
            for p in appliance.points(organisation.org_id)
        ]
        if json_output:
            _print_json({"org_id": organisation.org_id, "name": organisation.name, "points": rows})
            return
        table = Table("point", "taken", "mode", "records", "API calls", "added to repo")
        for row in rows:
            summary = row["summary"] or {}
            records = sum(v or 0 for v in (summary.get("records") or {}).values())
            table.add_row(
                row["snapshot_id"][:8],
                _when(row["taken_at"]),
                row["mode"],
                f"{records:,}",
                str(summary.get("calls", "-")),
                f"{(summary.get('data_added') or 0) / 1024:,.0f} KiB",
            )
        Console().print(table)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """Rich progress bars on a terminal; nothing otherwise (stdout stays data)."""
    if not enabled or not err.is_terminal:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def on_progress(event: BackupProgress) -> None:
        task = tasks.get(event.org_id)
        if task is None:
            task = tasks[event.org_id] = bars.add_task(event.org_id[:8], total=None, detail="")
        detail = event.endpoint or event.phase
        bars.update(
            task,
            total=event.total_endpoints or None,
            completed=event.done_endpoints,
            detail=f"{detail} {event.records:,} records" if event.records else detail,
        )

    with bars:
        yield on_progress


def _report(outcomes: list[BackupOutcome], json_output: bool) -> None:
    failed = [o for o in outcomes if o.status not in ("succeeded", "paused")]
    if json_output:
        _print_json({"outcomes": [o.as_dict() for o in outcomes]})
    else:
        table = Table("organisation", "status", "mode", "records", "calls", "downloaded", "point", "note")
        for o in outcomes:
            table.add_row(
                o.name,
                o.status,
                o.mode or "-",
                f"{o.records:,}",
                str(o.calls),
                f"{o.bytes_downloaded / 1024:,.0f} KiB",
                (o.snapshot_id or "-")[:8],
                o.error or "; ".join(o.warnings[:1]),
            )
        Console().print(table)
    if failed and len(failed) == len(outcomes):
        if all(o.status == "needs_consent" for o in failed):
            raise XeroUnavailable("consent expired", hint="run `strongroom connect` again")
        error = PartialFailure(f"{len(failed)} of {len(outcomes)} backups failed")
        error.exit_code = ExitCode.FAILURE
        raise error
    if failed:
        raise PartialFailure(f"{len(failed)} of {len(outcomes)} backups failed")

"""CLI commands over backup points: `show`, `diff`, `export`, `findings`.

Thin: parse, call `appliance.points.usecases.PointsService`, print. Data (and `--json`, with a
`schema_version`) goes to stdout; progress (on a TTY only) and diagnostics go to stderr. POINT is a snapshot
id prefix, `latest`, or `latest~N`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from appliance.errors import Interrupted, StrongroomError, UsageError
from appliance.points.index import ProgressCallback
from appliance.points.queries import VIEWS, Filters, Table
from appliance.points.usecases import PointsService
from appliance.service import Appliance

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
OrgArgument = Annotated[str, typer.Argument(help="Organisation id, id prefix or name.")]
PointArgument = Annotated[str, typer.Argument(help="Snapshot id prefix, `latest` or `latest~N`.")]
err = Console(stderr=True)
_PHASES = {
    "read": "reading the point from restic",
    "index": "indexing",
    "search": "search index",
    "export": "exporting",
}


def _service(ctx: typer.Context) -> PointsService:
    return PointsService(Appliance(ctx.obj.settings()))


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


@contextmanager
def _progress(ctx: typer.Context) -> Iterator[ProgressCallback | None]:
    """A rich progress display on stderr when it is a terminal and output is not quiet; else no callback."""
    if ctx.obj.quiet or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[figure]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as display:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = display.add_task(_PHASES.get(phase, phase), total=total or None, figure="")
            display.update(tasks[phase], completed=done, total=total or None, figure=f"{done:,}" if done else "")

        yield update


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be a date like 2026-03-31, not {value!r}") from None


def _print_table(table: Table) -> None:
    output = RichTable(*table.columns, title=table.title)
    for row in table.rows:
        output.add_row(*("" if value is None else str(value) for value in row))
    if table.totals:
        output.add_row(*("total" if i == 0 else table.totals.get(c, "") for i, c in enumerate(table.columns)))
    Console().print(output)
    for note in table.notes:
        err.print(note)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI."""

    @app.command()
    def show(
        ctx: typer.Context,
        org: OrgArgument,
        point: PointArgument,
        view: Annotated[str, typer.Argument(help=f"What to show: {', '.join(VIEWS)}, or an endpoint.")] = "summary",
        date_from: Annotated[str | None, typer.Option("--from", help="From this date (YYYY-MM-DD).")] = None,
        date_to: Annotated[str | None, typer.Option("--to", help="To / as at this date (YYYY-MM-DD).")] = None,
        status: Annotated[str | None, typer.Option(help="Only this status (AUTHORISED, PAID, ...).")] = None,
        contact: Annotated[str | None, typer.Option(help="Contact id or part of its name.")] = None,
        account: Annotated[str | None, typer.Option(help="Account code or id on any line.")] = None,
        amount_min: Annotated[float | None, typer.Option("--min", help="Total at least this.")] = None,
        amount_max: Annotated[float | None, typer.Option("--max", help="Total at most this.")] = None,
        text: Annotated[str | None, typer.Option(help="Full-text search.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 200,
        record: Annotated[str | None, typer.Option(help="Show one record in full (id, id prefix or number).")] = None,
        attachment: Annotated[str | None, typer.Option(help="With --record: extract this attachment.")] = None,
        out: Annotated[Path | None, typer.Option(help="With --attachment: file or directory to write.")] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Show what a backup point holds: a summary, the books (recomputed and as Xero reported), documents."""
        service = _service(ctx)
        if record is not None:
            endpoint = None if view == "summary" else view
            if attachment is not None:
                written = service.extract_attachment(
                    org, point, record, attachment, out or Path.cwd(), endpoint=endpoint
                )
                err.print(f"wrote {written}")
                if json_output:
                    _print_json({"file": str(written)})
                return
            with _progress(ctx) as progress:
                if progress is not None and not service.is_cached(org, point):
                    service.open(org, point, progress=progress).close()
            found = service.record(org, point, record, endpoint=endpoint)
            if json_output:
                _print_json(found)
            else:
                sys.stdout.write(
                    json.dumps({k: v for k, v in found.items() if k != "raw"}, indent=1, default=str) + "\n"
                )
            return
        filters = Filters(
            date_from=_day(date_from, "--from"),
            date_to=_day(date_to, "--to"),
            status=status,
            contact=contact,
            account=account,
            amount_min=amount_min,
            amount_max=amount_max,
            text=text,
            limit=limit or None,
        )
        with _progress(ctx) as progress:
            table = service.show(org, point, view, filters, progress=progress)
        if json_output:
            _print_json({"view": view, **table.as_dict()})
        else:
            _print_table(table)

    @app.command()
    def diff(
        ctx: typer.Context,
        org: OrgArgument,
        point_a: PointArgument,
        point_b: PointArgument,
        types: Annotated[
            list[str] | None, typer.Option("--type", help="Only this endpoint, with field changes.")
        ] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Compare two points of one organisation: records added, removed and changed, and the books."""
        service = _service(ctx)
        with _progress(ctx) as progress:
            result = service.diff(org, point_a, point_b, types=types, progress=progress)
        data = result.as_dict()
        if json_output:
            _print_json(data)
            return
        table = RichTable("type", "added", "removed", "changed", "unchanged", title=f"{point_a} -> {point_b}")
        for entry in result.endpoints:
            if not entry.empty:
                table.add_row(
                    entry.endpoint,
                    str(len(entry.added)),
                    str(len(entry.removed)),
                    str(len(entry.changed)),
                    str(entry.unchanged),
                )
        Console().print(table)
        for entry in result.endpoints:
            for record_id, changes in list(entry.details.items())[:20]:
                typer.echo(f"{entry.endpoint} {record_id}:")
                for change in changes[:30]:
                    typer.echo(f"  {change.path}: {change.before!r} -> {change.after!r}")
        books = [d for d in result.trial_balance if d.difference]
        if books:
            side = RichTable("account", "before", "after", "difference", title=f"Trial balance as at {result.as_at}")
            for d in books:
                side.add_row(
                    d.label, f"{(d.theirs or 0) / 100:.2f}", f"{d.ours / 100:.2f}", f"{d.difference / 100:.2f}"
                )
            Console().print(side)
        else:
            err.print(f"trial balance as at {result.as_at}: no account changed")

    @app.command()
    def export(
        ctx: typer.Context,
        org: OrgArgument,
        point: PointArgument,
        out: Annotated[Path, typer.Option("--out", help="Directory to write (or a .csv file with --view).")],
        view: Annotated[str | None, typer.Option(help="Export one query result instead of the whole point.")] = None,
        types: Annotated[list[str] | None, typer.Option("--type", help="Only these endpoints.")] = None,
        export_format: Annotated[
            str, typer.Option("--format", help="csv, or xero-import (Xero's import templates).")
        ] = "csv",
        age_recipient: Annotated[
            str | None, typer.Option("--age-recipient", help="Encrypt the export to this age key (one archive).")
        ] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Export a point as CSV files: one per endpoint, line items, attachments list, reports, export.json.

        A whole-point export is an `export` job: the running daemon's, watched here, or run in this process."""
        service = _service(ctx)
        with _progress(ctx) as progress:
            if view is not None:
                summary = service.export(org, point, out, view=view, types=types, progress=progress)
            else:
                summary = _export_job(service, org, point, out, types, export_format, age_recipient, progress)
        if json_output:
            _print_json(summary)
            return
        files = summary.get("files") or {summary.get("file", str(out)): summary}
        for name, figures in files.items():
            typer.echo(f"{name}: {figures['rows']} rows")
        err.print(f"exported to {out}")

    def _export_job(
        service: PointsService,
        org: str,
        point: str,
        out: Path,
        types: list[str] | None,
        export_format: str,
        age_recipient: str | None,
        progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        from appliance.points.export_job import submit_export
        from appliance.store import JobState

        def show(_job: Any, report: dict[str, Any]) -> None:
            if progress is not None and report.get("phase") in _PHASES and report.get("total"):
                progress(str(report["phase"]), int(report.get("done") or 0), int(report["total"]))

        job = submit_export(
            service.appliance,
            org,
            point,
            out,
            types=types,
            format=export_format,
            age_recipient=age_recipient,
            on_progress=show,
        )
        if job.state is not JobState.DONE:
            raise (Interrupted if job.state is JobState.CANCELLED else StrongroomError)(
                f"export job {job.job_id} {job.state.value}: {job.error or ''}".strip()
            )
        return dict(job.result or {})

    @app.command()
    def findings(
        ctx: typer.Context,
        org: Annotated[str | None, typer.Argument(help="Organisation id, id prefix or name (default: all).")] = None,
        acknowledge: Annotated[int | None, typer.Option("--ack", help="Acknowledge this finding id.")] = None,
        open_only: Annotated[bool, typer.Option("--open", help="Hide acknowledged findings.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Damage findings from comparing each new backup point with the previous one."""
        service = _service(ctx)
        if acknowledge is not None:
            found = service.acknowledge(acknowledge, by="cli")
            err.print(f"acknowledged finding {found.finding_id}")
            return
        stored = service.findings(org, include_acknowledged=not open_only)
        if json_output:
            _print_json({"findings": [asdict(f) for f in stored]})
            return
        table = RichTable("id", "when", "org", "severity", "rule", "summary", "last clean point", "ack")
        for f in stored:
            when = datetime.fromtimestamp(f.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(
                str(f.finding_id),
                when,
                f.org_id[:8],
                f.severity,
                f.rule,
                f.summary,
                (f.last_clean_point or "")[:8],
                "yes" if f.acknowledged_at else "",
            )
        Console().print(table)

"""The fleet dashboard: every organisation's health at a glance, type to filter, keys to act.

State lives here (the rows, the filter, the sort); the data comes from `Backend.fleet_status()` on a worker
thread and arrives as a `FleetLoaded` message. Filtering and sorting are in memory over plain dataclasses,
and the table draws only the visible rows, so 5,000 organisations filter as fast as you type.

It must not query the state database itself or block the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Input, Static

from appliance.fleet import HEALTH_ORDER, FleetTotals, JobInfo, OrgHealth
from appliance.models import OrgStatus
from tui import format as fmt
from tui.backend import Dispatch
from tui.screens.base import BaseScreen
from tui.widgets.table import Column, Row, RowTable

REFRESH_SECONDS = 10.0

COLUMNS = (
    Column("name", "Organisation", None, min_width=20),
    Column("health", "Health", 15),
    Column("last", "Last point", 10, "right"),
    Column("next", "Next", 9, "right"),
    Column("points", "Points", 6, "right"),
    Column("failures", "Fails", 5, "right"),
    Column("findings", "Findings", 8, "right"),
    Column("lag", "Lag", 5, "right"),
    Column("region", "Region", 8),
    Column("consent", "Consent", 12),
)
SORT_CYCLE = ("name", "health", "last", "next", "failures", "findings", "region")


SORT_KEYS: dict[str, Callable[[OrgHealth], Any]] = {
    "name": lambda o: (o.name.casefold(), o.org_id),
    "health": lambda o: (HEALTH_ORDER[o.health], o.name.casefold()),
    # Oldest (or never) backed up first: the ones that need attention.
    "last": lambda o: (-(o.last_point_at or 0.0), o.name.casefold()),
    "next": lambda o: (o.next_due_at if o.next_due_at is not None else float("inf"), o.name.casefold()),
    "points": lambda o: (o.points, o.name.casefold()),
    "failures": lambda o: (-o.failures, o.name.casefold()),
    "findings": lambda o: (-o.findings, o.name.casefold()),
    "lag": lambda o: (-(o.replication_lag or 0.0), o.name.casefold()),
    "region": lambda o: ((o.region or "~").casefold(), o.name.casefold()),
    "consent": lambda o: (o.status.value, o.name.casefold()),
}
CONSENT_LABEL = {
    OrgStatus.ACTIVE: Text("connected", style="green"),
    OrgStatus.NEEDS_CONSENT: Text("reconnect", style="bold magenta"),
    OrgStatus.DISCONNECTED: Text("disconnected", style="dim"),
}


def searchable(org: OrgHealth) -> str:
    """What a filter matches: name, id, region, country and health (`consent` finds those needing it)."""
    words = (org.name, org.org_id, org.region or "", org.country or "", fmt.HEALTH_LABEL[org.health])
    return " ".join(words).casefold() + (" consent" if org.status is not OrgStatus.ACTIVE else "")


def describe_progress(progress: dict[str, Any], names: dict[str, OrgHealth]) -> str:
    """One status line from a backup job's progress report (`appliance.backup.run.Progress` as a dict)."""
    org_id = str(progress.get("org_id") or "")
    name = names[org_id].name if org_id in names else org_id
    done, total = progress.get("done_endpoints") or 0, progress.get("total_endpoints") or 0
    step = f" {done}/{total}" if total else ""
    return f"Backing up {name}: {progress.get('phase', '')} {progress.get('endpoint') or ''}{step}".rstrip()


class FilterInput(Input):
    """The search box; `?` is left to the help binding (organisation names do not need it)."""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character != "?" and super().check_consume_key(key, character)


class FleetScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark,f1", "app.help", "Help", priority=True),
        Binding("up", "cursor('up')", "Up", show=False),
        Binding("down", "cursor('down')", "Down", show=False),
        Binding("pageup", "cursor('page_up')", "Page up", show=False),
        Binding("pagedown", "cursor('page_down')", "Page down", show=False),
        Binding("enter", "open", "Open"),
        Binding("ctrl+b", "backup", "Back up now"),
        Binding("ctrl+n", "connect", "Connect"),
        Binding("ctrl+s", "sort", "Sort"),
        Binding("ctrl+r", "reverse", "Reverse", show=False),
        Binding("f5", "refresh", "Refresh"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class FleetLoaded(Message):
        def __init__(self, rows: list[OrgHealth]) -> None:
            super().__init__()
            self.rows = rows

    class BackupProgress(Message):
        def __init__(self, progress: dict[str, Any]) -> None:
            super().__init__()
            self.progress = progress

    class BackupFinished(Message):
        def __init__(self, dispatch: Dispatch) -> None:
            super().__init__()
            self.dispatch = dispatch

    def __init__(self) -> None:
        super().__init__()
        self.organisations: list[OrgHealth] = []
        self.by_id: dict[str, OrgHealth] = {}
        self.shown: list[OrgHealth] = []
        self.filter_text = ""
        self.sort_by = "name"
        self.sort_reverse = False
        self.loaded = threading.Event()
        self._rows: dict[str, Row] = {}
        self._names: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static("Loading organisations…", id="fleet-totals")
        with Horizontal(id="fleet-search-bar"):
            yield Static("Filter ", id="fleet-search-label")
            yield FilterInput(placeholder="type a name, a region, failing, stale, consent…", id="fleet-search")
        table = RowTable(COLUMNS, id="fleet-table", empty_message="No organisations yet: press ctrl+n to connect.")
        table.sorted_by = self.sort_by
        yield table
        yield Static("", id="fleet-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Fleet"
        self.query_one("#fleet-search", Input).focus()
        self.load()
        self.set_interval(REFRESH_SECONDS, self.load, name="fleet-refresh")

    def on_screen_resume(self) -> None:
        if self.organisations:
            self.load()

    @property
    def table(self) -> RowTable:
        return self.query_one("#fleet-table", RowTable)

    @property
    def selected(self) -> OrgHealth | None:
        key = self.table.cursor_key
        return self.by_id.get(key) if key else None

    # --- loading ---------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="fleet-load", exit_on_error=False, name="Loading the fleet")
    def load(self) -> None:
        self.post_message(self.FleetLoaded(self.backend.fleet_status()))

    def on_fleet_screen_fleet_loaded(self, message: FleetLoaded) -> None:
        now = self.now()
        self.organisations = message.rows
        self.by_id = {org.org_id: org for org in message.rows}
        self._rows = {org.org_id: self._row(org, now) for org in message.rows}
        self._names = {org.org_id: searchable(org) for org in message.rows}
        self.strongroom.fleet_rows = message.rows
        self._show_totals(FleetTotals.of(message.rows))
        self.apply_view()
        self.loaded.set()

    def _row(self, org: OrgHealth, now: float) -> Row:
        return Row(
            org.org_id,
            (
                org.name,
                fmt.health_text(org.health),
                fmt.ago(org.last_point_at, now).removesuffix(" ago"),
                "running" if org.job_state == "running" else fmt.until(org.next_due_at, now),
                str(org.points),
                Text(str(org.failures), style="bold red") if org.failures else "0",
                Text(str(org.findings), style="bold yellow") if org.findings else "0",
                fmt.duration(org.replication_lag) if org.replication_lag is not None else "-",
                org.region or "-",
                CONSENT_LABEL[org.status],
            ),
        )

    def _show_totals(self, totals: FleetTotals) -> None:
        text = Text.assemble(
            (f"{totals.organisations:,} organisations  ", "bold"),
            (f"● {totals.healthy:,} healthy  ", "green"),
            (f"◐ {totals.stale:,} stale  ", "yellow"),
            (f"✖ {totals.failing:,} failing  ", "bold red" if totals.failing else "dim"),
            (f"⚠ {totals.needs_consent:,} need consent  ", "magenta" if totals.needs_consent else "dim"),
            (f"{totals.findings:,} open findings", "bold yellow" if totals.findings else "dim"),
        )
        self.query_one("#fleet-totals", Static).update(text)

    # --- filter and sort -------------------------------------------------------------------------------------
    def apply_view(self) -> None:
        terms = self.filter_text.casefold().split()
        if terms:
            rows = [org for org in self.organisations if all(t in self._names[org.org_id] for t in terms)]
        else:
            rows = list(self.organisations)
        if self.sort_by != "name" or self.sort_reverse:
            rows.sort(key=SORT_KEYS[self.sort_by], reverse=self.sort_reverse)
        self.shown = rows
        table = self.table
        table.sorted_by, table.sort_reverse = self.sort_by, self.sort_reverse
        table.empty_message = (
            "No organisation matches the filter (escape clears it)."
            if terms
            else "No organisations yet: press ctrl+n to connect."
        )
        table.set_rows([self._rows[org.org_id] for org in rows])
        label = f"Filter ({len(rows):,} of {len(self.organisations):,}) " if terms else "Filter "
        self.query_one("#fleet-search-label", Static).update(label)

    @on(Input.Changed, "#fleet-search")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.apply_view()

    @on(Input.Submitted, "#fleet-search")
    def search_submitted(self) -> None:
        self.action_open()

    @on(RowTable.Selected, "#fleet-table")
    def row_selected(self, event: RowTable.Selected) -> None:
        self.strongroom.open_organisation(event.key)

    @on(RowTable.HeaderClicked, "#fleet-table")
    def header_clicked(self, event: RowTable.HeaderClicked) -> None:
        if event.column == self.sort_by:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_by, self.sort_reverse = event.column, False
        self.apply_view()

    def action_sort(self) -> None:
        position = SORT_CYCLE.index(self.sort_by) if self.sort_by in SORT_CYCLE else -1
        self.sort_by = SORT_CYCLE[(position + 1) % len(SORT_CYCLE)]
        self.sort_reverse = False
        self.apply_view()
        self.notify(f"sorted by {self.sort_by}", timeout=2)

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.apply_view()

    def action_clear_filter(self) -> None:
        search = self.query_one("#fleet-search", Input)
        search.value = ""
        search.focus()

    def action_cursor(self, direction: str) -> None:
        getattr(self.table, f"action_cursor_{direction}" if direction in ("up", "down") else f"action_{direction}")()

    def action_refresh(self) -> None:
        self.load()

    # --- actions ---------------------------------------------------------------------------------------------
    def action_open(self) -> None:
        org = self.selected
        if org is not None:
            self.strongroom.open_organisation(org.org_id)

    def action_connect(self) -> None:
        self.strongroom.open_connect()

    def action_backup(self) -> None:
        org = self.selected
        if org is None:
            return
        if org.status is not OrgStatus.ACTIVE:
            self.notify(f"{org.name} needs consent first: press ctrl+n to connect it again.", severity="warning")
            return
        self.set_status(f"Backing up {org.name}…")
        self.backup([org.org_id])

    def _progress(self, progress: dict[str, Any]) -> None:
        self.post_message(self.BackupProgress(progress))

    @work(thread=True, group="backup", exit_on_error=False, name="Backup")
    def backup(self, org_ids: list[str]) -> None:
        dispatch = self.backend.backup_now(
            org_ids,
            progress=self._progress,
        )
        self.post_message(self.BackupFinished(dispatch))

    def on_fleet_screen_backup_progress(self, message: BackupProgress) -> None:
        self.set_status(describe_progress(message.progress, self.by_id))

    def on_fleet_screen_backup_finished(self, message: BackupFinished) -> None:
        dispatch = message.dispatch
        if dispatch.queued_jobs:
            jobs = ", ".join(f"#{job}" for job in dispatch.queued_jobs)
            self.notify(f"Queued for the daemon: job {jobs}", title="Back up now")
            self.set_status(f"queued job {jobs} for the daemon")
        for job in dispatch.finished:
            self._report(job)
        self.load()

    def _report(self, job: JobInfo) -> None:
        outcome = job.result if isinstance(job.result, dict) else {}
        name = outcome.get("name") or (self.by_id[job.org_id].name if job.org_id in self.by_id else job.org_id)
        if job.state == "done" and outcome.get("status") == "succeeded":
            point = str(outcome.get("snapshot_id") or "")[:8]
            self.notify(f"{name}: new backup point {point}", title="Backed up")
            self.set_status(
                f"{name} backed up: point {point}, {outcome.get('records', 0):,} records (job #{job.job_id})"
            )
        else:
            detail = job.error or outcome.get("error") or outcome.get("status") or job.state
            self.notify(f"{name}: {detail}", title=f"Backup {job.state}", severity="error")
            self.set_status(f"{name}: backup {outcome.get('status') or job.state} (job #{job.job_id})")

    def set_status(self, text: str) -> None:
        self.query_one("#fleet-status", Static).update(text)

"""One organisation: its backup points on a timeline, findings, the integrations register and retention.

The screen loads an `OrgDetail` (through `Backend.organisation`) on a worker and renders it; the only write
it makes is the integrations register (through `Backend.set_integrations`), again on a worker. Picking a
point opens the point browser; marking one point and pressing `c` on another opens them side by side; a
finding offers "the day before the damage" against the newest point.

It must not query the state database or open points itself.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Sparkline, Static, TabbedContent, TabPane

from appliance.fleet import OrgDetail, PointInfo
from tui import format as fmt
from tui.backend import Dispatch
from tui.screens.base import BaseScreen
from tui.screens.fleet import describe_progress
from tui.widgets.table import Column, Row, RowTable

POINT_COLUMNS = (
    Column("mark", " ", 2),
    Column("when", "Taken (UTC)", 16),
    Column("age", "Age", 8, "right"),
    Column("id", "Point", 8),
    Column("mode", "Mode", 11),
    Column("records", "Records", 9, "right"),
    Column("calls", "API calls", 9, "right"),
    Column("added", "Added", 9, "right"),
    Column("size", "Size", 9, "right"),
    Column("note", "Note", None, min_width=10),
)
FINDING_COLUMNS = (
    Column("severity", "Severity", 9),
    Column("rule", "Rule", 22),
    Column("detected", "Detected", 16),
    Column("summary", "What was found", None),
    Column("clean", "Last clean", 10),
)
INTEGRATION_COLUMNS = (
    Column("name", "Integration", 24),
    Column("kind", "Kind", 14),
    Column("contact", "Who connects it", 20),
    Column("notes", "Notes", None),
)
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "warning": "yellow", "medium": "yellow", "info": "dim"}


def per_day(points: list[PointInfo]) -> tuple[list[float], list[float]]:
    """Records in the last point of each day and API calls spent each day, oldest day first."""
    records: dict[str, float] = {}
    calls: dict[str, float] = defaultdict(float)
    for point in points:
        day = fmt.day(point.taken_at)
        records[day] = float(point.records)
        calls[day] += point.calls
    days = sorted(records)
    return [records[d] for d in days], [calls[d] for d in days]


class IntegrationForm(ModalScreen[dict[str, str] | None]):
    """Add or edit one entry of the integrations register."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    FIELDS = (
        ("name", "Name", "e.g. Stripe, Hubdoc, a bank feed"),
        ("kind", "Kind", "app, bank feed, payroll…"),
        ("contact", "Who connects it", "the person who can reconnect it after a restore"),
        ("notes", "Notes", "anything a restore needs to know"),
    )

    def __init__(self, entry: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.entry = entry or {}

    def compose(self) -> ComposeResult:
        with Vertical(id="integration-form"):
            yield Label("Integration", classes="form-title")
            for key, label, placeholder in self.FIELDS:
                yield Label(label)
                yield Input(str(self.entry.get(key, "")), placeholder=placeholder, id=f"integration-{key}")
            with Horizontal(classes="form-buttons"):
                yield Button("Save", variant="primary", id="integration-save")
                yield Button("Cancel", id="integration-cancel")

    @on(Button.Pressed, "#integration-save")
    @on(Input.Submitted)
    def save(self) -> None:
        values = {key: self.query_one(f"#integration-{key}", Input).value.strip() for key, _l, _p in self.FIELDS}
        if not values["name"]:
            self.notify("An integration needs a name.", severity="warning")
            self.query_one("#integration-name", Input).focus()
            return
        self.dismiss(values)

    @on(Button.Pressed, "#integration-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class OrganisationScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "backup", "Back up now"),
        Binding("space", "mark", "Mark to compare"),
        Binding("c", "compare", "Compare"),
        Binding("a", "add_integration", "Add integration", show=False),
        Binding("e", "edit_integration", "Edit integration", show=False),
        Binding("x", "delete_integration", "Delete integration", show=False),
        Binding("r", "restore", "Restore"),
        Binding("R", "restore_clean", "Restore the last clean point", show=False),
        Binding("k", "acknowledge", "Acknowledge finding", show=False),
        Binding("f5", "refresh", "Refresh", show=False),
    ]

    class Loaded(Message):
        def __init__(self, detail: OrgDetail) -> None:
            super().__init__()
            self.detail = detail

    class BackupFinished(Message):
        def __init__(self, dispatch: Dispatch) -> None:
            super().__init__()
            self.dispatch = dispatch

    class BackupProgress(Message):
        def __init__(self, progress: dict[str, Any]) -> None:
            super().__init__()
            self.progress = progress

    def __init__(self, org_id: str) -> None:
        super().__init__()
        self.org_id = org_id
        self.detail: OrgDetail | None = None
        self.marked: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Loading…", id="org-title")
        with Grid(id="org-overview"):
            yield Static("", id="org-facts")
            with Vertical(classes="spark"):
                yield Label("Records per day", classes="spark-label")
                yield Sparkline([], id="org-records-spark", summary_function=max)
            with Vertical(classes="spark"):
                yield Label("API calls per day", classes="spark-label")
                yield Sparkline([], id="org-calls-spark", summary_function=max)
        with TabbedContent(id="org-tabs"):
            with TabPane("Backup points", id="tab-points"):
                yield RowTable(POINT_COLUMNS, id="org-points", empty_message="No backup point yet: press b.")
            with TabPane("Findings", id="tab-findings"):
                yield RowTable(FINDING_COLUMNS, id="org-findings", empty_message="No damage findings.")
            with TabPane("Integrations", id="tab-integrations"):
                yield Static(
                    "What is connected to this organisation (reconnected by hand after a restore). "
                    "a add · e edit · x delete",
                    classes="hint",
                )
                yield RowTable(
                    INTEGRATION_COLUMNS, id="org-integrations", empty_message="None recorded: press a to add one."
                )
            with TabPane("Retention", id="tab-retention"):
                yield Static("", id="org-retention")
        yield Static("", id="org-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Organisation"
        self.load()

    # --- loading ---------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="org-load", exit_on_error=False, name="Loading the organisation")
    def load(self) -> None:
        self.post_message(self.Loaded(self.backend.organisation(self.org_id)))

    def action_refresh(self) -> None:
        self.load()

    def on_organisation_screen_loaded(self, message: Loaded) -> None:
        detail = message.detail
        now = self.now()
        org, health = detail.organisation, detail.health
        self.sub_title = org.name
        title = Text.assemble((org.name, "bold"), "  ", fmt.health_text(health.health))
        self.query_one("#org-title", Static).update(title)
        facts = [
            ("Last point", f"{fmt.ago(health.last_point_at, now)} ({fmt.when(health.last_point_at)})"),
            ("Next backup", fmt.until(health.next_due_at, now)),
            ("Points", str(len(detail.points))),
            ("Failures", str(health.failures) + (f": {health.last_error}" if health.last_error else "")),
            ("Region", org.region or "local only"),
            ("Country", org.country or "-"),
            ("Currency", org.base_currency or "-"),
            ("Consent", org.status.value.replace("_", " ")),
            ("Xero id", org.org_id),
        ]
        text = Text()
        for label, value in facts:
            text.append(f"{label:<12}", style="bold")
            text.append(f"{value}\n")
        self.query_one("#org-facts", Static).update(text)
        records, calls = per_day(detail.points)
        self.query_one("#org-records-spark", Sparkline).data = records
        self.query_one("#org-calls-spark", Sparkline).data = calls
        first = self.detail is None
        self.detail = detail
        self._show_points(detail, now)
        if first:
            self.query_one("#org-points", RowTable).focus()
        self._show_findings(detail)
        self._show_integrations(detail)
        retention = detail.retention
        self.query_one("#org-retention", Static).update(
            f"Keep the last {retention.daily} daily, {retention.weekly} weekly, {retention.monthly} monthly and "
            f"{retention.yearly} yearly backup points; older points are forgotten by the daemon's retention job."
            + (" (This organisation overrides the global policy.)" if "retention" in detail.overrides else "")
        )

    def _show_points(self, detail: OrgDetail, now: float) -> None:
        clean = detail.last_clean_snapshot_id
        suspect = {f.snapshot_id for f in detail.findings if not f.acknowledged}
        rows = []
        for point in reversed(detail.points):  # newest first: what a person looks for
            note: Text | str = ""
            if point.snapshot_id in suspect:
                note = Text("⚠ damage found here", style="bold yellow")
            elif point.snapshot_id == clean and detail.findings:
                note = Text("★ last clean point", style="bold green")
            mark = "▶" if point.snapshot_id == self.marked else ""
            rows.append(
                Row(
                    point.snapshot_id,
                    (
                        mark,
                        fmt.when(point.taken_at),
                        fmt.ago(point.taken_at, now).removesuffix(" ago"),
                        point.short_id,
                        point.mode,
                        fmt.number(point.records),
                        fmt.number(point.calls),
                        fmt.size(point.data_added),
                        fmt.size(point.size_bytes),
                        note,
                    ),
                )
            )
        self.query_one("#org-points", RowTable).set_rows(rows)

    def _show_findings(self, detail: OrgDetail) -> None:
        rows = [
            Row(
                finding.finding_id,
                (
                    Text(
                        finding.severity if not finding.acknowledged else f"{finding.severity} ✓",
                        style="dim" if finding.acknowledged else SEVERITY_STYLE.get(finding.severity.lower(), ""),
                    ),
                    finding.rule,
                    fmt.when(finding.detected_at),
                    finding.summary,
                    (finding.last_clean_snapshot_id or "-")[:8],
                ),
            )
            for finding in detail.findings
        ]
        self.query_one("#org-findings", RowTable).set_rows(rows)
        tabs = self.query_one("#org-tabs", TabbedContent)
        open_count = sum(1 for f in detail.findings if not f.acknowledged)
        tabs.get_tab("tab-findings").label = f"Findings ({open_count})" if open_count else "Findings"

    def _show_integrations(self, detail: OrgDetail) -> None:
        rows = [
            Row(
                str(index),
                (entry.get("name", ""), entry.get("kind", ""), entry.get("contact", ""), entry.get("notes", "")),
            )
            for index, entry in enumerate(detail.organisation.integrations)
        ]
        self.query_one("#org-integrations", RowTable).set_rows(rows)

    # --- points ----------------------------------------------------------------------------------------------
    @property
    def selected_point(self) -> str | None:
        return self.query_one("#org-points", RowTable).cursor_key

    @on(RowTable.Selected, "#org-points")
    def point_selected(self, event: RowTable.Selected) -> None:
        self.strongroom.open_point(self.org_id, event.key)

    @on(RowTable.Selected, "#org-findings")
    def finding_selected(self, event: RowTable.Selected) -> None:
        """Open "the day before the damage" (the finding's last clean point) against the damaged point."""
        if self.detail is None:
            return
        finding = next((f for f in self.detail.findings if f.finding_id == event.key), None)
        if finding is None:
            return
        before = finding.last_clean_snapshot_id
        after = finding.snapshot_id or (self.detail.points[-1].snapshot_id if self.detail.points else None)
        if before and after:
            self.strongroom.open_compare(self.org_id, before, after)
        else:
            self.notify("This finding names no clean point to compare with.", severity="warning")

    def action_acknowledge(self) -> None:
        """Mark the selected finding as seen: it stops counting as open on the dashboard and in alerts."""
        key = self.query_one("#org-findings", RowTable).cursor_key
        if key is None or not key.isdigit():
            self.notify("Select a finding in the Findings tab first.", severity="warning")
            return
        self.acknowledge(int(key))

    @work(thread=True, group="org-save", exit_on_error=False, name="Acknowledging the finding")
    def acknowledge(self, finding_id: int) -> None:
        self.backend.acknowledge_finding(finding_id)
        self.post_message(self.Loaded(self.backend.organisation(self.org_id)))

    def action_mark(self) -> None:
        point = self.selected_point
        if point is None or self.detail is None:
            return
        self.marked = None if self.marked == point else point
        self._show_points(self.detail, self.now())
        if self.marked:
            self.notify(f"Marked {point[:8]}: select another point and press c to compare.", timeout=4)

    def action_compare(self) -> None:
        point = self.selected_point
        if self.detail is None or point is None:
            return
        other = self.marked
        if other is None or other == point:
            # Without a mark, compare the selected point with the one before it (what changed that day).
            ids = [p.snapshot_id for p in self.detail.points]
            index = ids.index(point)
            if index == 0:
                self.notify("Mark a point with space first, then press c on another.", severity="warning")
                return
            other = ids[index - 1]
        order = {p.snapshot_id: p.taken_at for p in self.detail.points}
        older, newer = sorted((other, point), key=lambda s: order[s])
        self.strongroom.open_compare(self.org_id, older, newer)

    def action_restore(self) -> None:
        point = self.selected_point
        if point is None:
            self.notify("There is no backup point to restore from yet.", severity="warning")
            return
        self.strongroom.open_restore(self.org_id, point)

    def action_restore_clean(self) -> None:
        """From a finding: open the restore wizard on its last clean point (the selected finding, else the newest
        open one)."""
        findings = self.detail.findings if self.detail else []
        key = self.query_one("#org-findings", RowTable).cursor_key
        chosen = next((f for f in findings if key is not None and str(f.finding_id) == key), None)
        if chosen is None:
            chosen = next((f for f in findings if not f.acknowledged and f.last_clean_snapshot_id), None)
        if chosen is None or not chosen.last_clean_snapshot_id:
            self.notify("No finding with a last clean point.", severity="warning")
            return
        self.strongroom.open_restore(self.org_id, chosen.last_clean_snapshot_id)

    # --- backup ----------------------------------------------------------------------------------------------
    def action_backup(self) -> None:
        self.query_one("#org-status", Static).update("Backing up…")
        self.backup()

    def _progress(self, progress: dict[str, Any]) -> None:
        self.post_message(self.BackupProgress(progress))

    @work(thread=True, group="backup", exit_on_error=False, name="Backup")
    def backup(self) -> None:
        dispatch = self.backend.backup_now([self.org_id], progress=self._progress)
        self.post_message(self.BackupFinished(dispatch))

    def on_organisation_screen_backup_progress(self, message: BackupProgress) -> None:
        self.query_one("#org-status", Static).update(describe_progress(message.progress, {}))

    def on_organisation_screen_backup_finished(self, message: BackupFinished) -> None:
        status = self.query_one("#org-status", Static)
        if message.dispatch.queued_jobs:
            status.update(f"Queued for the daemon: job #{message.dispatch.queued_jobs[0]}")
        for job in message.dispatch.finished:
            outcome = job.result if isinstance(job.result, dict) else {}
            if job.state == "done" and outcome.get("status") == "succeeded":
                status.update(f"Backed up: new point {str(outcome.get('snapshot_id') or '')[:8]} (job #{job.job_id})")
            else:
                detail = job.error or outcome.get("error") or job.state
                status.update(f"Backup {job.state}: {detail}")
                self.notify(str(detail), title=f"Backup {job.state}", severity="error")
        self.load()

    # --- integrations register -------------------------------------------------------------------------------
    def _integrations(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.detail.organisation.integrations] if self.detail else []

    def action_add_integration(self) -> None:
        self.query_one("#org-tabs", TabbedContent).active = "tab-integrations"
        self.app.push_screen(IntegrationForm(), self._added)

    def _added(self, entry: dict[str, str] | None) -> None:
        if entry:
            self.save_integrations([*self._integrations(), entry])

    def _selected_integration(self) -> int | None:
        key = self.query_one("#org-integrations", RowTable).cursor_key
        return int(key) if key is not None else None

    def action_edit_integration(self) -> None:
        index = self._selected_integration()
        if index is None:
            return
        entries = self._integrations()

        def edited(entry: dict[str, str] | None) -> None:
            if entry:
                entries[index] = entry
                self.save_integrations(entries)

        self.app.push_screen(IntegrationForm(entries[index]), edited)

    def action_delete_integration(self) -> None:
        index = self._selected_integration()
        if index is None:
            return
        entries = self._integrations()
        removed = entries.pop(index)
        self.save_integrations(entries)
        self.notify(f"Removed {removed.get('name', '')} from the register.")

    @work(thread=True, group="org-save", exit_on_error=False, name="Saving the integrations register")
    def save_integrations(self, entries: list[dict[str, Any]]) -> None:
        self.backend.set_integrations(self.org_id, entries)
        self.post_message(self.Loaded(self.backend.organisation(self.org_id)))

"""The point browser: one backup point's summary, chart of accounts, ledger reports, contacts and documents,
one record in full (with its attachments, which can be saved to a file), and CSV export.

Every view is a `PointsService.show` call on a worker (opening the point into its query index first, with
progress, when it is not cached); the screen keeps only what it shows. Exports are written under the
person's home (`~/strongroom-exports/<org>/<point>/`), where `scp` finds them.

It must not open indexes or read restic itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from appliance.points.queries import DOCUMENT_VIEWS, Table
from tui import format as fmt
from tui.screens.base import BaseScreen
from tui.screens.fleet import FilterInput
from tui.widgets.table import Column, Row, RowTable
from tui.widgets.views import FILTER_HELP, columns_for, footer_notes, parse_filters, record_renderable, rows_for

REPORT_VIEWS = (
    ("summary", "Summary"),
    ("accounts", "Chart of accounts"),
    ("trial-balance", "Trial balance"),
    ("pnl", "Profit and loss"),
    ("balance-sheet", "Balance sheet"),
    ("aged-receivables", "Aged receivables"),
    ("aged-payables", "Aged payables"),
    ("contacts", "Contacts"),
)
FILTERABLE = {"contacts", *DOCUMENT_VIEWS}
FILTER_DELAY = 0.35
"""Seconds of no typing before a filter runs (each run is a query on the point's index)."""


def view_label(view: str) -> str:
    return dict(REPORT_VIEWS).get(view) or view.replace("-", " ").capitalize()


class PointScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("slash", "focus_filter", "Filter", show=False),
        Binding("ctrl+e", "export_view", "Export view"),
        Binding("ctrl+x", "export_point", "Export point"),
        Binding("question_mark,f1", "app.help", "Help", priority=True),
    ]

    class ViewLoaded(Message):
        def __init__(self, view: str, table: Table) -> None:
            super().__init__()
            self.view = view
            self.table = table

    class Step(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, org_id: str, snapshot_id: str, *, view: str = "summary") -> None:
        super().__init__()
        self.org_id = org_id
        self.snapshot_id = snapshot_id
        self.view = view
        self.table: Table | None = None
        self._filter_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Point {self.snapshot_id[:8]}", id="point-title")
        with Horizontal(id="point-body"):
            options = [Option(label, id=view) for view, label in REPORT_VIEWS]
            options.append(Option(Text("Documents", style="bold dim"), disabled=True))
            options += [Option(view_label(view), id=view) for view in DOCUMENT_VIEWS]
            yield OptionList(*options, id="point-views")
            with Vertical(id="point-main"):
                with Horizontal(classes="view-filter"):
                    yield FilterInput(placeholder=FILTER_HELP, id="point-filter")
                yield RowTable([Column("loading", "Loading…")], id="point-table", classes="view-table")
                yield Static("", id="point-notes")
        yield Static("", id="point-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Point {self.snapshot_id[:8]}"
        views = self.query_one("#point-views", OptionList)
        views.highlighted = views.get_option_index(self.view)
        views.focus()
        self.load_view()

    # --- loading ---------------------------------------------------------------------------------------------
    def _step(self, phase: str, done: int, total: int) -> None:
        self.post_message(self.Step(f"Opening the point: {phase} {done}/{total}" if total else f"Opening: {phase}"))

    @work(thread=True, exclusive=True, group="point-view", exit_on_error=False, name="Loading the view")
    def load_view(self) -> None:
        view = self.view
        line = self.query_one("#point-filter", FilterInput).value if view in FILTERABLE else ""
        filters = parse_filters(line) if line.strip() else None
        table = self.backend.show(self.org_id, self.snapshot_id, view, filters, progress=self._step)
        self.post_message(self.ViewLoaded(view, table))

    def on_point_screen_step(self, message: Step) -> None:
        self.query_one("#point-status", Static).update(message.text)

    def on_point_screen_view_loaded(self, message: ViewLoaded) -> None:
        if message.view != self.view:
            return  # a slower, older request
        self.table = message.table
        table = self.query_one("#point-table", RowTable)
        table.columns = columns_for(message.table)
        table.empty_message = "Nothing matches." if self.query_one("#point-filter", FilterInput).value else "Empty."
        table.set_rows(rows_for(message.table))
        self.query_one("#point-notes", Static).update(footer_notes(message.table))
        title = Text.assemble(
            (message.table.title or view_label(message.view), "bold"), f"  ·  point {self.snapshot_id[:8]}"
        )
        self.query_one("#point-title", Static).update(title)
        self.query_one("#point-status", Static).update("")

    # --- navigation ------------------------------------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#point-views")
    def view_chosen(self, event: OptionList.OptionHighlighted) -> None:
        view = event.option.id
        if view is None or view == self.view:
            return
        self.view = view
        search = self.query_one("#point-filter", FilterInput)
        search.disabled = view not in FILTERABLE
        self.load_view()

    @on(OptionList.OptionSelected, "#point-views")
    def view_entered(self) -> None:
        self.query_one("#point-table", RowTable).focus()

    @on(FilterInput.Changed, "#point-filter")
    def filter_changed(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self.load_view)

    @on(FilterInput.Submitted, "#point-filter")
    def filter_submitted(self) -> None:
        self.query_one("#point-table", RowTable).focus()

    def action_focus_filter(self) -> None:
        if self.view in FILTERABLE:
            self.query_one("#point-filter", FilterInput).focus()

    @on(RowTable.Selected, "#point-table")
    def row_selected(self, event: RowTable.Selected) -> None:
        if self.view in FILTERABLE and not event.key.startswith("#"):
            self.app.push_screen(RecordScreen(self.org_id, self.snapshot_id, event.key))

    # --- export ----------------------------------------------------------------------------------------------
    def action_export_view(self) -> None:
        self.query_one("#point-status", Static).update(f"Exporting {view_label(self.view)}…")
        self.export(self.view)

    def action_export_point(self) -> None:
        self.query_one("#point-status", Static).update("Exporting the whole point…")
        self.export(None)

    @work(thread=True, group="point-export", exit_on_error=False, name="Export")
    def export(self, view: str | None) -> None:
        out = self.backend.export_dir(self.org_id, self.snapshot_id)
        line = self.query_one("#point-filter", FilterInput).value if view in FILTERABLE else ""

        def step(phase: str, done: int, total: int) -> None:
            self.post_message(self.Step(f"Exporting: {phase} {done}/{total}" if total else f"Exporting: {phase}"))

        result = self.backend.export(
            self.org_id,
            self.snapshot_id,
            out,
            view=view,
            filters=parse_filters(line) if line.strip() else None,
            progress=step,
        )
        where = result.get("file") or str(out)
        self.post_message(self.Step(f"Exported to {where}"))
        self.app.call_from_thread(self.notify, f"Written to {where}", title="Export")


class RecordScreen(BaseScreen[None]):
    """One record in full, with its attachments (`s` saves the selected one under ~/strongroom-exports)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "save_attachment", "Save attachment"),
    ]

    class Loaded(Message):
        def __init__(self, record: dict[str, Any]) -> None:
            super().__init__()
            self.record = record

    class Saved(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, org_id: str, snapshot_id: str, record_id: str, endpoint: str | None = None) -> None:
        super().__init__()
        self.org_id = org_id
        self.snapshot_id = snapshot_id
        self.record_id = record_id
        self.endpoint = endpoint
        self.record: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Record {self.record_id}", id="point-title")
        with VerticalScroll(id="record-body"):
            yield Static("Loading…", id="record-detail")
            yield Static(Text("Attachments", style="bold"))
            yield RowTable(
                [Column("name", "File", None), Column("type", "Type", 24), Column("size", "Size", 10, "right")],
                id="record-attachments",
                empty_message="No attachments.",
            )
        yield Static("", id="point-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Record"
        self.load()

    @work(thread=True, exclusive=True, group="record", exit_on_error=False, name="Loading the record")
    def load(self) -> None:
        self.post_message(
            self.Loaded(self.backend.record(self.org_id, self.snapshot_id, self.record_id, self.endpoint))
        )

    def on_record_screen_loaded(self, message: Loaded) -> None:
        record = self.record = message.record
        fields = record.get("fields") or {}
        number = fields.get("InvoiceNumber") or fields.get("Name") or fields.get("Reference") or record["id"]
        self.query_one("#point-title", Static).update(
            Text.assemble((f"{record['endpoint']} {number}", "bold"), f"  ·  point {self.snapshot_id[:8]}")
        )
        self.query_one("#record-detail", Static).update(record_renderable(record))
        rows = [
            Row(str(a.get("FileName")), (str(a.get("FileName")), str(a.get("MimeType") or ""), fmt.size(a.get("size"))))
            for a in record.get("attachments") or []
        ]
        table = self.query_one("#record-attachments", RowTable)
        table.set_rows(rows)
        if rows:
            table.focus()

    def action_save_attachment(self) -> None:
        name = self.query_one("#record-attachments", RowTable).cursor_key
        if self.record is None or name is None:
            self.notify("This record has no attachment to save.", severity="warning")
            return
        self.save(name)

    @work(thread=True, group="record-save", exit_on_error=False, name="Saving the attachment")
    def save(self, name: str) -> None:
        assert self.record is not None
        out = self.backend.export_dir(self.org_id, self.snapshot_id) / "attachments"
        path = self.backend.save_attachment(
            self.org_id, self.snapshot_id, self.record["id"], name, out, endpoint=self.record["endpoint"]
        )
        self.post_message(self.Saved(path))

    def on_record_screen_saved(self, message: Saved) -> None:
        self.query_one("#point-status", Static).update(f"Saved {message.path}")
        self.notify(f"Saved to {message.path}", title="Attachment")

"""Side by side: two points of one organisation — counts per type, trial balance and profit and loss with a
difference column, the records added, removed and changed with field-level differences, and one record in
both points next to each other.

The screen asks `PointsService.diff` (on a worker) for the comparison, first for every type, then with field
details for the type a person opens. Opened from the organisation screen (two points) or from a damage
finding (its last clean point against the damaged one: "the day before the damage").

It must not open indexes or compute differences itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Static, TabbedContent, TabPane

from appliance.points.diff import EndpointDiff, PointDiff, books_side_by_side
from tui.screens.base import BaseScreen
from tui.widgets.table import Column, Row, RowTable
from tui.widgets.views import cell_text, record_renderable

CHANGE_COLUMNS = (
    Column("type", "Type", None, min_width=18),
    Column("added", "Added", 8, "right"),
    Column("removed", "Removed", 8, "right"),
    Column("changed", "Changed", 8, "right"),
    Column("unchanged", "Unchanged", 10, "right"),
)
BOOK_COLUMNS = (
    Column("account", "Account", None, min_width=24),
    Column("before", "Before", 16, "right"),
    Column("after", "After", 16, "right"),
    Column("difference", "Difference", 16, "right"),
)
RECORD_COLUMNS = (
    Column("change", "Change", 9),
    Column("id", "Record", 38),
    Column("fields", "Fields changed", None),
)
CHANGE_STYLE = {"added": "green", "removed": "red", "changed": "yellow"}


def change_rows(diff: PointDiff) -> list[Row]:
    rows = []
    for endpoint in sorted(diff.endpoints, key=lambda e: (e.empty, e.endpoint)):
        rows.append(
            Row(
                endpoint.endpoint,
                (
                    endpoint.endpoint,
                    Text(str(len(endpoint.added)), style="green" if endpoint.added else "dim"),
                    Text(str(len(endpoint.removed)), style="red" if endpoint.removed else "dim"),
                    Text(str(len(endpoint.changed)), style="yellow" if endpoint.changed else "dim"),
                    str(endpoint.unchanged),
                ),
            )
        )
    return rows


def book_rows(diff: PointDiff, which: str) -> list[Row]:
    return [
        Row(f"{which}:{index}", (label, before, after, Text(difference, style="bold yellow")))
        for index, (label, before, after, difference) in enumerate(books_side_by_side(diff, which))
    ]


def record_rows(endpoint: EndpointDiff) -> list[Row]:
    rows = []
    for kind, ids in (("changed", endpoint.changed), ("added", endpoint.added), ("removed", endpoint.removed)):
        for record_id in ids:
            changes = endpoint.details.get(record_id, [])
            summary = ", ".join(sorted({c.path.split("[")[0].split(".")[0] for c in changes}))
            rows.append(Row(f"{kind}:{record_id}", (Text(kind, style=CHANGE_STYLE[kind]), record_id, summary)))
    return rows


class CompareScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("question_mark,f1", "app.help", "Help", priority=True),
    ]

    class Compared(Message):
        def __init__(self, diff: PointDiff, endpoint: str | None) -> None:
            super().__init__()
            self.diff = diff
            self.endpoint = endpoint

    class Step(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, org_id: str, before: str, after: str) -> None:
        super().__init__()
        self.org_id = org_id
        self.before = before
        self.after = after
        self.diff: PointDiff | None = None
        self.detail: EndpointDiff | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"{self.before[:8]} → {self.after[:8]}", id="compare-title")
        with TabbedContent(id="compare-tabs"):
            with TabPane("Changes by type", id="tab-changes"):
                yield RowTable(CHANGE_COLUMNS, id="compare-changes", empty_message="Comparing…")
            with TabPane("Trial balance", id="tab-books"):
                yield RowTable(BOOK_COLUMNS, id="compare-books", empty_message="No account balance differs.")
            with TabPane("Profit and loss", id="tab-pnl"):
                yield RowTable(BOOK_COLUMNS, id="compare-pnl", empty_message="No account differs.")
            with TabPane("Records", id="tab-records"):
                yield RowTable(
                    RECORD_COLUMNS, id="compare-records", empty_message="Pick a type in Changes by type (enter)."
                )
                yield Static("", id="compare-fields")
        yield Static("", id="compare-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Side by side"
        self.compare(None)

    def _step(self, phase: str, done: int, total: int) -> None:
        self.post_message(self.Step(f"Opening points: {phase} {done}/{total}" if total else f"Opening: {phase}"))

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False, name="Comparing the points")
    def compare(self, endpoint: str | None) -> None:
        types = [endpoint] if endpoint else None
        diff = self.backend.diff(self.org_id, self.before, self.after, types=types, progress=self._step)
        self.post_message(self.Compared(diff, endpoint))

    def on_compare_screen_step(self, message: Step) -> None:
        self.query_one("#compare-status", Static).update(message.text)

    def on_compare_screen_compared(self, message: Compared) -> None:
        diff = message.diff
        self.query_one("#compare-status", Static).update("")
        if message.endpoint is None:
            self.diff = diff
            title = Text.assemble(
                ("Side by side  ", "bold"),
                f"before {diff.before[:8]}  →  after {diff.after[:8]}",
                (f"   books as at {diff.as_at}" if diff.as_at else "", "dim"),
            )
            self.query_one("#compare-title", Static).update(title)
            self.query_one("#compare-changes", RowTable).set_rows(change_rows(diff))
            self.query_one("#compare-books", RowTable).set_rows(book_rows(diff, "trial_balance"))
            self.query_one("#compare-pnl", RowTable).set_rows(book_rows(diff, "profit_and_loss"))
            self.query_one("#compare-changes", RowTable).focus()
            return
        self.detail = next((e for e in diff.endpoints if e.endpoint == message.endpoint), None)
        records = self.query_one("#compare-records", RowTable)
        records.empty_message = f"No {message.endpoint} record changed."
        records.set_rows(record_rows(self.detail) if self.detail else [])
        self.query_one("#compare-tabs", TabbedContent).active = "tab-records"
        records.focus()

    @on(RowTable.Selected, "#compare-changes")
    def type_selected(self, event: RowTable.Selected) -> None:
        self.query_one("#compare-status", Static).update(f"Comparing {event.key} field by field…")
        self.compare(event.key)

    @on(RowTable.Highlighted, "#compare-records")
    def record_highlighted(self, event: RowTable.Highlighted) -> None:
        fields = self.query_one("#compare-fields", Static)
        if self.detail is None or event.key is None:
            fields.update("")
            return
        kind, _, record_id = event.key.partition(":")
        changes = self.detail.details.get(record_id, [])
        if kind != "changed" or not changes:
            fields.update(Text(f"{record_id} was {kind}.", style=CHANGE_STYLE.get(kind, "")))
            return
        text = Text()
        for change in changes:
            text.append(f"{change.path}: ", style="bold")
            text.append(cell_text(change.before), style="red")
            text.append("  →  ")
            text.append(f"{cell_text(change.after)}\n", style="green")
        fields.update(text)

    @on(RowTable.Selected, "#compare-records")
    def record_selected(self, event: RowTable.Selected) -> None:
        if self.detail is None:
            return
        _, _, record_id = event.key.partition(":")
        changed = {c.path.split("[")[0].split(".")[0] for c in self.detail.details.get(record_id, [])}
        self.app.push_screen(
            RecordPairScreen(self.org_id, self.before, self.after, self.detail.endpoint, record_id, changed)
        )


class RecordPairScreen(BaseScreen[None]):
    """One record as it was in both points, next to each other; changed fields are highlighted."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    class Loaded(Message):
        def __init__(self, side: str, record: dict[str, Any] | None, error: str | None) -> None:
            super().__init__()
            self.side = side
            self.record = record
            self.error = error

    def __init__(
        self, org_id: str, before: str, after: str, endpoint: str, record_id: str, changed: set[str] | None = None
    ) -> None:
        super().__init__()
        self.org_id = org_id
        self.points = {"before": before, "after": after}
        self.endpoint = endpoint
        self.record_id = record_id
        self.changed = changed or set()

    def compose(self) -> ComposeResult:
        yield Static(f"{self.endpoint} {self.record_id}", id="compare-title")
        with Horizontal(classes="columns"):
            with VerticalScroll():
                yield Static(f"Before ({self.points['before'][:8]})", classes="screen-title")
                yield Static("Loading…", id="pair-before")
            with VerticalScroll():
                yield Static(f"After ({self.points['after'][:8]})", classes="screen-title")
                yield Static("Loading…", id="pair-after")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Record in both points"
        for side in self.points:
            self.load(side)

    @work(thread=True, group="pair", exit_on_error=False, name="Loading the record")
    def load(self, side: str) -> None:
        try:
            record = self.backend.record(self.org_id, self.points[side], self.record_id, self.endpoint)
        except Exception as error:  # absent from one point (added or removed): say so in that column
            self.post_message(self.Loaded(side, None, str(error)))
            return
        self.post_message(self.Loaded(side, record, None))

    def on_record_pair_screen_loaded(self, message: Loaded) -> None:
        target = self.query_one(f"#pair-{message.side}", Static)
        if message.record is None:
            target.update(Text(f"Not in this point ({message.error})", style="dim"))
        else:
            target.update(record_renderable(message.record, self.changed))

"""Turning the points use cases' plain results into what the TUI draws: a query `Table` into `RowTable` rows and
columns, a filter line into `Filters`, and a record into Rich renderables.

Pure functions (no I/O, no app): the point browser and the side-by-side screen share them, and unit tests can
call them directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from appliance.points.queries import Filters, Table
from tui.widgets.table import Column, Row

MAX_COLUMN = 40
_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")
ID_COLUMNS = ("id", "contact id", "account id")
FILTER_KEYS = {
    "status": "status",
    "from": "date_from",
    "to": "date_to",
    "contact": "contact",
    "account": "account",
    "min": "amount_min",
    "max": "amount_max",
}
FILTER_HELP = "search text, or status:paid from:2026-01-01 to:2026-03-31 contact:acme account:200 min:10 max:500"


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    return str(value)


def columns_for(table: Table, sample: int = 300) -> list[Column]:
    """Columns sized to their content (capped), numbers right-aligned; ids keep their full width."""
    result = []
    for position, name in enumerate(table.columns):
        values = [cell_text(row[position]) for row in table.rows[:sample]]
        longest = max((len(v) for v in values), default=0)
        numeric = bool(values) and all(_NUMBER.match(v) for v in values if v)
        width = max(len(name), longest) if name in ID_COLUMNS else min(MAX_COLUMN, max(len(name), longest, 3))
        result.append(Column(name, name, width, "right" if numeric and any(values) else "left"))
    if result and result[-1].key not in ID_COLUMNS and result[-1].justify == "left":
        # The last text column takes the room left over (statuses, descriptions) instead of an ellipsis.
        last = result[-1]
        result[-1] = Column(last.key, last.label, None, "left", min_width=last.width or 12)
    return result


def record_key(table: Table, row: Sequence[Any], index: int) -> str:
    """The row's record id when the table has one (documents, contacts), else its position."""
    for name in ID_COLUMNS:
        if name in table.columns:
            value = row[table.columns.index(name)]
            if value:
                return str(value)
    return f"#{index}"


def rows_for(table: Table) -> list[Row]:
    rows = []
    seen: set[str] = set()
    for index, row in enumerate(table.rows):
        key = record_key(table, row, index)
        if key in seen:  # keys must be unique for the cursor; fall back to the position
            key = f"#{index}"
        seen.add(key)
        rows.append(Row(key, tuple(_styled(name, value) for name, value in zip(table.columns, row, strict=False))))
    return rows


def _styled(column: str, value: Any) -> str | Text:
    text = cell_text(value)
    if column == "difference" and text not in ("", "0.00", "0"):
        return Text(text, style="bold yellow")
    return text


def parse_filters(line: str) -> Filters:
    """`status:paid from:2026-01-01 acme widgets` -> Filters(status="paid", date_from=..., text="acme widgets")."""
    values: dict[str, Any] = {}
    words = []
    for token in line.split():
        key, sep, value = token.partition(":")
        field = FILTER_KEYS.get(key.lower()) if sep else None
        if field is None or not value:
            words.append(token)
            continue
        try:
            if field in ("date_from", "date_to"):
                values[field] = date.fromisoformat(value)
            elif field in ("amount_min", "amount_max"):
                values[field] = float(value.replace(",", ""))
            else:
                values[field] = value
        except ValueError:
            words.append(token)
    if words:
        values["text"] = " ".join(words)
    return Filters(**values)


def footer_notes(table: Table) -> Text:
    text = Text()
    if table.totals:
        text.append("Totals: ", style="bold")
        text.append("  ".join(f"{name} {value}" for name, value in table.totals.items()))
        text.append("\n")
    for note in table.notes:
        text.append(f"{note}\n", style="yellow" if note.startswith("warning") else "dim")
    text.append(f"{len(table.rows):,} row(s)", style="dim")
    return text


def _kv_table(title: str, values: dict[str, Any], highlight: set[str] | None = None) -> RichTable:
    table = RichTable(title=title, title_justify="left", show_header=False, box=None, pad_edge=False, expand=True)
    table.add_column("field", style="bold", no_wrap=True, ratio=1)
    table.add_column("value", ratio=3)
    for key, value in values.items():
        style = "bold yellow" if highlight and key in highlight else ""
        table.add_row(key, Text(cell_text(value), style=style))
    return table


def _rows_table(title: str, rows: list[dict[str, Any]]) -> RichTable:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns and not key.startswith("_")]
    table = RichTable(title=title, title_justify="left", expand=True)
    for column in columns[:10]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell_text(row.get(column)) for column in columns[:10]))
    return table


def record_renderable(record: dict[str, Any], highlight: set[str] | None = None) -> RenderableType:
    """One record in full: fields, line items, what it posts to the ledger, history."""
    parts: list[RenderableType] = [
        Text(f"{record.get('endpoint', '')} {record.get('id', '')}", style="bold"),
        _kv_table("Fields", record.get("fields") or {}, highlight),
    ]
    if record.get("line_items"):
        parts.append(_rows_table("Line items", record["line_items"]))
    if record.get("postings"):
        parts.append(_rows_table("Ledger postings (recomputed)", record["postings"]))
    history = record.get("history")
    if history:
        parts.append(_rows_table("History", history if isinstance(history, list) else [history]))
    return Group(*parts)

"""`RowTable`: a read-only table that draws only the rows on screen, for thousands of rows without lag.

Textual's `DataTable` builds and measures a renderable per cell up front and re-lays out on every change:
with 5,000 organisations that is over a second per refill and >100 ms per page-down on this machine
(measured while writing this widget). This one keeps the rows as plain tuples, fixes column widths from the
column spec (one flexible column takes the rest), and renders only the visible lines through the Line API
(https://textual.textualize.io/guide/widgets/#line-api), so refilling, filtering and scrolling cost the
same for 50 rows or 50,000.

It owns display, cursor and scrolling only. Sorting and filtering belong to the screen that owns the rows;
clicking a header posts `HeaderClicked` so that screen can sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None
    """Fixed width in cells; None makes the column take the space the others leave (at least `min_width`)."""
    justify: Literal["left", "right", "center"] = "left"
    min_width: int = 12


@dataclass(frozen=True)
class Row:
    key: str
    cells: Sequence[Cell]


class RowTable(ScrollView, can_focus=True):
    """A virtual table: a header line plus `rows`, one line each, with a cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--cursor",
        "row-table--sorted",
    }
    DEFAULT_CSS = """
    RowTable { background: $surface; overflow-x: hidden; }
    RowTable > .row-table--header { text-style: bold; background: $panel; color: $text; }
    RowTable > .row-table--sorted { text-style: bold underline; }
    RowTable > .row-table--cursor { background: $block-cursor-blurred-background; }
    RowTable:focus > .row-table--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True)

    class Highlighted(Message):
        def __init__(self, table: RowTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable:
            return self.table

    class Selected(Message):
        """Enter or a double click on a row."""

        def __init__(self, table: RowTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable:
            return self.table

    class HeaderClicked(Message):
        def __init__(self, table: RowTable, column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

        @property
        def control(self) -> RowTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        empty_message: str = "Nothing to show.",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._columns = list(columns)
        self._layout = 0
        self.rows: list[Row] = []
        self.empty_message = empty_message
        self.sorted_by: str | None = None
        self.sort_reverse = False
        self._index: dict[str, int] = {}
        # Rendered lines, by (row identity, cursor?, width, style key): scrolling and typing redraw only the
        # lines that changed instead of re-rendering ~40 Rich Texts per frame.
        # The row is kept with its line and compared by identity, so a new row can never reuse an old line.
        self._lines: LRUCache[tuple[str, bool, int, tuple[object, ...]], tuple[Row, Strip]] = LRUCache(2_000)
        self._style_key: tuple[object, ...] = ()
        self._styles: tuple[Style, Style, Style] = (Style(), Style(), Style())

    @property
    def columns(self) -> list[Column]:
        return self._columns

    @columns.setter
    def columns(self, columns: Sequence[Column]) -> None:
        self._columns = list(columns)
        self._layout += 1
        self.refresh()

    # --- data ----------------------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[Row], *, keep: str | None = None) -> None:
        """Replace every row; the cursor stays on `keep` (or the current row's key) if it is still there."""
        current = keep if keep is not None else self.cursor_key
        self.rows = list(rows)
        self._index = {row.key: index for index, row in enumerate(self.rows)}
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
        target = self._index.get(current, 0) if current is not None else 0
        self.cursor = min(target, max(0, len(self.rows) - 1))
        self.refresh()

    @property
    def cursor_key(self) -> str | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor].key
        return None

    def move_to(self, key: str) -> bool:
        index = self._index.get(key)
        if index is None:
            return False
        self.cursor = index
        return True

    # --- cursor --------------------------------------------------------------------------------------------
    def validate_cursor(self, cursor: int) -> int:
        return max(0, min(cursor, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_cursor_into_view()
        self.refresh()
        self.post_message(self.Highlighted(self, self.cursor_key))

    @property
    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self._body_height:
            self.scroll_to(y=self.cursor - self._body_height + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= self._body_height

    def action_page_down(self) -> None:
        self.cursor += self._body_height

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.rows) - 1

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)
        self._scroll_cursor_into_view()

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            column = self._column_at(event.x)
            if column is not None:
                self.post_message(self.HeaderClicked(self, column.key))
            return
        index = round(self.scroll_offset.y) + event.y - 1
        if 0 <= index < len(self.rows):
            self.cursor = index
            if event.chain >= 2:
                self.action_select()

    # --- layout and rendering ------------------------------------------------------------------------------
    def _current_styles(self) -> tuple[tuple[object, ...], tuple[Style, Style, Style]]:
        """(key, (base, header, cursor)) for this frame; recomputed only when the theme or focus changed."""
        key = (self.app.theme, self.has_focus, self.sorted_by, self.sort_reverse, self._layout)
        if key != self._style_key:
            base = self.rich_style
            self._styles = (
                base,
                base + self.get_component_rich_style("row-table--header"),
                base + self.get_component_rich_style("row-table--cursor"),
            )
            self._style_key = key
        return self._style_key, self._styles

    def _widths(self, total: int) -> list[int]:
        fixed = sum(c.width for c in self.columns if c.width is not None)
        gaps = max(0, len(self.columns) - 1)
        flexible = [c for c in self.columns if c.width is None]
        spare = max(0, total - fixed - gaps)
        widths = []
        for column in self.columns:
            if column.width is not None:
                widths.append(column.width)
            else:
                widths.append(max(column.min_width, spare // len(flexible)))
        return widths

    def _column_at(self, x: int) -> Column | None:
        position = 0
        for column, width in zip(self.columns, self._widths(self.scrollable_content_region.width), strict=True):
            if position <= x < position + width + 1:
                return column
            position += width + 1
        return None

    def _line(self, cells: Sequence[Cell], widths: list[int], width: int, style: Style, header: bool = False) -> Strip:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for index, (column, column_width, cell) in enumerate(zip(self.columns, widths, cells, strict=False)):
            piece = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if header and column.key == self.sorted_by:
                piece = Text(f"{piece.plain} {'▼' if self.sort_reverse else '▲'}")
                piece.stylize(self.get_component_rich_style("row-table--sorted", partial=True))
            piece.truncate(column_width, overflow="ellipsis")
            pad = column_width - piece.cell_len
            if column.justify == "right":
                piece = Text(" " * pad) + piece
            elif column.justify == "center":
                piece = Text(" " * (pad // 2)) + piece + Text(" " * (pad - pad // 2))
            else:
                piece.append(" " * pad)
            if index:
                text.append(" ")
            text.append_text(piece)
        segments = list(Segment.apply_style(text.render(self.app.console), style))
        return Strip(segments).crop_extend(0, width, style)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._widths(width)
        style_key, (base, header_style, cursor_style) = self._current_styles()
        if y == 0:
            return self._line([c.label for c in self.columns], widths, width, header_style, header=True)
        index = round(self.scroll_offset.y) + y - 1
        if not self.rows:
            if y == 1:
                return self._line([self.empty_message], [width], width, base)
            return Strip.blank(width, base)
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        is_cursor = index == self.cursor
        key = (row.key, is_cursor, width, style_key)
        cached = self._lines.get(key)
        if cached is not None and cached[0] is row:
            return cached[1]
        line = self._line(row.cells, widths, width, cursor_style if is_cursor else base)
        self._lines[key] = (row, line)
        return line

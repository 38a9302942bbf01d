"""The point browser and the side-by-side screen, driven with Pilot over real backup points (real restic, the
real query index): views show what the points use case returns, a document opens in full, an attachment is
saved to a file with the bytes the sandbox served, a view exports as CSV, and two points compare."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import OptionList

from appliance.points.queries import Filters
from appliance.points.usecases import PointsService
from tests.integration.test_backup import Installation
from tests.tui.conftest import wait_for
from tui.app import StrongroomApp
from tui.screens.compare import CompareScreen, RecordPairScreen
from tui.screens.point import PointScreen, RecordScreen
from tui.widgets.table import RowTable


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exports and saved attachments go under the person's home: point it at a temporary directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _title(screen: PointScreen) -> str | None:
    return screen.table.title if screen.table is not None else None


async def _point_screen(app: StrongroomApp, pilot: object, org_id: str, snapshot_id: str) -> PointScreen:
    app.open_point(org_id, snapshot_id)
    await wait_for(pilot, lambda: isinstance(app.screen, PointScreen) and app.screen.table, "the point")  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, PointScreen)
    return screen


async def test_views_documents_record_and_attachment(
    installation: Installation, live_app: Callable[..., StrongroomApp], home: Path
) -> None:
    service = PointsService(installation.appliance)
    org = installation.appliance.organisations()[0]
    point = installation.appliance.points(org.org_id)[-1].snapshot_id
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _point_screen(app, pilot, org.org_id, point)
        table = screen.query_one("#point-table", RowTable)
        expected = service.show(org.org_id, point, "summary")
        assert [row.key for row in table.rows] == [f"#{i}" for i in range(len(expected.rows))]
        assert [row.cells[0] for row in table.rows] == [row[0] for row in expected.rows]
        # Down the view list to the trial balance: recomputed vs reported, with the difference column.
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: screen.view == "trial-balance" and _title(screen) != "Summary", "the TB")
        assert screen.table is not None
        assert "difference" in screen.table.columns
        views = screen.query_one("#point-views", OptionList)
        # Invoices, filtered to paid ones: the same rows the use case returns for the same filter.
        views.highlighted = views.get_option_index("invoices")
        await wait_for(pilot, lambda: screen.view == "invoices" and _title(screen) == "invoices", "invoices")
        screen.query_one("#point-filter").focus()
        await pilot.press(*"status:paid")
        paid = service.show(org.org_id, point, "invoices", Filters(status="paid"))
        await wait_for(pilot, lambda: len(table.rows) == len(paid.rows), "the filtered invoices")
        assert {row.key for row in table.rows} == {row[-1] for row in paid.rows}
        # One invoice with an attachment, in full; save the attachment.
        with_attachment = next(
            row[-1] for row in paid.rows if service.record(org.org_id, point, row[-1])["attachments"]
        )
        table.move_to(with_attachment)
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordScreen) and app.screen.record, "the record")
        record_screen = app.screen
        assert isinstance(record_screen, RecordScreen)
        record = service.record(org.org_id, point, with_attachment)
        attachments = record_screen.query_one("#record-attachments", RowTable)
        assert [row.key for row in attachments.rows] == [a["FileName"] for a in record["attachments"]]
        await pilot.press("s")
        await wait_for(pilot, lambda: "Saved" in str(record_screen.query_one("#point-status").render()), "the file")
        saved = home / "strongroom-exports" / org.org_id / point[:8] / "attachments"
        files = list(saved.iterdir())
        assert len(files) == 1
        assert files[0].stat().st_size == record["attachments"][0]["size"]


async def test_export_view_writes_the_csv_the_use_case_would(
    installation: Installation, live_app: Callable[..., StrongroomApp], home: Path
) -> None:
    org = installation.appliance.organisations()[1]
    point = installation.appliance.points(org.org_id)[0].snapshot_id
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _point_screen(app, pilot, org.org_id, point)
        views = screen.query_one("#point-views", OptionList)
        views.highlighted = views.get_option_index("contacts")
        await wait_for(pilot, lambda: screen.view == "contacts" and _title(screen) == "Contacts", "contacts")
        await pilot.press("ctrl+e")
        status = screen.query_one("#point-status")
        await wait_for(pilot, lambda: "Exported to" in str(status.render()), "the export")
    written = home / "strongroom-exports" / org.org_id / point[:8] / "contacts.csv"
    rows = list(csv.reader(written.read_text(encoding="utf-8").splitlines()))
    expected = PointsService(installation.appliance).show(org.org_id, point, "contacts")
    assert rows[0] == expected.columns
    assert len(rows) - 1 == len(expected.rows)


async def test_side_by_side_counts_books_and_one_record(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    org = installation.appliance.organisations()[0]
    before, after = (p.snapshot_id for p in installation.appliance.points(org.org_id)[:2])
    expected = PointsService(installation.appliance).diff(org.org_id, before, after)
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        app.open_compare(org.org_id, before, after)
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.diff, "the comparison")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        changes = screen.query_one("#compare-changes", RowTable)
        counts = {row.key: [str(cell) for cell in row.cells[1:4]] for row in changes.rows}
        for endpoint in expected.endpoints:
            assert counts[endpoint.endpoint] == [
                str(len(endpoint.added)),
                str(len(endpoint.removed)),
                str(len(endpoint.changed)),
            ]
        books = screen.query_one("#compare-books", RowTable)
        assert len(books.rows) == sum(1 for d in expected.trial_balance if d.difference)
        # The day of business changed some invoices: open that type, then one changed record in both points.
        invoices = next(e for e in expected.endpoints if e.endpoint == "Invoices")
        assert invoices.changed, "the sandbox's business day changed no invoice"
        changes.move_to("Invoices")
        changes.focus()
        await pilot.press("enter")
        records = screen.query_one("#compare-records", RowTable)
        await wait_for(pilot, lambda: screen.detail is not None and records.rows, "the invoice changes")
        assert {row.key for row in records.rows} >= {f"changed:{i}" for i in invoices.changed}
        records.move_to(f"changed:{invoices.changed[0]}")
        fields = str(screen.query_one("#compare-fields").render())
        assert "→" in fields
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordPairScreen), "the record pair")
        pair = app.screen
        assert isinstance(pair, RecordPairScreen)
        await wait_for(pilot, lambda: "Loading" not in str(pair.query_one("#pair-after").render()), "both sides")
        await wait_for(pilot, lambda: "Loading" not in str(pair.query_one("#pair-before").render()), "both sides")

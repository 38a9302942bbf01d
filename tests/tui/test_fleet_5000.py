"""The dashboard with 5,000 organisations in a real state database: every one is listed with the right totals,
filtering narrows to exactly the matches, and the cursor pages through the whole list. Timings are measured
in `bench/tui_dashboard.py`, not asserted here."""

from __future__ import annotations

from pathlib import Path

from appliance.service import Appliance
from tests.tui.conftest import frozen_app, wait_for
from tests.tui.fleet_data import build_state, org_id_for
from tui.screens.fleet import FleetScreen
from tui.widgets.table import RowTable

COUNT = 5_000


async def test_five_thousand_organisations(tmp_path: Path) -> None:
    settings, shape = build_state(tmp_path, COUNT)
    app = frozen_app(settings)
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set(), "the fleet")
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        table = screen.query_one("#fleet-table", RowTable)
        assert len(table.rows) == COUNT
        totals = str(screen.query_one("#fleet-totals").render())
        assert f"{COUNT:,} organisations" in totals
        assert f"{shape.healthy:,} healthy" in totals
        assert f"{shape.stale:,} stale" in totals
        assert f"{shape.failing:,} failing" in totals
        assert f"{shape.needs_consent:,} need consent" in totals
        # Two words: a word of the name and a health; fleet_data makes every 20th-by-3-or-13 organisation stale.
        names = {org.org_id: org.name for org in Appliance(settings).organisations()}
        stale = {org_id_for(i) for i in range(COUNT) if i % 20 in (3, 13)}
        expected = {org_id for org_id, name in names.items() if "Nursery" in name and org_id in stale}
        assert expected
        await pilot.press(*"nursery stale")
        assert {row.key for row in table.rows} == expected
        await pilot.press("escape")
        assert len(table.rows) == COUNT
        # Page down through everything: the cursor reaches the last row and the view follows it.
        table.focus()
        await pilot.press("end")
        assert table.cursor == COUNT - 1
        assert table.scroll_offset.y >= COUNT - table.size.height
        await pilot.press("home", "pagedown", "pagedown")
        assert table.cursor == 2 * (table.scrollable_content_region.height - 1)  # a page is the rows on screen

"""The fleet dashboard driven with Pilot: what it shows for a real installation, filtering, sorting, opening an
organisation, and "back up now" making a real new backup point (no daemon: it runs in-process)."""

from __future__ import annotations

from collections.abc import Callable

from appliance.fleet import Health
from appliance.settings import Settings
from tests.integration.test_backup import Installation
from tests.tui.conftest import frozen_app, wait_for
from tests.tui.fleet_data import FleetShape
from tui.app import StrongroomApp
from tui.screens.fleet import FleetScreen
from tui.screens.organisation import OrganisationScreen
from tui.widgets.table import RowTable


def _fleet(app: StrongroomApp) -> FleetScreen:
    screen = app.screen
    assert isinstance(screen, FleetScreen)
    return screen


def _names(screen: FleetScreen) -> list[str]:
    table = screen.query_one("#fleet-table", RowTable)
    return [str(row.cells[0]) for row in table.rows]


async def test_dashboard_lists_every_organisation_with_its_points(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    expected = {o.org_id: o for o in installation.appliance.organisations()}
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set(), "the fleet")
        screen = _fleet(app)
        assert sorted(_names(screen)) == sorted(o.name for o in expected.values())
        for org in screen.organisations:
            assert org.points == len(installation.appliance.points(org.org_id))
            assert org.health is Health.HEALTHY  # both were backed up moments ago
        totals = str(screen.query_one("#fleet-totals").render())
        assert "2 organisations" in totals
        assert "2 healthy" in totals


async def test_typing_filters_and_enter_opens_the_organisation(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    organisations = installation.appliance.organisations()
    target = organisations[-1]
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set(), "the fleet")
        # The search box has the focus: typing filters straight away.
        await pilot.press(*target.name.split()[0].lower())
        assert _names(_fleet(app)) == [target.name]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen), "the organisation screen")
        screen = app.screen
        assert isinstance(screen, OrganisationScreen)
        assert screen.org_id == target.org_id
        await wait_for(pilot, lambda: screen.detail is not None, "the organisation's points")
        table = screen.query_one("#org-points", RowTable)
        assert {row.key for row in table.rows} == {p.snapshot_id for p in installation.appliance.points(target.org_id)}
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_back_up_now_makes_a_new_point(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    org = installation.appliance.organisations()[0]
    before = {p.snapshot_id for p in installation.appliance.points(org.org_id)}
    app = live_app()
    finished: list[FleetScreen.BackupFinished] = []

    def hook(message: object) -> None:
        if isinstance(message, FleetScreen.BackupFinished):
            finished.append(message)

    async with app.run_test(size=(140, 40), message_hook=hook) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set(), "the fleet")
        screen = _fleet(app)
        screen.query_one("#fleet-table", RowTable).move_to(org.org_id)
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: finished or app.last_error, "the backup to finish")
        assert app.last_error is None
        dispatch = finished[0].dispatch
        # No daemon runs in this test, so the job was recorded and run here, through the daemon's job runner.
        assert dispatch.queued_jobs == []
        assert [(job.kind, job.org_id, job.state) for job in dispatch.finished] == [("backup", org.org_id, "done")]
        outcome = dispatch.finished[0].result
        assert outcome["status"] == "succeeded"
        new_point = outcome["snapshot_id"]
        assert new_point not in before
        await wait_for(pilot, lambda: screen.by_id[org.org_id].last_point_id == new_point, "the refreshed row")
        assert "backed up" in str(screen.query_one("#fleet-status").render())
    assert new_point in {p.snapshot_id for p in installation.appliance.points(org.org_id)}
    job = installation.appliance.state.jobs.get(dispatch.finished[0].job_id)
    assert (job.kind, job.state.value, job.result["snapshot_id"]) == ("backup", "done", new_point)


async def test_sorting_by_health_puts_the_urgent_first(fleet_20: tuple[Settings, FleetShape]) -> None:
    settings, shape = fleet_20
    app = frozen_app(settings)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set(), "the fleet")
        screen = _fleet(app)
        await pilot.press("ctrl+s")  # name -> health
        assert screen.sort_by == "health"
        healths = [screen.by_id[row.key].health for row in screen.query_one("#fleet-table", RowTable).rows]
        assert healths[: shape.needs_consent] == [Health.NEEDS_CONSENT] * shape.needs_consent
        assert healths[-shape.healthy :] == [Health.HEALTHY] * shape.healthy
        await pilot.press("ctrl+r")
        reversed_healths = [screen.by_id[row.key].health for row in screen.query_one("#fleet-table", RowTable).rows]
        assert reversed_healths[0] is Health.HEALTHY
        # Filtering by a health word keeps only those organisations.
        await pilot.press(*"failing")
        shown = [screen.by_id[row.key].health for row in screen.query_one("#fleet-table", RowTable).rows]
        assert shown == [Health.FAILING] * shape.failing
        await pilot.press("escape")
        assert len(screen.query_one("#fleet-table", RowTable).rows) == 20

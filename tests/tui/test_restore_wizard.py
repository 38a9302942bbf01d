"""The restore wizard against a real installation: the sandbox over loopback HTTP with write scopes, real
restic and SQLite. A small organisation written through the API is backed up; the wizard restores it into a new,
empty organisation. Asserts on what the wizard shows, on the `restore` job it enqueued, and that its state
(plan, ticks, verification) survives quitting: a second app over the same database finds it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from textual.widgets import OptionList, Select

from appliance.restore import usecases
from appliance.service import Appliance
from tests.integration.restore_support import build_source, new_target, restore_installation
from tests.integration.test_backup import Installation
from tests.tui.conftest import wait_for
from tui.app import StrongroomApp
from tui.backend import Backend
from tui.screens.organisation import OrganisationScreen
from tui.screens.restore import RestoreScreen


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Installation, str, str, str]]:
    with restore_installation(tmp_path_factory.mktemp("tui-restore"), seed=41) as inst:
        app = inst.appliance
        source = new_target(inst, "AU", "Wizard source")
        asyncio.run(build_source(app, source, foreign=None))
        (outcome,) = asyncio.run(app.backup([source], full=True))
        assert outcome.status == "succeeded", outcome.error
        target = new_target(inst, "AU", "Wizard target")
        yield inst, source, app.points(source)[-1].snapshot_id, target


def _wizard(app: StrongroomApp) -> RestoreScreen:
    screen = app.screen
    assert isinstance(screen, RestoreScreen)
    return screen


def _text(screen: RestoreScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def test_the_wizard_plans_enqueues_ticks_verifies_and_is_found_again(
    world: tuple[Installation, str, str, str],
) -> None:
    inst, source, snapshot_id, target = world
    app = StrongroomApp(Backend(Appliance(inst.settings)), open_org=source)
    async with app.run_test(size=(120, 60)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen) and app.screen.detail, "the org")
        await pilot.press("r")
        screen = _wizard(app)
        await wait_for(pilot, lambda: "Wizard target" in str(screen.query_one("#restore-target", Select)._options))
        assert snapshot_id[:8] in _text(screen, "#restore-point")

        await pilot.press("s")  # nothing to run before the plan was reviewed
        assert screen.restore_id is None
        screen.query_one("#restore-target", Select).value = target
        await pilot.press("p")
        await wait_for(pilot, lambda: screen.plan is not None, "the plan")
        shown = _text(screen, "#restore-plan")
        assert "API calls" in shown
        assert "days of Xero's daily limit" in shown
        assert "Will not come back" in shown
        plan = screen.plan
        assert plan is not None
        assert not plan["blocked"], plan["problems"]

        await pilot.press("s")
        await wait_for(pilot, lambda: screen.restore_id is not None and screen.items, "the restore")
        restore_id = screen.restore_id
        assert restore_id is not None
        jobs = usecases.restore_jobs(inst.appliance, restore_id)
        assert [(job.kind, job.params, job.org_id) for job in jobs] == [("restore", {"restore_id": restore_id}, target)]
        # No daemon runs here: the wizard ran the job in this process (a daemon would have picked it up).
        await wait_for(pilot, lambda: f"job {jobs[0].job_id}" in _text(screen, "#restore-run"), "the job")

        # Tick the first manual step ("create the new organisation") with the keyboard.
        options = screen.query_one("#restore-checklist", OptionList)
        options.focus()
        options.highlighted = 0
        await pilot.press("space")
        await wait_for(pilot, lambda: screen.items and screen.items[0].status == "done", "the tick")
        assert "☑ 1." in str(options.get_option_at_index(0).prompt)

    # What the daemon would do with the job (its handler is the restore use case): run it to the end.
    outcome = await asyncio.to_thread(usecases.run_restore, inst.appliance, restore_id)
    assert outcome.status == "finished", outcome

    # Days later: a new app finds the same restore, its plan and its tick; verification compares the reports.
    again = StrongroomApp(Backend(Appliance(inst.settings)), open_org=source)
    async with again.run_test(size=(120, 60)) as pilot:
        await wait_for(pilot, lambda: isinstance(again.screen, OrganisationScreen) and again.screen.detail, "org")
        await pilot.press("r")
        screen = _wizard(again)
        await wait_for(pilot, lambda: screen.restore_id == restore_id and screen.items, "the restore again")
        assert "API calls" in _text(screen, "#restore-plan")
        assert screen.items[0].status == "done"
        await wait_for(pilot, lambda: "finished" in _text(screen, "#restore-run"), "the run status")
        await pilot.press("v")
        await wait_for(
            pilot,
            lambda: "Verified" in _text(screen, "#restore-verify"),
            "the verification",
        )
        shown = _text(screen, "#restore-verify")
        assert "match to the cent" in shown
        assert "difference" in shown
    assert usecases.restores(inst.appliance, source)[-1].verification is not None


async def test_a_finding_opens_the_wizard_on_its_last_clean_point(world: tuple[Installation, str, str, str]) -> None:
    inst, source, snapshot_id, _target = world
    inst.appliance.state.findings.add(
        source,
        rule="duplicate_bills",
        severity="critical",
        summary="bills duplicated by a connected app",
        evidence={},
        point_after="later-point",
        point_before=snapshot_id,
        last_clean_point=snapshot_id,
        suspected_start=None,
    )
    app = StrongroomApp(Backend(Appliance(inst.settings)), open_org=source)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen) and app.screen.detail, "the org")
        await pilot.press("R")
        screen = _wizard(app)
        assert screen.snapshot_id == snapshot_id
        await wait_for(pilot, lambda: snapshot_id[:8] in _text(screen, "#restore-point"), "the point")

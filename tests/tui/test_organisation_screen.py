"""The organisation screen driven with Pilot against a real installation: its points, the integrations
register edited through the form and saved in the state database, and "back up now" with a daemon running
(a real second process registered as the daemon), which must only enqueue a job."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
from textual.widgets import TabbedContent

from appliance.store import JobState, State
from tests.integration.test_backup import Installation
from tests.tui.conftest import wait_for
from tui.app import StrongroomApp
from tui.screens.compare import CompareScreen
from tui.screens.organisation import IntegrationForm, OrganisationScreen
from tui.widgets.table import RowTable


async def _open(app: StrongroomApp, pilot: object, org_id: str) -> OrganisationScreen:
    app.open_organisation(org_id)
    await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen) and app.screen.detail, "the organisation")  # type: ignore[arg-type]
    screen = app.screen
    assert isinstance(screen, OrganisationScreen)
    return screen


async def test_points_newest_first_with_counts(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    org = installation.appliance.organisations()[1]
    points = installation.appliance.points(org.org_id)
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open(app, pilot, org.org_id)
        table = screen.query_one("#org-points", RowTable)
        assert [row.key for row in table.rows] == [p.snapshot_id for p in reversed(points)]
        newest = table.rows[0].cells
        assert newest[3] == points[-1].snapshot_id[:8]
        assert newest[5] == f"{sum(points[-1].summary['records'].values()):,}"
        assert org.name in str(screen.query_one("#org-title").render())


async def test_integrations_register_is_edited_and_saved(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    org = installation.appliance.organisations()[0]
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await _open(app, pilot, org.org_id)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, IntegrationForm), "the form")
        await pilot.press(*"Stripe", "tab", *"app", "tab", *"Aroha", "enter")
        await wait_for(pilot, lambda: screen.detail and screen.detail.organisation.integrations, "the saved entry")
        table = screen.query_one("#org-integrations", RowTable)
        assert [list(row.cells[:3]) for row in table.rows] == [["Stripe", "app", "Aroha"]]
        # Delete it again: the register is what a restore's checklist will read, so it must persist exactly.
        table.focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.detail and not screen.detail.organisation.integrations, "the removal")
    stored = State.open(installation.settings)
    try:
        assert stored.orgs.get(org.org_id).integrations == []
    finally:
        stored.close()


@pytest.fixture
def running_daemon(installation: Installation) -> Iterator[subprocess.Popen[bytes]]:
    """Another process registered as the live daemon (it holds the row, as `strongroom daemon` does)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from appliance.store import State
        from appliance.store.fleet import Fleet
        state = State.open_dir(Path({str(installation.settings.data_dir)!r}))
        Fleet(state.db).register_daemon()
        print("ready", flush=True)
        sys.stdin.read()
        Fleet(state.db).unregister_daemon()
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


async def test_back_up_now_with_a_daemon_only_enqueues(
    installation: Installation, live_app: Callable[..., StrongroomApp], running_daemon: subprocess.Popen[bytes]
) -> None:
    org = installation.appliance.organisations()[1]
    points_before = len(installation.appliance.points(org.org_id))
    app = live_app()
    finished: list[OrganisationScreen.BackupFinished] = []

    def hook(message: object) -> None:
        if isinstance(message, OrganisationScreen.BackupFinished):
            finished.append(message)

    state = State.open(installation.settings)
    try:
        async with app.run_test(size=(140, 40), message_hook=hook) as pilot:
            await _open(app, pilot, org.org_id)
            await pilot.press("b")
            await wait_for(pilot, lambda: finished, "the dispatch")
            assert finished[0].dispatch.finished == []
            (job_id,) = finished[0].dispatch.queued_jobs
            job = state.jobs.get(job_id)
            assert (job.kind, job.org_id, job.state, job.priority) == ("backup", org.org_id, JobState.QUEUED, 50)
            assert f"job #{job_id}" in str(app.screen.query_one("#org-status").render())
        state.jobs.request_cancel(job_id)  # the stand-in daemon never runs it
    finally:
        state.close()
    assert len(installation.appliance.points(org.org_id)) == points_before


async def test_a_finding_opens_the_day_before_the_damage_side_by_side(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    org = installation.appliance.organisations()[0]
    points = installation.appliance.points(org.org_id)
    clean, damaged = points[0].snapshot_id, points[-1].snapshot_id
    state = State.open(installation.settings)
    try:
        finding = state.findings.add(
            org.org_id,
            rule="near_duplicates",
            severity="critical",
            summary="12 invoices duplicated with new ids",
            evidence={"records": []},
            point_after=damaged,
            point_before=clean,
            last_clean_point=clean,
            suspected_start=None,
            fingerprint="tui-test",
        )
        app = live_app()
        async with app.run_test(size=(140, 40)) as pilot:
            screen = await _open(app, pilot, org.org_id)
            findings = screen.query_one("#org-findings", RowTable)
            assert [row.key for row in findings.rows] == [str(finding.finding_id)]
            assert "12 invoices duplicated" in str(findings.rows[0].cells[3])
            # The damaged point is flagged on the timeline, the one before it marked as the last clean point.
            notes = {row.key: str(row.cells[-1]) for row in screen.query_one("#org-points", RowTable).rows}
            assert "damage" in notes[damaged]
            assert "last clean" in notes[clean]
            screen.query_one("#org-tabs", TabbedContent).active = "tab-findings"
            findings.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), "the side-by-side screen")
            compare = app.screen
            assert isinstance(compare, CompareScreen)
            assert (compare.before, compare.after) == (clean, damaged)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen, "the organisation again")
            await pilot.press("k")
            await wait_for(pilot, lambda: screen.detail and screen.detail.findings[0].acknowledged, "acknowledged")
        assert state.findings.list(org.org_id, include_acknowledged=False) == []
    finally:
        state.close()

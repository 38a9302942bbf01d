"""SVG snapshots of every screen at fixed terminal sizes, with the app's clock frozen at `fleet_data.NOW`.

The data is a deterministic fleet written into a real state database (`fleet_data.populate`), so ids, names,
ages and due times are the same on every run. Update after an intended change of the UI with
`pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs in `__snapshots__/`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, TabbedContent

from appliance.fleet import ConnectFlow
from appliance.service import Appliance
from appliance.settings import Settings, XeroApp
from appliance.xero.oauth import PendingAuthorization
from tests.tui.conftest import frozen_app, wait_for
from tests.tui.fleet_data import NOW, FleetShape, org_id_for
from tui.app import StrongroomApp
from tui.backend import Backend
from tui.screens.connect import ConnectScreen
from tui.screens.fleet import FleetScreen
from tui.screens.organisation import OrganisationScreen

SIZE = (120, 36)


def steady_cursor(app: App[None]) -> None:
    """Stop the search box's cursor blinking (a 0.5 s timer): the snapshot must not depend on when it is taken."""
    for screen in app.screen_stack:
        for box in screen.query(Input):
            box.cursor_blink = False


async def _fleet_loaded(pilot: Pilot[None]) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set(), "the fleet")
    steady_cursor(app)


def test_fleet_dashboard(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    assert snap_compare(frozen_app(fleet_20[0]), terminal_size=SIZE, run_before=_fleet_loaded)


def test_fleet_dashboard_filtered_and_sorted(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _fleet_loaded(pilot)
        await pilot.press(*"harbour", "ctrl+s", "down")
        steady_cursor(pilot.app)

    assert snap_compare(frozen_app(fleet_20[0]), terminal_size=SIZE, run_before=run_before)


def test_fleet_dashboard_light_theme(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    app = frozen_app(fleet_20[0], theme="strongroom-light")
    assert snap_compare(app, terminal_size=SIZE, run_before=_fleet_loaded)


def test_organisation(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen) and app.screen.detail, "the org")

    # Organisation 11 has a failed run after its last point: the facts panel shows the error.
    app = frozen_app(fleet_20[0], open_org=org_id_for(11))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_organisation_integrations_tab(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen) and app.screen.detail, "the org")
        app.screen.query_one("#org-tabs", TabbedContent).active = "tab-integrations"
        await pilot.pause()

    app = frozen_app(fleet_20[0], open_org=org_id_for(0))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await _fleet_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(frozen_app(fleet_20[0]), terminal_size=SIZE, run_before=run_before)


class _StillFlow(ConnectFlow):
    """A consent attempt with a fixed address whose browser never comes (the snapshot shows the waiting screen)."""

    async def wait_for_callback(self, timeout: float) -> str:  # noqa: ASYNC109
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _FixedConnectBackend(Backend):
    def begin_connect(self, app_name: str | None = None) -> ConnectFlow:
        app = XeroApp(name="default", client_id="CLIENTID", redirect_uri="http://localhost:8765/callback")
        pending = PendingAuthorization(
            url="https://login.xero.com/identity/connect/authorize?response_type=code&client_id=CLIENTID"
            "&redirect_uri=http%3A%2F%2Flocalhost%3A8765%2Fcallback&state=STATE&code_challenge=CHALLENGE",
            state="STATE",
            code_verifier="VERIFIER",
        )
        return _StillFlow(self.appliance, app, pending)


def test_connect(snap_compare: Any, fleet_20: tuple[Settings, FleetShape], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "bookkeeper")
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.10 50000 192.0.2.20 22")

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        await _fleet_loaded(pilot)
        await pilot.press("ctrl+n")
        await wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, ConnectScreen)
                and "Listening" in str(app.screen.query_one("#connect-status").render())
            ),
            "the consent screen",
        )

    app = StrongroomApp(_FixedConnectBackend(Appliance(fleet_20[0]), clock=lambda: NOW))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_restore_wizard(snap_compare: Any, fleet_20: tuple[Settings, FleetShape]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, OrganisationScreen) and app.screen.detail, "the org")
        await pilot.press("r")
        await wait_for(pilot, lambda: "taken" in str(app.screen.query("#restore-point").first().render()), "the wizard")
        await pilot.pause()

    app = frozen_app(fleet_20[0], open_org=org_id_for(0))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)

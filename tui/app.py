"""`StrongroomApp`: the Textual application, its themes, its command palette and navigation between screens.

The app owns navigation and app-wide state (the theme, the last fleet rows for the command palette, the last
error); each screen owns its own data and loads it through `tui.backend.Backend` on worker threads. It
receives a ready `Backend` (or builds one from `Settings` in `run`), so tests and the demo can inject a clock
and a state directory.

It must not import the appliance's adapters (`appliance.xero`, `appliance.vault`, `appliance.store`):
import-linter enforces it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.theme import Theme

from appliance.fleet import Clock, OrgHealth
from appliance.service import Appliance
from appliance.settings import Settings
from tui import format as fmt
from tui.backend import Backend

DARK_THEME = Theme(
    name="strongroom-dark",
    primary="#4FA3E0",
    secondary="#7AC6A7",
    accent="#F2B134",
    warning="#F2B134",
    error="#E5534B",
    success="#57AB5A",
    foreground="#E6EDF3",
    background="#0D1117",
    surface="#161B22",
    panel="#21262D",
    dark=True,
)
LIGHT_THEME = Theme(
    name="strongroom-light",
    primary="#0969DA",
    secondary="#1A7F37",
    accent="#9A6700",
    warning="#9A6700",
    error="#CF222E",
    success="#1A7F37",
    foreground="#1F2328",
    background="#FFFFFF",
    surface="#F6F8FA",
    panel="#EAEEF2",
    dark=False,
)


class OrganisationCommands(Provider):
    """Command palette: type part of an organisation's name to open it (from the rows already loaded)."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, StrongroomApp)
        matcher = self.matcher(query)
        now = app.backend.clock()
        for org in app.fleet_rows:
            title = f"Open {org.name}"
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    partial(app.open_organisation, org.org_id),
                    help=f"{fmt.HEALTH_LABEL[org.health]} · last point {fmt.ago(org.last_point_at, now)}",
                )

    async def discover(self) -> Hits:
        app = self.app
        assert isinstance(app, StrongroomApp)
        for org in app.fleet_rows[:20]:
            yield DiscoveryHit(f"Open {org.name}", partial(app.open_organisation, org.org_id))


class StrongroomApp(App[None]):
    """The terminal UI of one Strongroom installation."""

    CSS_PATH = "styles.tcss"
    TITLE = "Strongroom"
    COMMANDS: ClassVar = App.COMMANDS | {OrganisationCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("question_mark,f1", "help", "Help", show=False),
    ]

    def __init__(self, backend: Backend, *, open_org: str | None = None, theme: str = DARK_THEME.name) -> None:
        super().__init__()
        self.backend = backend
        self.fleet_rows: list[OrgHealth] = []
        self.last_error: str | None = None
        self._open_org = open_org
        self._initial_theme = theme

    def on_mount(self) -> None:
        self.register_theme(DARK_THEME)
        self.register_theme(LIGHT_THEME)
        self.theme = self._initial_theme
        from tui.screens.fleet import FleetScreen

        self.push_screen(FleetScreen())
        if self._open_org:
            self.open_organisation(self._open_org)

    def on_unmount(self) -> None:
        self.backend.appliance.close()

    # --- navigation ------------------------------------------------------------------------------------------
    def open_organisation(self, org_id: str) -> None:
        from tui.screens.organisation import OrganisationScreen

        self.push_screen(OrganisationScreen(org_id))

    def open_connect(self) -> None:
        from tui.screens.connect import ConnectScreen

        self.push_screen(ConnectScreen())

    def open_point(self, org_id: str, snapshot_id: str) -> None:
        from tui.screens.point import PointScreen

        self.push_screen(PointScreen(org_id, snapshot_id))

    def open_compare(self, org_id: str, older: str, newer: str) -> None:
        from tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(org_id, older, newer))

    def open_restore(self, org_id: str, snapshot_id: str) -> None:
        from tui.screens.restore import RestoreScreen

        self.push_screen(RestoreScreen(org_id, snapshot_id))

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME.name if self.theme == DARK_THEME.name else DARK_THEME.name

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Connect organisations", "Consent in Xero and register what it covers", self.open_connect)
        yield SystemCommand(
            "Light or dark theme", "Switch between Strongroom's light and dark themes", self.action_toggle_theme
        )
        yield SystemCommand("Help", "Keys and what the health words mean", self.action_help)
        backup = getattr(screen, "action_backup", None)
        if backup is not None:
            yield SystemCommand("Back up now", "Back up the selected organisation now", backup)


def run(settings: Settings, *, open_org: str | None = None, light: bool = False, clock: Clock = time.time) -> None:
    """Open the TUI on the installation `settings` describe, until the person quits.

    The demo calls this after its simulated week; `open_org` (an id, id prefix or name) opens that
    organisation over the dashboard, e.g. the one with a damage finding waiting to be explored.
    """
    appliance = Appliance(settings)
    org_id = appliance.organisation(open_org).org_id if open_org else None
    theme = LIGHT_THEME.name if light else DARK_THEME.name
    StrongroomApp(Backend(appliance, clock=clock), open_org=org_id, theme=theme).run()

"""The restore wizard's checklist: SKELETON, waiting for the restore issue's use case.

It shows the steps a restore walks through (point, new target organisation with its connect step, plan
review, run, verification, manual steps from the integrations register) with the point and the register
filled in, so the shape can be reviewed. Nothing is planned, pushed or persisted yet: ticking and persisting
each step (the `restore_checklist` table), the plan's estimates, the daemon job's live progress and the
verification need `appliance/restore`'s use case, which does not exist yet.

It must not write to Xero or the state database.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Static

from appliance.fleet import OrgDetail
from tui import format as fmt
from tui.screens.base import BaseScreen

WAITING = "waiting for the restore use case (issue 7)"


def checklist(detail: OrgDetail, snapshot_id: str) -> list[tuple[str, bool, str]]:
    """(step, done, detail) in order; only the point is decided until the restore use case exists."""
    point = next((p for p in detail.points if p.snapshot_id == snapshot_id), None)
    chosen = f"{snapshot_id[:8]} taken {fmt.when(point.taken_at)} UTC" if point else snapshot_id[:8]
    manual = [entry.get("name", "?") for entry in detail.organisation.integrations]
    return [
        ("Choose the backup point", point is not None, chosen),
        ("Choose the new target organisation (connect it: ctrl+n on the dashboard)", False, WAITING),
        ("Review the plan: estimates, and what will not come back", False, WAITING),
        ("Run the restore (a daemon job; live progress)", False, WAITING),
        ("Verify: trial balance of the point and the target side by side", False, WAITING),
        (
            "Manual steps: reconnect integrations, bank feeds, invite users",
            False,
            "reconnect: " + ", ".join(manual) if manual else "no integration recorded in the register",
        ),
    ]


class RestoreScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    class Loaded(Message):
        def __init__(self, detail: OrgDetail) -> None:
            super().__init__()
            self.detail = detail

    def __init__(self, org_id: str, snapshot_id: str) -> None:
        super().__init__()
        self.org_id = org_id
        self.snapshot_id = snapshot_id

    def compose(self) -> ComposeResult:
        yield Static("Restore", id="restore-title")
        with VerticalScroll(id="restore-steps"):
            yield Static("Loading…", id="restore-checklist")
        yield Static(Text(f"Not available yet: {WAITING}.", style="bold yellow"), id="restore-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Restore (preview)"
        self.load()

    @work(thread=True, exclusive=True, group="restore", exit_on_error=False, name="Loading the organisation")
    def load(self) -> None:
        self.post_message(self.Loaded(self.backend.organisation(self.org_id)))

    def on_restore_screen_loaded(self, message: Loaded) -> None:
        self.query_one("#restore-title", Static).update(
            Text.assemble(("Restore ", "bold"), message.detail.organisation.name)
        )
        text = Text()
        for number, (step, done, detail) in enumerate(checklist(message.detail, self.snapshot_id), start=1):
            text.append(f"{'☑' if done else '☐'} {number}. {step}\n", style="bold" if done else "")
            text.append(f"     {detail}\n\n", style="green" if done else "dim")
        self.query_one("#restore-checklist", Static).update(text)

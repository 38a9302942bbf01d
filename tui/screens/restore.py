"""The restore wizard: point, target organisation, plan review, run (the daemon's `restore` job), verification
and the manual steps, each persisted through `appliance.restore`'s use cases so a person can quit and come
back days later to the same state (the restore, its plan, its ticks and its verification live in the state
database, not in this screen).

It must not write to Xero or the state database itself: every action goes through `Backend` on a worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, OptionList, Select, Static
from textual.widgets.option_list import Option

from appliance.fleet import OrgDetail
from appliance.restore.checklist import build_checklist
from tui import format as fmt
from tui.screens.base import BaseScreen


def _size(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB" if count >= 1_000_000 else f"{count / 1000:.1f} kB"


def plan_text(plan: dict[str, Any]) -> Text:
    """Plan review: estimates and what will not come back."""
    text = Text()
    text.append(
        f"Estimate: {plan['calls']} API calls (at least {plan['floor_calls']}), "
        f"{plan['days']:.1f} days of Xero's daily limit, {_size(int(plan['bytes']))} sent\n"
    )
    for problem in plan.get("problems", []):
        style = "bold red" if problem["severity"] == "blocker" else "yellow"
        text.append(f"  {problem['severity']}: {problem['message']}\n", style=style)
    text.append("Will not come back:\n", style="bold")
    for item in plan.get("not_restored", []):
        text.append(f"  • {item['item']}: {item['reason']}\n", style="dim")
    return text


def verification_text(report: dict[str, Any]) -> Text:
    """Verification: the point's and the target's reports side by side, with a difference column."""
    text = Text()
    verdict = "match to the cent" if report["balanced"] else "DO NOT match"
    text.append(f"Reports compared ({', '.join(report['reports_compared'])}): {verdict}\n", style="bold")
    text.append(f"{'report / row':<44} {'point':>14} {'target':>14} {'difference':>14}\n", style="underline")
    for row in report.get("mismatches", []):
        point, target = row.get("point"), row.get("target")
        try:
            difference = f"{float(target or 0) - float(point or 0):.2f}"
        except ValueError:
            difference = "?"
        label = f"{row['report']} / {row['row']}"[:44]
        text.append(f"{label:<44} {point or '-':>14} {target or '-':>14} {difference:>14}\n")
    if not report.get("mismatches"):
        text.append("  every row is equal in the point and the target\n", style="green")
    text.append(f"Restored: {report['restored_share']:.1%}; exceptions: {len(report.get('exceptions', []))}\n")
    return text


class RestoreScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p", "plan", "Plan"),
        Binding("s", "start", "Run"),
        Binding("v", "verify", "Verify"),
        Binding("space", "tick", "Tick step"),
    ]

    class Loaded(Message):
        def __init__(self, detail: OrgDetail, targets: list[tuple[str, str]], restore: Any | None) -> None:
            super().__init__()
            self.detail = detail
            self.targets = targets
            self.restore = restore

    class Refreshed(Message):
        def __init__(self, status: dict[str, Any], items: list[Any], restore: Any) -> None:
            super().__init__()
            self.status = status
            self.items = items
            self.restore = restore

    class Planned(Message):
        def __init__(self, plan: dict[str, Any]) -> None:
            super().__init__()
            self.plan = plan

    def __init__(self, org_id: str, snapshot_id: str) -> None:
        super().__init__()
        self.org_id = org_id
        self.snapshot_id = snapshot_id
        self.restore_id: str | None = None
        self.plan: dict[str, Any] | None = None
        self.items: list[Any] = []
        self.enqueued_jobs: list[int] = []

    def compose(self) -> ComposeResult:
        yield Static("Restore", id="restore-title")
        yield Static("1. Backup point: …", id="restore-point")
        yield Select[str]([], prompt="2. New target organisation (connect it first: ctrl+n)", id="restore-target")
        with VerticalScroll(id="restore-steps"):
            yield Static("3. Plan: choose a target, then p", id="restore-plan")
            yield Static("4. Run: s enqueues the restore job", id="restore-run")
            yield Static("5. Verify: v compares the trial balance", id="restore-verify")
            yield OptionList(id="restore-checklist")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Restore wizard"
        self.load()
        self.set_interval(2.0, self.poll)

    @work(thread=True, exclusive=True, group="restore", exit_on_error=False, name="Loading the restore")
    def load(self) -> None:
        detail = self.backend.organisation(self.org_id)
        targets = [(health.name, health.org_id) for health in self.backend.fleet_status()]
        targets = [(name, org) for name, org in targets if org != self.org_id]
        self.post_message(self.Loaded(detail, targets, self.backend.restore_for(self.org_id, self.snapshot_id)))

    def on_restore_screen_loaded(self, message: Loaded) -> None:
        detail = message.detail
        self.query_one("#restore-title", Static).update(Text.assemble(("Restore ", "bold"), detail.organisation.name))
        point = next((p for p in detail.points if p.snapshot_id == self.snapshot_id), None)
        taken = f" taken {fmt.when(point.taken_at)} UTC" if point else ""
        self.query_one("#restore-point", Static).update(f"☑ 1. Backup point {self.snapshot_id[:8]}{taken}")
        select = self.query_one("#restore-target", Select)
        select.set_options(message.targets)
        if message.restore is None:
            # Before a restore exists, the checklist it will carry (nothing ticked, nothing written yet).
            self._show_items(build_checklist({}, {}, detail.organisation.integrations))
        else:
            self._adopt(message.restore)
            select.value = message.restore.target_tenant_id
            self.poll()

    def _adopt(self, restore: Any) -> None:
        self.restore_id = restore.restore_id
        if restore.plan:
            self.plan = restore.plan
            self.query_one("#restore-plan", Static).update(Text("☑ 3. Plan\n") + plan_text(restore.plan))
        if restore.verification:
            self.query_one("#restore-verify", Static).update(
                Text("☑ 5. Verified\n") + verification_text(restore.verification)
            )

    def _target(self) -> str | None:
        value = self.query_one("#restore-target", Select).value
        return value if isinstance(value, str) else None

    def action_plan(self) -> None:
        target = self._target()
        if target is None:
            self.notify("Choose the new target organisation first.", severity="warning")
            return
        self.query_one("#restore-plan", Static).update("3. Planning (reads the point and the target)…")
        self.run_in_thread(self._plan, target, name="Planning the restore", group="restore-plan")

    def _plan(self, target: str) -> None:
        self.post_message(self.Planned(self.backend.plan_restore(self.org_id, self.snapshot_id, target)))

    def on_restore_screen_planned(self, message: Planned) -> None:
        self.plan = message.plan
        mark = "☒" if message.plan.get("blocked") else "☑"
        self.query_one("#restore-plan", Static).update(Text(f"{mark} 3. Plan\n") + plan_text(message.plan))

    def action_start(self) -> None:
        target = self._target()
        if self.restore_id is None and (target is None or self.plan is None):
            self.notify("Review the plan first (p).", severity="warning")
            return
        self.run_in_thread(self._start, target, name="Starting the restore", group="restore-start")

    def _start(self, target: str | None) -> None:
        if self.restore_id is None:
            assert target is not None
            restore = self.backend.start_restore(self.org_id, self.snapshot_id, target)
            self.restore_id = restore.restore_id
        else:
            self.backend.enqueue_restore(self.restore_id)
        status = self.backend.restore_status(self.restore_id)
        if status.get("job"):
            self.enqueued_jobs.append(status["job"]["job_id"])
        self.poll_now()

    def poll(self) -> None:
        if self.restore_id is not None:
            self.run_in_thread(self.poll_now, name="Reading the restore", group="restore-poll")

    def poll_now(self) -> None:
        assert self.restore_id is not None
        status = self.backend.restore_status(self.restore_id)
        items = self.backend.restore_checklist(self.restore_id)
        self.post_message(self.Refreshed(status, items, None))

    def on_restore_screen_refreshed(self, message: Refreshed) -> None:
        status = message.status
        job = status.get("job") or {}
        progress = job.get("progress") or {}
        done = "☑" if status["status"] == "finished" else "☐"
        text = Text(f"{done} 4. Run: {status['status']}", style="bold")
        if status.get("step"):
            text.append(f", step {status['step']}")
        text.append(f", {status['calls']} calls")
        if job:
            text.append(f"; job {job['job_id']} {job['state']}")
        if progress:
            text.append(" " + ", ".join(f"{k} {v}" for k, v in progress.items() if not isinstance(v, dict)))
        if status.get("error"):
            text.append(f"\n   {status['error']}", style="red")
        self.query_one("#restore-run", Static).update(text)
        self._show_items(message.items)

    def _show_items(self, items: list[Any]) -> None:
        self.items = items
        options = self.query_one("#restore-checklist", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        for item in items:
            mark = {"done": "☑", "partial": "◐", "running": "…"}.get(item.status, "☐")
            label = f"{mark} {item.number}. {item.title}" + (f" ({item.detail})" if item.detail else "")
            options.add_option(Option(label, id=str(item.number)))
        if highlighted is not None and items:
            options.highlighted = min(highlighted, len(items) - 1)

    def action_tick(self) -> None:
        options = self.query_one("#restore-checklist", OptionList)
        if self.restore_id is None or options.highlighted is None:
            self.notify("Start the restore first: its checklist is kept with it.", severity="warning")
            return
        item = self.items[options.highlighted]
        if item.kind != "manual":
            self.notify("That step is automatic: the restore run ticks it.")
            return
        self.run_in_thread(self._tick, item.number, item.status != "done", name="Ticking", group="restore-tick")

    def _tick(self, number: int, ticked: bool) -> None:
        assert self.restore_id is not None
        self.backend.tick_restore_item(self.restore_id, number, ticked=ticked)
        self.poll_now()

    def action_verify(self) -> None:
        if self.restore_id is None:
            self.notify("Run the restore first.", severity="warning")
            return
        self.query_one("#restore-verify", Static).update("5. Verifying (reads the target's reports)…")
        self.run_in_thread(self._verify, name="Verifying the restore", group="restore-verify")

    def _verify(self) -> None:
        assert self.restore_id is not None
        report = self.backend.verify_restore(self.restore_id)
        self.app.call_from_thread(
            self.query_one("#restore-verify", Static).update, Text("☑ 5. Verified\n") + verification_text(report)
        )

"""The restore checklist: the steps a person does in Xero around a restore, beside the automatic ones.

This module owns the list (PURE `build_checklist`): manual steps before (create the new organisation with the
same country and base currency, connect it, remove lock dates) and after (verify, set lock dates, reconnect
bank feeds, re-add users, reconnect each integration of the organisation's integrations register, re-apply
branding and invoice settings, re-enter budgets), with the automatic steps and their live status from the
journal in between. Ticks are persisted per restore by `appliance.store.restores` (`tick`, `ticks`).

It must not talk to Xero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from appliance.restore.plan import STEPS


@dataclass(frozen=True)
class ChecklistItem:
    number: int
    key: str
    title: str
    kind: str
    """"manual" (a person ticks it) or "automatic" (its status comes from the run)."""
    status: str
    """manual: "done" or "todo"; automatic: "done", "partial", "running", "todo"."""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_BEFORE = (
    ("create_org", "Create the new organisation in Xero with the same country, base currency and tax settings"),
    ("connect_target", "Connect the new organisation to Strongroom (`strongroom connect`)"),
    ("lock_dates_off", "Make sure the new organisation has no lock dates before the restore"),
)
_AFTER = (
    ("verify", "Run `strongroom restore verify` and read the exceptions"),
    ("lock_dates_on", "Set the period and end-of-year lock dates again"),
    ("bank_feeds", "Reconnect the bank feeds; mark imported statement lines that duplicate restored items"),
    ("users", "Re-invite the users with their roles and permissions"),
    ("branding", "Re-create branding themes and re-apply invoice settings and reminders"),
    ("budgets", "Re-enter budgets"),
)


def build_checklist(
    counts: Mapping[str, Mapping[str, int]],
    ticks: Mapping[str, float],
    integrations: Iterable[Mapping[str, Any]],
    *,
    running_step: str | None = None,
) -> list[ChecklistItem]:
    items: list[ChecklistItem] = []

    def manual(key: str, title: str, detail: str = "") -> None:
        items.append(ChecklistItem(len(items) + 1, key, title, "manual", "done" if key in ticks else "todo", detail))

    for key, title in _BEFORE:
        manual(key, title)
    for step in STEPS:
        statuses = counts.get(step.name, {})
        total = sum(statuses.values())
        done = statuses.get("done", 0) + statuses.get("skipped", 0)
        refused = statuses.get("refused", 0)
        if total == 0:
            status = "done" if counts else "todo"
        elif done == total:
            status = "done"
        elif done + refused == total:
            status = "partial"
        elif step.name == running_step:
            status = "running"
        else:
            status = "todo"
        detail = f"{statuses.get('done', 0)}/{total} written" + (f", {refused} refused" if refused else "")
        items.append(
            ChecklistItem(
                len(items) + 1, f"auto:{step.name}", f"Restore {step.description}", "automatic", status, detail
            )
        )
    for key, title in _AFTER:
        manual(key, title)
    for integration in integrations:
        name = str(integration.get("name") or integration.get("app") or "integration")
        purpose = str(integration.get("purpose") or integration.get("description") or "")
        manual(f"integration:{name}", f"Reconnect {name}", purpose)
    return items

"""Comparing two backup points of one organisation: what was added, removed and changed, field by field, and
what that did to the books.

Set-based on record hashes: each index holds the sha256 of every record's canonical JSON (`_hash`), so the
added, removed and changed ids of an endpoint are three set operations on `{id: hash}` maps and never parse a
record; only changed records of the endpoints asked for are parsed, for field-level differences. Line items
are matched by `LineItemID` (Xero's stable line id, https://developer.xero.com/documentation/api/accounting/invoices
"LineItemID ... If LineItemID is provided the existing line item is updated"), so a line moved to another
account shows as that line's AccountCode changing, not as a line removed and another added.

The two points need not be neighbours. `field_changes` and `diff_hashes` are pure; the rest reads two open
`PointIndex`es and must not touch restic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.errors import UsageError
from appliance.points import ledger
from appliance.points.index import PointIndex
from appliance.points.queries import financial_year_end, report_day

REFERENCE_ENDPOINTS = ("Accounts", "TaxRates", "TrackingCategories")
"""Reference data whose changes are always listed field by field: they change the meaning of everything else."""
_ID_KEYS = (
    "LineItemID",
    "PaymentID",
    "AllocationID",
    "CreditNoteID",
    "PrepaymentID",
    "OverpaymentID",
    "TrackingOptionID",
    "AttachmentID",
)


@dataclass(frozen=True)
class FieldChange:
    path: str
    """Dotted path: `Status`, `Contact.Name`, `LineItems[<LineItemID>].AccountCode`, `Payments[2]`."""
    before: Any
    after: Any


@dataclass
class EndpointDiff:
    endpoint: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    details: dict[str, list[FieldChange]] = field(default_factory=dict)
    """Changed record id -> its field changes (for the endpoints asked for in detail)."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class PointDiff:
    org_id: str
    before: str
    after: str
    endpoints: list[EndpointDiff]
    trial_balance: list[ledger.Difference] = field(default_factory=list)
    profit_and_loss: list[ledger.Difference] = field(default_factory=list)
    as_at: str | None = None
    period: tuple[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "before": self.before,
            "after": self.after,
            "endpoints": [
                {
                    "endpoint": e.endpoint,
                    "added": e.added,
                    "removed": e.removed,
                    "changed": e.changed,
                    "unchanged": e.unchanged,
                    "details": {k: [asdict(c) for c in v] for k, v in e.details.items()},
                }
                for e in self.endpoints
                if not e.empty
            ],
            "trial_balance": {
                "as_at": self.as_at,
                "accounts": [d.as_dict() for d in self.trial_balance if d.difference],
            },
            "profit_and_loss": {
                "period": list(self.period) if self.period else None,
                "accounts": [d.as_dict() for d in self.profit_and_loss if d.difference],
            },
        }


# -- pure ----------------------------------------------------------------------------------------------------
def diff_hashes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, changed) ids, each sorted, from two `{id: content hash}` maps."""
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    return added, removed, changed


def _list_key(items: Sequence[Any]) -> str | None:
    """The id field that identifies the elements of a list of objects, if every element has one."""
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    for key in _ID_KEYS:
        if all(i.get(key) for i in items):
            return key
    return None


def field_changes(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Every leaf that differs between two JSON values; lists of objects with an id (`LineItemID`,
    `PaymentID`, ...) are matched by that id, other lists position by position."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes: list[FieldChange] = []
        for key in sorted(set(before) | set(after)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in before:
                changes.append(FieldChange(sub, None, after[key]))
            elif key not in after:
                changes.append(FieldChange(sub, before[key], None))
            elif before[key] != after[key]:
                changes.extend(field_changes(before[key], after[key], sub))
        return changes
    if isinstance(before, list) and isinstance(after, list):
        key = _list_key(before + after)
        if key is not None:
            old = {str(i[key]): i for i in before}
            new = {str(i[key]): i for i in after}
            changes = []
            for item_id in sorted(set(old) | set(new)):
                sub = f"{path}[{item_id}]"
                if item_id not in old:
                    changes.append(FieldChange(sub, None, new[item_id]))
                elif item_id not in new:
                    changes.append(FieldChange(sub, old[item_id], None))
                elif old[item_id] != new[item_id]:
                    changes.extend(field_changes(old[item_id], new[item_id], sub))
            return changes
        if len(before) == len(after):
            changes = []
            for number, (x, y) in enumerate(zip(before, after, strict=True)):
                if x != y:
                    changes.extend(field_changes(x, y, f"{path}[{number}]"))
            return changes
    return [] if before == after else [FieldChange(path, before, after)]


# -- two points ----------------------------------------------------------------------------------------------
def diff_endpoint(
    before: PointIndex, after: PointIndex, endpoint: str, *, details: bool = False, detail_limit: int = 500
) -> EndpointDiff:
    added, removed, changed = diff_hashes(before.hashes(endpoint), after.hashes(endpoint))
    result = EndpointDiff(endpoint, added, removed, changed)
    result.unchanged = len(after.hashes(endpoint)) - len(added) - len(changed)
    if details:
        for record_id in changed[:detail_limit]:
            result.details[record_id] = field_changes(before.raw(endpoint, record_id), after.raw(endpoint, record_id))
    return result


def record_diff(before: PointIndex, after: PointIndex, endpoint: str, record_id: str) -> list[FieldChange]:
    """Field-level differences of one record between two points (a missing record compares as `{}`)."""
    return field_changes(before.raw(endpoint, record_id) or {}, after.raw(endpoint, record_id) or {})


def diff_points(
    before: PointIndex,
    after: PointIndex,
    *,
    types: Iterable[str] | None = None,
    details: bool = True,
    books: bool = True,
) -> PointDiff:
    """Compare two points of one organisation: per endpoint added/removed/changed; field-level details for
    the reference endpoints and for `types` when given; trial balance and P&L side by side, both computed
    from each point's documents as at the later point's report day (so a retroactive change shows)."""
    if before.org_id != after.org_id:
        raise UsageError("the two points belong to different organisations")
    wanted = list(types) if types else None
    endpoints = sorted(set(before.endpoints()) | set(after.endpoints()))
    if wanted is not None:
        unknown = [t for t in wanted if t not in endpoints]
        if unknown:
            raise UsageError(f"unknown type(s) {', '.join(unknown)}", hint=f"one of: {', '.join(endpoints)}")
        endpoints = wanted
    diffs = [
        diff_endpoint(before, after, name, details=details and (name in REFERENCE_ENDPOINTS or wanted is not None))
        for name in endpoints
    ]
    result = PointDiff(before.org_id, before.snapshot_id, after.snapshot_id, diffs)
    if books:
        day = max(report_day(before), report_day(after))
        fy_end = financial_year_end(after)
        chart = after.chart()
        old_chart = before.chart()
        labels = {a.account_id: a.label for a in [*old_chart.accounts, *chart.accounts]}
        old_tb = ledger.trial_balance(old_chart, before.ledger_totals().lines, day, fy_end)
        new_tb = ledger.trial_balance(chart, after.ledger_totals().lines, day, fy_end)
        result.as_at = day.isoformat()
        result.trial_balance = ledger.compare(new_tb.balances, old_tb.balances, labels)
        start = ledger.financial_year_start(day, *fy_end)
        result.period = (start.isoformat(), day.isoformat())
        result.profit_and_loss = ledger.compare(
            ledger.profit_and_loss(chart, after.ledger_totals().lines, start, day),
            ledger.profit_and_loss(old_chart, before.ledger_totals().lines, start, day),
            labels,
        )
    return result


def books_side_by_side(diff: PointDiff, which: str = "trial_balance") -> list[list[str]]:
    """Rows (account, before, after, difference) of a diff's trial balance or P&L, changed accounts only."""
    differences: list[ledger.Difference] = getattr(diff, which)
    return [
        [d.label, ledger.money(d.theirs or 0), ledger.money(d.ours), ledger.money(d.difference)]
        for d in differences
        if d.difference
    ]

"""Verification of a restore: the target's reports against the point's, to the cent, and the exceptions.

This module owns the comparison (PURE functions `flatten_report`, `compare_reports`, `build_report`) and one
async reader (`read_target_reports`) that asks the target for the same reports, with the same parameters,
that the backup captured (`reports/<Name>.json` in the point: Xero's own TrialBalance, ProfitAndLoss and
BalanceSheet on the backup day; research §3 calls them the verification oracle).

A report is flattened to `{(section, row label, column): cents}`; rows are matched by label (an account's
name and code, which a restore keeps). The report lists every mismatch, every record not restored with its
reason (from the journal), counts per type, and the share restored automatically.

It must not write anything to Xero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.restore.plan import NOT_RESTORED
from appliance.restore.transform import cents

REPORTS = ("TrialBalance", "ProfitAndLoss", "BalanceSheet")


@dataclass
class Mismatch:
    report: str
    row: str
    column: str
    point: str | None
    target: str | None


@dataclass
class Unrestored:
    step: str
    source_id: str
    status: str
    reason: str


@dataclass
class VerifyReport:
    restore_id: str
    reports_compared: list[str]
    reports_missing: list[str]
    mismatches: list[Mismatch]
    counts: dict[str, dict[str, int]]
    exceptions: list[Unrestored]
    restored_share: float
    not_restored: list[dict[str, Any]] = field(default_factory=lambda: [asdict(item) for item in NOT_RESTORED])

    @property
    def balanced(self) -> bool:
        return not self.mismatches and bool(self.reports_compared)

    def as_dict(self) -> dict[str, Any]:
        return {
            "restore_id": self.restore_id,
            "balanced": self.balanced,
            "reports_compared": self.reports_compared,
            "reports_missing": self.reports_missing,
            "mismatches": [asdict(item) for item in self.mismatches],
            "counts": self.counts,
            "exceptions": [asdict(item) for item in self.exceptions],
            "restored_share": self.restored_share,
            "not_restored": self.not_restored,
        }

    def markdown(self) -> str:
        lines = [f"# Restore {self.restore_id[:8]}: verification", ""]
        verdict = "match to the cent" if self.balanced else "DO NOT match"
        lines.append(f"Reports ({', '.join(self.reports_compared) or 'none'}): **{verdict}**.")
        if self.reports_missing:
            lines.append(f"Not compared (not in the point): {', '.join(self.reports_missing)}.")
        lines.append(f"Restored automatically: {self.restored_share:.1%} of the elements.")
        lines += [
            "",
            "## Counts per step",
            "",
            "| step | done | refused | skipped | pending |",
            "|---|---|---|---|---|",
        ]
        for step, statuses in self.counts.items():
            lines.append(
                f"| {step} | {statuses.get('done', 0)} | {statuses.get('refused', 0)} | {statuses.get('skipped', 0)}"
                f" | {statuses.get('pending', 0) + statuses.get('sent', 0)} |"
            )
        if self.mismatches:
            lines += [
                "",
                "## Report differences",
                "",
                "| report | row | column | point | target |",
                "|---|---|---|---|---|",
            ]
            for item in self.mismatches:
                lines.append(f"| {item.report} | {item.row} | {item.column} | {item.point} | {item.target} |")
        lines += ["", "## Records not restored", ""]
        if not self.exceptions:
            lines.append("None.")
        for record in self.exceptions:
            lines.append(f"- {record.step} `{record.source_id}` ({record.status}): {record.reason}")
        lines += ["", "## Not restorable through Xero's API", ""]
        for entry in self.not_restored:
            lines.append(f"- **{entry['item']}**: {entry['reason']} ({entry['source']})")
        return "\n".join(lines) + "\n"


def _value(cell: Mapping[str, Any]) -> str:
    return str(cell.get("Value", "") if cell.get("Value") is not None else "")


def flatten_report(document: Mapping[str, Any]) -> dict[tuple[str, str, str], int]:
    """Xero's report JSON (`{"Reports": [{"Rows": [...]}]}`) -> `{(section, row, column): cents}`."""
    reports = document.get("Reports") or []
    if not reports:
        return {}
    report = reports[0]
    columns: list[str] = []
    values: dict[tuple[str, str, str], int] = {}

    def walk(rows: Iterable[Mapping[str, Any]], section: str) -> None:
        nonlocal columns
        for row in rows:
            kind = row.get("RowType")
            if kind == "Header":
                columns = [_value(cell) for cell in row.get("Cells") or []]
            elif kind == "Section":
                walk(row.get("Rows") or [], str(row.get("Title") or section))
            elif kind in ("Row", "SummaryRow"):
                cells = row.get("Cells") or []
                if not cells:
                    continue
                label = _value(cells[0])
                for index, cell in enumerate(cells[1:], start=1):
                    text = _value(cell).replace(",", "")
                    if text == "":
                        continue
                    try:
                        amount = cents(float(text))
                    except ValueError:
                        continue
                    column = columns[index] if index < len(columns) else str(index)
                    values[(section, label, column)] = amount

    walk(report.get("Rows") or [], "")
    return values


def compare_reports(name: str, point: Mapping[str, Any], target: Mapping[str, Any]) -> list[Mismatch]:
    ours, theirs = flatten_report(point), flatten_report(target)
    mismatches = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if (a or 0) != (b or 0):
            section, row, column = key
            mismatches.append(
                Mismatch(
                    name,
                    f"{section} / {row}" if section else row,
                    column,
                    None if a is None else f"{a / 100:.2f}",
                    None if b is None else f"{b / 100:.2f}",
                )
            )
    return mismatches


def report_params(document: Mapping[str, Any]) -> dict[str, str]:
    """The parameters the backup used for a captured report (stored beside it as `params`)."""
    params = document.get("params")
    return {str(k): str(v) for k, v in params.items()} if isinstance(params, Mapping) else {}


def build_report(
    restore_id: str,
    point_reports: Mapping[str, Mapping[str, Any] | None],
    target_reports: Mapping[str, Mapping[str, Any]],
    counts: Mapping[str, Mapping[str, int]],
    exceptions: Iterable[Unrestored],
) -> VerifyReport:
    compared, missing, mismatches = [], [], []
    for name in REPORTS:
        point = point_reports.get(name)
        if not point or name not in target_reports:
            missing.append(name)
            continue
        compared.append(name)
        mismatches.extend(compare_reports(name, point, target_reports[name]))
    done = sum(statuses.get("done", 0) for statuses in counts.values())
    total = sum(sum(statuses.values()) for statuses in counts.values())
    skipped = sum(statuses.get("skipped", 0) for statuses in counts.values())
    share = done / (total - skipped) if total - skipped > 0 else 1.0
    return VerifyReport(
        restore_id,
        compared,
        missing,
        mismatches,
        {step: dict(statuses) for step, statuses in counts.items()},
        list(exceptions),
        round(share, 4),
    )

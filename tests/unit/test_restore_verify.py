"""Report comparison to the cent and the restore checklist (pure)."""

from __future__ import annotations

from typing import Any

from appliance.restore.checklist import build_checklist
from appliance.restore.verify import Unrestored, build_report, compare_reports, flatten_report


def _tb(sales: str, bank: str) -> dict[str, Any]:
    return {
        "Reports": [
            {
                "ReportName": "Trial Balance",
                "Rows": [
                    {"RowType": "Header", "Cells": [{"Value": "Account"}, {"Value": "Debit"}, {"Value": "Credit"}]},
                    {
                        "RowType": "Section",
                        "Title": "Revenue",
                        "Rows": [
                            {"RowType": "Row", "Cells": [{"Value": "Sales (200)"}, {"Value": ""}, {"Value": sales}]}
                        ],
                    },
                    {
                        "RowType": "Section",
                        "Title": "Assets",
                        "Rows": [
                            {"RowType": "Row", "Cells": [{"Value": "Bank (090)"}, {"Value": bank}, {"Value": ""}]}
                        ],
                    },
                ],
            }
        ]
    }


def test_flatten_keys_by_section_row_and_column_in_cents() -> None:
    assert flatten_report(_tb("1,234.56", "1234.56")) == {
        ("Revenue", "Sales (200)", "Credit"): 123456,
        ("Assets", "Bank (090)", "Debit"): 123456,
    }


def test_a_one_cent_difference_is_reported_and_equal_reports_are_not() -> None:
    assert compare_reports("TrialBalance", _tb("10.00", "10.00"), _tb("10.00", "10.00")) == []
    (mismatch,) = compare_reports("TrialBalance", _tb("10.00", "10.00"), _tb("10.01", "10.00"))
    assert (mismatch.row, mismatch.column, mismatch.point, mismatch.target) == (
        "Revenue / Sales (200)",
        "Credit",
        "10.00",
        "10.01",
    )


def test_report_names_every_exception_and_the_share() -> None:
    counts = {"invoices": {"done": 9, "refused": 1}, "payments": {"done": 5, "skipped": 2}}
    exceptions = [Unrestored("invoices", "inv-1", "refused", "The tracking category does not exist")]
    report = build_report(
        "r" * 36, {"TrialBalance": _tb("1", "1")}, {"TrialBalance": _tb("1", "1")}, counts, exceptions
    )
    assert report.balanced
    assert report.reports_missing == ["ProfitAndLoss", "BalanceSheet"]
    assert report.restored_share == round(14 / 15, 4)
    markdown = report.markdown()
    assert "inv-1" in markdown
    assert "The tracking category does not exist" in markdown
    assert "Bank statement lines" in markdown


def test_checklist_puts_manual_steps_around_the_automatic_ones_and_lists_integrations() -> None:
    counts = {"invoices": {"done": 3, "refused": 1}, "contacts": {"done": 2}}
    items = build_checklist(counts, {"create_org": 1.0}, [{"name": "Stripe", "purpose": "card payments"}])
    assert items[0].key == "create_org"
    assert items[0].status == "done"
    assert items[1].status == "todo"
    by_key = {item.key: item for item in items}
    assert by_key["auto:contacts"].status == "done"
    assert by_key["auto:invoices"].status == "partial"
    assert "1 refused" in by_key["auto:invoices"].detail
    assert items[-1].key == "integration:Stripe"
    assert items[-1].kind == "manual"
    assert [item.number for item in items] == list(range(1, len(items) + 1))

"""Ledger maths of a backup point on hand-made documents: postings, balances, reports, report parsing."""

from __future__ import annotations

from datetime import date

from appliance.points import ledger

DEBTORS, CREDITORS, GST, BANK, SALES, RENT, GAIN, RETAINED, FX_BANK = (
    "a-610",
    "a-800",
    "a-820",
    "a-090",
    "a-200",
    "a-469",
    "a-499",
    "a-960",
    "a-093",
)


def _chart() -> ledger.Chart:
    rows = [
        (DEBTORS, "610", "CURRENT", "DEBTORS"),
        (CREDITORS, "800", "CURRLIAB", "CREDITORS"),
        (GST, "820", "CURRLIAB", "GST"),
        (BANK, "090", "BANK", None),
        (FX_BANK, "093", "BANK", None),
        (SALES, "200", "REVENUE", None),
        (RENT, "469", "OVERHEADS", None),
        (GAIN, "499", "OVERHEADS", "REALISEDCURRENCYGAIN"),
        (RETAINED, "960", "EQUITY", "RETAINEDEARNINGS"),
    ]
    return ledger.Chart.from_records(
        {"AccountID": i, "Code": c, "Name": f"Account {c}", "Type": t, **({"SystemAccount": s} if s else {})}
        for i, c, t, s in rows
    )


def _xero_date(day: str) -> str:
    from datetime import UTC, datetime

    ms = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
    return f"/Date({ms}+0000)/"


def _invoice(invoice_id: str, *, day: str, status: str = "AUTHORISED", kind: str = "ACCREC", **extra: object) -> dict:
    doc = {
        "InvoiceID": invoice_id,
        "Type": kind,
        "Status": status,
        "Date": _xero_date(day),
        "LineAmountTypes": "Exclusive",
        "CurrencyRate": 1.0,
        "Contact": {"ContactID": "c-1"},
        "LineItems": [
            {
                "LineItemID": f"{invoice_id}-1",
                "AccountCode": "200",
                "LineAmount": 100.0,
                "TaxAmount": 15.0,
                "TaxType": "OUTPUT2",
            }
        ],
        "Total": 115.0,
        "Payments": [],
    }
    doc.update(extra)
    return doc


def _sum(postings: ledger.Postings) -> int:
    return sum(p.cents for p in postings.lines)


def test_an_approved_invoice_posts_revenue_tax_and_receivable_and_balances() -> None:
    result = ledger.postings(_chart(), {"Invoices": [_invoice("i1", day="2026-03-02")]})
    assert result.warnings == []
    assert ledger.balances(result.lines) == {SALES: -10_000, GST: -1_500, DEBTORS: 11_500}
    assert _sum(result) == 0


def test_drafts_post_nothing_and_a_void_is_reversed_in_its_own_period() -> None:
    # Voided on 10 March: Xero takes the invoice out of its own period's reports (a P&L from 5 March on must
    # not see the reversal; found when the P&L window's start fell between an invoice and its void).
    voided = _invoice("i2", day="2026-03-02", status="VOIDED", UpdatedDateUTC=_xero_date("2026-03-10"))
    result = ledger.postings(_chart(), {"Invoices": [_invoice("i3", day="2026-03-02", status="DRAFT"), voided]})
    assert ledger.balances(result.lines, to_day="2026-03-05") == {}
    assert ledger.balances(result.lines, from_day="2026-03-05") == {}
    assert {(line.day, line.cents) for line in result.lines if line.account_id == SALES} == {
        ("2026-03-02", -10_000),
        ("2026-03-02", 10_000),
    }


def test_a_foreign_payment_posts_the_rate_difference_to_realised_gains() -> None:
    # 115 EUR invoiced at 0.5 EUR per base unit (230.00 base), paid when the rate is 0.46 (250.00 base).
    invoice = _invoice("i4", day="2026-03-02", CurrencyRate=0.5)
    payment = {
        "PaymentID": "p1",
        "PaymentType": "ACCRECPAYMENT",
        "Status": "AUTHORISED",
        "Date": _xero_date("2026-03-20"),
        "Amount": 115.0,
        "CurrencyRate": 0.46,
        "Account": {"AccountID": FX_BANK},
        "Invoice": {"InvoiceID": "i4"},
    }
    result = ledger.postings(_chart(), {"Invoices": [invoice], "Payments": [payment]})
    totals = ledger.balances(result.lines)
    assert totals[FX_BANK] == 25_000
    assert DEBTORS not in totals  # the receivable is cleared at the invoice's own rate
    assert totals[GAIN] == -2_000
    assert _sum(result) == 0


def test_inclusive_amounts_and_rounding_drift_keep_every_journal_balanced() -> None:
    doc = _invoice("i5", day="2026-03-02", LineAmountTypes="Inclusive", CurrencyRate=0.7)
    doc["LineItems"] = [
        {"AccountCode": "200", "LineAmount": 33.33, "TaxAmount": 4.35, "TaxType": "OUTPUT2"},
        {"AccountCode": "200", "LineAmount": 33.33, "TaxAmount": 4.35, "TaxType": "OUTPUT2"},
    ]
    result = ledger.postings(_chart(), {"Invoices": [doc]})
    assert result.warnings == []
    assert _sum(result) == 0
    assert ledger.balances(result.lines)[DEBTORS] == round(66.66 / 0.7 * 100)


def test_unknown_accounts_are_reported_not_guessed() -> None:
    doc = _invoice("i6", day="2026-03-02")
    doc["LineItems"][0]["AccountCode"] = "999"
    result = ledger.postings(_chart(), {"Invoices": [doc]})
    assert result.lines == []
    assert "999" in result.warnings[0]


def test_trial_balance_rolls_earlier_years_profit_into_retained_earnings() -> None:
    chart = _chart()
    documents = {"Invoices": [_invoice("old", day="2025-05-01"), _invoice("new", day="2025-08-01")]}
    lines = ledger.postings(chart, documents).lines
    closing = ledger.trial_balance(chart, lines, date(2025, 9, 30), fy_end=(30, 6))
    assert closing.year_start == date(2025, 7, 1)
    assert closing.balances[SALES] == -10_000  # this financial year only
    assert closing.balances[RETAINED] == -10_000  # last year's sale, as profit
    assert closing.balances[DEBTORS] == 23_000
    assert sum(closing.balances.values()) == 0


def test_financial_year_start_around_the_year_end() -> None:
    assert ledger.financial_year_start(date(2026, 6, 30), 30, 6) == date(2025, 7, 1)
    assert ledger.financial_year_start(date(2026, 7, 1), 30, 6) == date(2026, 7, 1)
    assert ledger.financial_year_start(date(2026, 2, 28), 31, 12) == date(2026, 1, 1)


def _report(rows: list[dict]) -> dict:
    return {"Reports": [{"ReportID": "X", "Rows": [{"RowType": "Section", "Rows": rows}]}]}


def _row(account_id: str, *values: str) -> dict:
    attributes = [{"Id": "account", "Value": account_id}]
    return {"RowType": "Row", "Cells": [{"Value": "label", "Attributes": attributes}, *({"Value": v} for v in values)]}


def test_xero_reports_parse_into_debit_positive_cents() -> None:
    chart = _chart()
    trial = _report([_row(SALES, "0.00", "0.00", "0.00", "1,000.50"), _row(BANK, "0.00", "0.00", "20.00", "0.00")])
    assert ledger.report_accounts(trial, chart, "TrialBalance") == {SALES: -100_050, BANK: 2_000}
    pnl = _report([_row(SALES, "1000.50"), _row(RENT, "(5.00)")])
    assert ledger.report_accounts(pnl, chart, "ProfitAndLoss") == {SALES: -100_050, RENT: -500}
    sheet = _report([_row(BANK, "20.00"), _row(CREDITORS, "7.25")])
    assert ledger.report_accounts(sheet, chart, "BalanceSheet") == {BANK: 2_000, CREDITORS: -725}


def test_compare_lists_every_account_and_flags_differences() -> None:
    differences = ledger.compare({"a": 100, "b": 5}, {"a": 100, "c": 7})
    assert [(d.key, d.difference) for d in differences] == [("a", 0), ("b", 5), ("c", -7)]
    assert [d.key for d in ledger.mismatches(differences)] == ["b", "c"]
    assert ledger.mismatches(ledger.compare({"a": 1}, None)) == []


def test_aged_counts_only_payments_and_credits_dated_by_the_day() -> None:
    invoice = _invoice(
        "i7",
        day="2026-03-01",
        Payments=[
            {"Date": _xero_date("2026-03-05"), "Amount": 15.0},
            {"Date": _xero_date("2026-04-05"), "Amount": 50.0},
        ],
        CreditNotes=[{"Date": _xero_date("2026-03-06"), "AppliedAmount": 10.0}],
    )
    lines = ledger.aged([invoice, _invoice("i8", day="2026-05-01")], date(2026, 3, 31), "ACCREC")
    assert [(line.invoice_id, line.due) for line in lines] == [("i7", 9_000)]
    assert ledger.aged_by_contact(lines) == {"c-1": 9_000}


def test_daily_totals_give_every_balance_the_postings_give() -> None:
    documents = {
        "Invoices": [
            _invoice("a", day="2026-03-02"),
            _invoice("b", day="2026-03-02"),
            _invoice("c", day="2026-03-09", kind="ACCPAY"),
            _invoice("d", day="2026-03-02", status="VOIDED", UpdatedDateUTC=_xero_date("2026-03-10")),
            _invoice("e", day="2026-04-01"),
        ]
    }
    postings = ledger.postings(_chart(), documents)
    postings.warnings.append("kept")
    totals = ledger.daily_totals(postings)
    assert len(totals.lines) < len(postings.lines)
    assert totals.warnings == postings.warnings
    assert {line.endpoint for line in totals.lines} == {""}
    assert len({(line.account_id, line.day) for line in totals.lines}) == len(totals.lines)
    days = [None, "2026-03-01", "2026-03-02", "2026-03-05", "2026-03-09", "2026-04-01", "2026-05-01"]
    for from_day in days:
        for to_day in days:
            assert ledger.balances(totals.lines, from_day=from_day, to_day=to_day) == ledger.balances(
                postings.lines, from_day=from_day, to_day=to_day
            )

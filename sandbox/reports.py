"""Xero's financial reports, computed from a sandbox organisation's own double-entry ledger.

This module owns the report maths and their Xero response shape (`{"Reports": [ReportWithRow]}` as in
`xero_accounting.yaml` and https://developer.xero.com/documentation/api/accounting/reports): TrialBalance,
ProfitAndLoss, BalanceSheet, BankSummary, AgedReceivablesByContact and AgedPayablesByContact. Every figure
comes from `journal_lines` (or, for the aged reports, from the documents and their payments/allocations),
so the reports agree with the transactions by construction and tests can check one against another.

It must not write anything, and it does not parse HTTP: `report()` takes the query parameters as strings
(`date`, `fromDate`, `toDate`, `contactId`) and raises `ValueError` for bad ones; the server turns that into
Xero's 400. Not modelled: `periods`/`timeframe` comparisons, tracking filters, `standardLayout`,
`paymentsOnly` (cash basis).

Conventions followed: amounts are strings with two decimals; income, liabilities and equity show positive
when in credit; P&L accounts restart each financial year and their earlier years roll into Retained Earnings
(https://central.xero.com/s/article/Retained-earnings-and-current-year-earnings).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.countries import ACCOUNT_CLASS
from sandbox.ledger import DAY_MS, balances, from_cents, to_cents
from sandbox.store import SandboxStore, ms_date

REPORT_NAMES = (
    "TrialBalance",
    "ProfitAndLoss",
    "BalanceSheet",
    "BankSummary",
    "AgedReceivablesByContact",
    "AgedPayablesByContact",
)

_PL_SECTIONS: tuple[tuple[str, tuple[str, ...], str, int], ...] = (
    # (title, account types, total label, sign to show positive)
    ("Income", ("REVENUE", "SALES"), "Total Income", -1),
    ("Less Cost of Sales", ("DIRECTCOSTS",), "Total Cost of Sales", 1),
    ("Plus Other Income", ("OTHERINCOME",), "Total Other Income", -1),
    ("Less Operating Expenses", ("EXPENSE", "OVERHEADS", "DEPRECIATN"), "Total Operating Expenses", 1),
)
_BS_ASSETS = (
    ("Bank", ("BANK",)),
    ("Current Assets", ("CURRENT", "PREPAYMENT", "INVENTORY")),
    ("Fixed Assets", ("FIXED",)),
    ("Non-current Assets", ("NONCURRENT",)),
)
_BS_LIABILITIES = (
    ("Current Liabilities", ("CURRLIAB", "LIABILITY", "PAYG")),
    ("Non-current Liabilities", ("TERMLIAB",)),
)
_TB_SECTIONS = (
    ("Revenue", "REVENUE"),
    ("Expenses", "EXPENSE"),
    ("Assets", "ASSET"),
    ("Liabilities", "LIABILITY"),
    ("Equity", "EQUITY"),
)


# -- dates -------------------------------------------------------------------------------------
def parse_date(value: str | None, *, default_ms: int) -> int:
    """A report date parameter (`YYYY-MM-DD`) as the epoch ms of that UTC day's start."""
    if not value:
        return default_ms - default_ms % DAY_MS
    try:
        parsed = datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"invalid date {value!r}; expected YYYY-MM-DD") from None
    return int(parsed.timestamp() * 1000)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _long_date(ms: int) -> str:
    d = _day(ms)
    return f"{d.day} {d:%B %Y}"


def financial_year_start(date_ms: int, end_day: int, end_month: int) -> int:
    """Start (ms) of the financial year containing `date_ms`, for a year ending on end_day/end_month."""
    d = _day(date_ms)
    for year in (d.year, d.year - 1, d.year - 2):
        end = _safe_date(year, end_month, end_day)
        if end < d:
            return _ms(end + timedelta(days=1))
    return _ms(date(d.year - 1, 1, 1))


def _safe_date(year: int, month: int, day: int) -> date:
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            day -= 1


# -- ledger access -----------------------------------------------------------------------------
def trial_balance(store: SandboxStore, tenant_id: str, date_ms: int | None = None) -> dict[str, float]:
    """Net (debit +) per AccountID of every journal dated up to `date_ms` inclusive (all, if None).

    The values sum to zero for a balanced ledger."""
    end = None if date_ms is None else date_ms - date_ms % DAY_MS + DAY_MS - 1
    return {account_id: from_cents(cents) for account_id, cents in balances(store, tenant_id, to_ms=end).items()}


class LedgerView:
    """One organisation's accounts and ledger, as the reports read them."""

    def __init__(self, store: SandboxStore, tenant_id: str) -> None:
        row = next(iter(store.query("SELECT name, doc FROM orgs WHERE tenant_id=?", (tenant_id,))), None)
        if row is None:
            raise LookupError(f"no organisation {tenant_id}")
        self.store = store
        self.tenant_id = tenant_id
        self.name = row[0]
        self.doc = json.loads(row[1])
        self.fy_end = (int(self.doc.get("FinancialYearEndDay", 31)), int(self.doc.get("FinancialYearEndMonth", 12)))
        self.accounts = sorted(store.iter_records(tenant_id, "Accounts"), key=lambda a: (a.get("Code", ""), a["Name"]))
        self.by_id = {a["AccountID"]: a for a in self.accounts}
        self.retained = next((a for a in self.accounts if a.get("SystemAccount") == "RETAINEDEARNINGS"), None)

    def cents(self, *, to_ms: int | None = None, from_ms: int | None = None) -> dict[str, int]:
        """Net cents per account for journal dates from_ms..to_ms (whole days, inclusive)."""
        end = None if to_ms is None else to_ms - to_ms % DAY_MS + DAY_MS - 1
        return balances(self.store, self.tenant_id, to_ms=end, from_ms=from_ms)

    def closing(self, date_ms: int) -> tuple[dict[str, int], int]:
        """Balances as at `date_ms` with P&L accounts since the financial year start, and the earlier
        years' profit (credit negative) that Xero shows inside Retained Earnings."""
        fy_start = financial_year_start(date_ms, *self.fy_end)
        everything = self.cents(to_ms=date_ms)
        this_year = self.cents(from_ms=fy_start, to_ms=date_ms)
        result: dict[str, int] = {}
        prior_profit = 0
        for account_id, cents in everything.items():
            account = self.by_id.get(account_id)
            if account is not None and _is_pl(account):
                prior_profit += cents - this_year.get(account_id, 0)
                if this_year.get(account_id):
                    result[account_id] = this_year[account_id]
            else:
                result[account_id] = cents
        return result, prior_profit


def _is_pl(account: Mapping[str, Any]) -> bool:
    return ACCOUNT_CLASS.get(account["Type"]) in ("REVENUE", "EXPENSE")


# -- response shape ----------------------------------------------------------------------------
def _money(cents: int) -> str:
    return f"{from_cents(cents):.2f}"


def _cell(value: str, account_id: str | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"Value": value}
    if account_id:
        cell["Attributes"] = [{"Value": account_id, "Id": "account"}]
    return cell


def _row(values: list[str], account_id: str | None = None, row_type: str = "Row") -> dict[str, Any]:
    return {"RowType": row_type, "Cells": [_cell(v, account_id) for v in values]}


def _label(account: Mapping[str, Any]) -> str:
    return f"{account['Name']} ({account['Code']})" if account.get("Code") else account["Name"]


def _envelope(
    report_id: str, name: str, titles: list[str], report_date_ms: int, rows: list[dict[str, Any]], now_ms: int
) -> dict[str, Any]:
    return {
        "Reports": [
            {
                "ReportID": report_id,
                "ReportName": name,
                "ReportType": report_id,
                "ReportTitles": titles,
                "ReportDate": _long_date(report_date_ms),
                "UpdatedDateUTC": ms_date(now_ms),
                "Fields": [],
                "Rows": rows,
            }
        ]
    }


# -- reports -----------------------------------------------------------------------------------
def _trial_balance_report(org: LedgerView, date_ms: int, now_ms: int) -> dict[str, Any]:
    closing, prior_profit = org.closing(date_ms)
    month_start = _ms(_day(date_ms).replace(day=1))
    month = org.cents(from_ms=month_start, to_ms=date_ms)
    if org.retained is not None and prior_profit:
        closing[org.retained["AccountID"]] = closing.get(org.retained["AccountID"], 0) + prior_profit
    rows: list[dict[str, Any]] = [_row(["Account", "Debit", "Credit", "YTD Debit", "YTD Credit"], row_type="Header")]
    totals = [0, 0, 0, 0]
    for title, account_class in _TB_SECTIONS:
        section_rows = []
        for account in org.accounts:
            if ACCOUNT_CLASS.get(account["Type"]) != account_class:
                continue
            m = month.get(account["AccountID"], 0)
            y = closing.get(account["AccountID"], 0)
            if not m and not y:
                continue
            values = [max(m, 0), max(-m, 0), max(y, 0), max(-y, 0)]
            totals = [t + v for t, v in zip(totals, values, strict=True)]
            section_rows.append(_row([_label(account), *(_money(v) for v in values)], account["AccountID"]))
        rows.append({"RowType": "Section", "Title": title, "Rows": section_rows})
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [_row(["Total", *(_money(v) for v in totals)], row_type="SummaryRow")],
        }
    )
    titles = ["Trial Balance", org.name, f"As at {_long_date(date_ms)}"]
    return _envelope("TrialBalance", "Trial Balance", titles, date_ms, rows, now_ms)


def profit_and_loss_cents(org: LedgerView, from_ms: int, to_ms: int) -> tuple[dict[str, int], int]:
    movement = org.cents(from_ms=from_ms, to_ms=to_ms)
    pl = {k: v for k, v in movement.items() if k in org.by_id and _is_pl(org.by_id[k])}
    return pl, -sum(pl.values())


def _profit_and_loss_report(org: LedgerView, from_ms: int, to_ms: int, now_ms: int) -> dict[str, Any]:
    if from_ms > to_ms:
        raise ValueError("fromDate is after toDate")
    movement, net_profit = profit_and_loss_cents(org, from_ms, to_ms)
    rows: list[dict[str, Any]] = [_row(["", f"{_day(to_ms):%d %b %y}"], row_type="Header")]
    section_totals: dict[str, int] = {}
    for title, types, total_label, sign in _PL_SECTIONS:
        section_rows = []
        total = 0
        for account in org.accounts:
            if account["Type"] in types and movement.get(account["AccountID"]):
                value = sign * movement[account["AccountID"]]
                total += value
                section_rows.append(_row([_label(account), _money(value)], account["AccountID"]))
        section_rows.append(_row([total_label, _money(total)], row_type="SummaryRow"))
        section_totals[title] = total
        rows.append({"RowType": "Section", "Title": title, "Rows": section_rows})
        if title == "Less Cost of Sales":
            gross = section_totals["Income"] - total
            rows.append({"RowType": "Section", "Title": "", "Rows": [_row(["Gross Profit", _money(gross)])]})
    rows.append({"RowType": "Section", "Title": "", "Rows": [_row(["Net Profit", _money(net_profit)])]})
    titles = ["Profit and Loss", org.name, f"{_long_date(from_ms)} to {_long_date(to_ms)}"]
    return _envelope("ProfitAndLoss", "Profit and Loss", titles, to_ms, rows, now_ms)


def balance_sheet_figures(org: LedgerView, date_ms: int) -> dict[str, int]:
    """Totals of the balance sheet in cents: assets, liabilities, equity, current year earnings."""
    closing, prior_profit = org.closing(date_ms)
    assets = liabilities = equity = current = 0
    for account_id, cents in closing.items():
        account = org.by_id.get(account_id)
        if account is None:
            continue
        account_class = ACCOUNT_CLASS.get(account["Type"])
        if account_class == "ASSET":
            assets += cents
        elif account_class == "LIABILITY":
            liabilities -= cents
        elif account_class == "EQUITY":
            equity -= cents
        else:
            current -= cents
    retained = -prior_profit
    return {
        "assets": assets,
        "liabilities": liabilities,
        "current_year_earnings": current,
        "retained_from_prior_years": retained,
        "equity": equity + current + retained,
    }


def _balance_sheet_report(org: LedgerView, date_ms: int, now_ms: int) -> dict[str, Any]:
    closing, prior_profit = org.closing(date_ms)
    figures = balance_sheet_figures(org, date_ms)
    rows: list[dict[str, Any]] = [_row(["", _long_date(date_ms)], row_type="Header")]

    def block(groups: tuple[tuple[str, tuple[str, ...]], ...], sign: int) -> None:
        for title, types in groups:
            section_rows = []
            total = 0
            for account in org.accounts:
                cents = closing.get(account["AccountID"], 0)
                if account["Type"] in types and cents:
                    total += sign * cents
                    section_rows.append(_row([_label(account), _money(sign * cents)], account["AccountID"]))
            if section_rows:
                section_rows.append(_row([f"Total {title}", _money(total)], row_type="SummaryRow"))
                rows.append({"RowType": "Section", "Title": title, "Rows": section_rows})

    rows.append({"RowType": "Section", "Title": "Assets", "Rows": []})
    block(_BS_ASSETS, 1)
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [_row(["Total Assets", _money(figures["assets"])], row_type="SummaryRow")],
        }
    )
    rows.append({"RowType": "Section", "Title": "Liabilities", "Rows": []})
    block(_BS_LIABILITIES, -1)
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [_row(["Total Liabilities", _money(figures["liabilities"])], row_type="SummaryRow")],
        }
    )
    rows.append(
        {
            "RowType": "Section",
            "Title": "",
            "Rows": [_row(["Net Assets", _money(figures["assets"] - figures["liabilities"])])],
        }
    )
    equity_rows = [_row(["Current Year Earnings", _money(figures["current_year_earnings"])])]
    for account in org.accounts:
        if account["Type"] != "EQUITY":
            continue
        cents = -closing.get(account["AccountID"], 0)
        if account.get("SystemAccount") == "RETAINEDEARNINGS":
            cents += -prior_profit
        if cents:
            equity_rows.append(_row([_label(account), _money(cents)], account["AccountID"]))
    equity_rows.append(_row(["Total Equity", _money(figures["equity"])], row_type="SummaryRow"))
    rows.append({"RowType": "Section", "Title": "Equity", "Rows": equity_rows})
    titles = ["Balance Sheet", org.name, f"As at {_long_date(date_ms)}"]
    return _envelope("BalanceSheet", "Balance Sheet", titles, date_ms, rows, now_ms)


def bank_summary_figures(org: LedgerView, from_ms: int, to_ms: int) -> dict[str, tuple[int, int, int, int]]:
    """Per bank AccountID: (opening, received, spent, closing) in base-currency cents."""
    opening = org.cents(to_ms=from_ms - DAY_MS) if from_ms > 0 else {}
    rows = org.store.query(
        "SELECT account_id, sum(CASE WHEN net_amount > 0 THEN CAST(round(net_amount * 100) AS INTEGER) ELSE 0 END),"
        " sum(CASE WHEN net_amount < 0 THEN CAST(round(-net_amount * 100) AS INTEGER) ELSE 0 END)"
        " FROM journal_lines WHERE tenant_id=? AND account_type='BANK' AND date_ms >= ? AND date_ms <= ?"
        " GROUP BY account_id",
        (org.tenant_id, from_ms, to_ms - to_ms % DAY_MS + DAY_MS - 1),
    )
    moves = {account_id: (int(received or 0), int(spent or 0)) for account_id, received, spent in rows}
    result = {}
    for account in org.accounts:
        if account["Type"] != "BANK":
            continue
        account_id = account["AccountID"]
        start = opening.get(account_id, 0)
        received, spent = moves.get(account_id, (0, 0))
        result[account_id] = (start, received, spent, start + received - spent)
    return result


def _bank_summary_report(org: LedgerView, from_ms: int, to_ms: int, now_ms: int) -> dict[str, Any]:
    if from_ms > to_ms:
        raise ValueError("fromDate is after toDate")
    figures = bank_summary_figures(org, from_ms, to_ms)
    rows: list[dict[str, Any]] = [
        _row(["Bank Accounts", "Opening Balance", "Cash Received", "Cash Spent", "Closing Balance"], row_type="Header")
    ]
    section_rows = []
    totals = [0, 0, 0, 0]
    for account_id, values in figures.items():
        account = org.by_id[account_id]
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        section_rows.append(_row([account["Name"], *(_money(v) for v in values)], account_id))
    section_rows.append(_row(["Total", *(_money(v) for v in totals)], row_type="SummaryRow"))
    rows.append({"RowType": "Section", "Title": "", "Rows": section_rows})
    titles = ["Bank Summary", org.name, f"From {_long_date(from_ms)} to {_long_date(to_ms)}"]
    return _envelope("BankSummary", "Bank Summary", titles, to_ms, rows, now_ms)


def aged_by_contact(
    org: LedgerView, contact_id: str, date_ms: int, kind: str
) -> list[tuple[dict[str, Any], int, int, int, int]]:
    """Open invoices (kind ACCREC or ACCPAY) of a contact as at `date_ms`:
    (invoice, total, paid, credited, due) in cents, counting only payments and allocations dated by then."""
    result = []
    for (doc_text,) in org.store.query(
        "SELECT doc FROM records WHERE tenant_id=? AND endpoint='Invoices' AND contact_id=? AND type=?"
        " AND status IN ('AUTHORISED','PAID') AND date_ms <= ? ORDER BY date_ms, record_id",
        (org.tenant_id, contact_id, kind, date_ms),
    ):
        invoice = json.loads(doc_text)
        total = to_cents(invoice["Total"])

        def dated(entries: list[dict[str, Any]], field: str) -> int:
            return sum(to_cents(e.get(field, 0.0)) for e in entries if _date_ms(e.get("Date")) <= date_ms)

        paid = dated(invoice.get("Payments", []), "Amount")
        credited = (
            dated(invoice.get("CreditNotes", []), "AppliedAmount")
            + dated(invoice.get("Prepayments", []), "AppliedAmount")
            + dated(invoice.get("Overpayments", []), "AppliedAmount")
        )
        due = total - paid - credited
        if due:
            result.append((invoice, total, paid, credited, due))
    return result


def _date_ms(value: str | None) -> int:
    if not value:
        return 0
    inner = value[value.index("(") + 1 : value.index(")")]
    cut = max(inner.rfind("+"), inner.rfind("-"))
    return int(inner[:cut] if cut > 0 else inner)


def _aged_report(org: LedgerView, contact_id: str, date_ms: int, kind: str, now_ms: int) -> dict[str, Any]:
    contact = org.store.get_record(org.tenant_id, "Contacts", contact_id)
    if contact is None:
        raise ValueError(f"contactId {contact_id!r} is not a contact of this organisation")
    rows: list[dict[str, Any]] = [
        _row(["Date", "Reference", "Due Date", "Total", "Paid", "Credited", "Due"], row_type="Header")
    ]
    section_rows = []
    totals = [0, 0, 0, 0]
    for invoice, *values in aged_by_contact(org, contact_id, date_ms, kind):
        totals = [t + v for t, v in zip(totals, values, strict=True)]
        section_rows.append(
            {
                "RowType": "Row",
                "Cells": [
                    _cell(invoice["DateString"][:10]),
                    {
                        "Value": invoice.get("InvoiceNumber") or invoice.get("Reference", ""),
                        "Attributes": [{"Value": invoice["InvoiceID"], "Id": "invoiceID"}],
                    },
                    _cell(invoice["DueDateString"][:10] if invoice.get("DueDateString") else ""),
                    *(_cell(_money(v)) for v in values),
                ],
            }
        )
    section_rows.append(_row(["Total", "", "", *(_money(v) for v in totals)], row_type="SummaryRow"))
    rows.append({"RowType": "Section", "Title": "", "Rows": section_rows})
    label = "Invoices" if kind == "ACCREC" else "Bills"
    report_id = "AgedReceivablesByContact" if kind == "ACCREC" else "AgedPayablesByContact"
    titles = [label, contact["Name"], f"As at {_long_date(date_ms)}", f"Showing payments to {_long_date(date_ms)}"]
    name = "Aged Receivables By Contact" if kind == "ACCREC" else "Aged Payables By Contact"
    return _envelope(report_id, name, titles, date_ms, rows, now_ms)


def report(store: SandboxStore, tenant_id: str, name: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The full response body for `GET /Reports/{name}` with query `params`.

    Raises `LookupError` for an unknown report or organisation and `ValueError` for bad parameters."""
    if name not in REPORT_NAMES:
        raise LookupError(f"unknown report {name!r}")
    org = LedgerView(store, tenant_id)
    now = store.now_ms()
    today = now - now % DAY_MS
    if name == "TrialBalance":
        return _trial_balance_report(org, parse_date(params.get("date"), default_ms=today), now)
    if name == "BalanceSheet":
        return _balance_sheet_report(org, parse_date(params.get("date"), default_ms=today), now)
    if name in ("ProfitAndLoss", "BankSummary"):
        # Xero's default period is the current month to date.
        to_ms = parse_date(params.get("toDate"), default_ms=today)
        from_ms = parse_date(params.get("fromDate"), default_ms=_ms(_day(to_ms).replace(day=1)))
        if name == "ProfitAndLoss":
            return _profit_and_loss_report(org, from_ms, to_ms, now)
        return _bank_summary_report(org, from_ms, to_ms, now)
    contact_id = params.get("contactId") or params.get("contactID") or ""
    if not contact_id:
        raise ValueError("contactId is required")
    date_ms = parse_date(params.get("date"), default_ms=today)
    kind = "ACCREC" if name == "AgedReceivablesByContact" else "ACCPAY"
    return _aged_report(org, contact_id, date_ms, kind, now)

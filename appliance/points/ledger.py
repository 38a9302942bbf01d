"""Ledger maths over one backup point: from Xero documents to postings, balances and reports, and back
from Xero's report JSON to comparable figures.

This module owns the double-entry rules a backup needs to check itself without Xero's `/Journals` (which a
backup only holds on the tiers that allow it): every document that moves money becomes postings (account,
day, base-currency cents, debit positive), and the reports are sums over postings. The rules follow Xero's
accounting model as the sandbox implements it (`sandbox/ledger.py`, which cites Xero's documentation):

- approved invoices, bills and credit notes post their lines, tax per tax type to the GST system account, and
  the total to Accounts Receivable/Payable; bank transactions (spend/receive, prepayments, overpayments) post
  against their bank account; payments post bank vs the control account at the payment's rate, the control
  side at the paid document's rate, the difference to realised currency gains
  (https://central.xero.com/s/article/Realised-currency-gains-and-losses); transfers move between banks;
  posted manual journals post their lines; allocating a prepayment moves it onto the control account;
- `CurrencyRate` is units of the document currency per unit of base currency, so base = amount / rate,
  rounded to the cent line by line; the control line takes the document total converted once and the first
  line absorbs the cents the two roundings differ by;
- voided (and deleted approved) documents keep their original postings and are reversed on the same day:
  Xero takes a voided or deleted document out of the reports of its own period, which is why it refuses a
  void in a locked period (https://central.xero.com/s/article/Void-an-invoice; the sandbox does the same,
  `sandbox.ledger.Ledger.reverse`); drafts post nothing;
- reports: P&L accounts (class REVENUE and EXPENSE) restart each financial year, earlier years roll into the
  Retained Earnings system account (https://central.xero.com/s/article/Retained-earnings-and-current-year-earnings).

It is PURE: plain dicts in, dataclasses and dicts out. No file, database, network or clock access.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

Cents = int
_XERO_DATE_RE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
PL_CLASSES = frozenset({"REVENUE", "EXPENSE"})
RECEIVABLE_TYPES = frozenset({"ACCREC", "ACCRECCREDIT"})
# Sign of item lines per document type: bills and spend money debit their lines; sales credit them.
_ITEM_SIGN = {"ACCREC": -1, "ACCPAY": 1, "ACCRECCREDIT": 1, "ACCPAYCREDIT": -1}
# Types of Xero's `AccountType` enum and the class Xero reports them under (xero_accounting.yaml `AccountType`),
# used when an account record lacks `Class`.
TYPE_CLASS = {
    "BANK": "ASSET",
    "CURRENT": "ASSET",
    "FIXED": "ASSET",
    "INVENTORY": "ASSET",
    "NONCURRENT": "ASSET",
    "PREPAYMENT": "ASSET",
    "CURRLIAB": "LIABILITY",
    "LIABILITY": "LIABILITY",
    "PAYG": "LIABILITY",
    "TERMLIAB": "LIABILITY",
    "EQUITY": "EQUITY",
    "DEPRECIATN": "EXPENSE",
    "DIRECTCOSTS": "EXPENSE",
    "EXPENSE": "EXPENSE",
    "OVERHEADS": "EXPENSE",
    "SUPERANNUATIONEXPENSE": "EXPENSE",
    "WAGESEXPENSE": "EXPENSE",
    "OTHERINCOME": "REVENUE",
    "REVENUE": "REVENUE",
    "SALES": "REVENUE",
}


# -- values --------------------------------------------------------------------------------------------------
def to_cents(amount: Any) -> Cents:
    return round(float(amount or 0.0) * 100)


def to_base(amount: float, rate: Any) -> Cents:
    """Cents of base currency for `amount` of a document currency at Xero's `CurrencyRate`."""
    if not rate or rate == 1:
        return to_cents(amount)
    return round(float(amount) / float(rate) * 100)


def money(cents: Cents) -> str:
    return f"{cents / 100:.2f}"


def parse_date(value: Any) -> date | None:
    """The UTC day of a Xero date (`/Date(ms+0000)/`) or an ISO date/time string; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    match = _XERO_DATE_RE.match(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC).date()
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def iso_day(value: Any) -> str | None:
    day = parse_date(value)
    return day.isoformat() if day else None


# -- accounts ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Account:
    account_id: str
    code: str
    name: str
    type: str
    account_class: str
    system_account: str | None = None
    status: str = "ACTIVE"
    tax_type: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})" if self.code else self.name

    @property
    def is_pl(self) -> bool:
        return self.account_class in PL_CLASSES


def account_from_record(record: Mapping[str, Any]) -> Account:
    kind = str(record.get("Type") or "")
    return Account(
        account_id=str(record["AccountID"]),
        code=str(record.get("Code") or ""),
        name=str(record.get("Name") or ""),
        type=kind,
        account_class=str(record.get("Class") or TYPE_CLASS.get(kind, "")),
        system_account=record.get("SystemAccount") or None,
        status=str(record.get("Status") or "ACTIVE"),
        tax_type=record.get("TaxType"),
    )


class Chart:
    """The chart of accounts of one point, looked up by AccountID, code or system account."""

    def __init__(self, accounts: Iterable[Account]) -> None:
        self.accounts = sorted(accounts, key=lambda a: (a.code, a.name))
        self.by_id = {a.account_id: a for a in self.accounts}
        self.by_code = {a.code: a for a in self.accounts if a.code}
        self.by_system = {a.system_account: a for a in self.accounts if a.system_account}

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Chart:
        return cls(account_from_record(r) for r in records if r.get("AccountID"))

    def find(self, account_id: Any, code: Any = None) -> Account | None:
        return self.by_id.get(str(account_id or "")) or self.by_code.get(str(code or ""))


# -- postings ------------------------------------------------------------------------------------------------
RULES_VERSION = 2
"""Changes whenever a rule below changes what a document posts, so that postings kept beside a cached index
(`appliance.points.index`) are computed again. 2: a void is reversed in its own period."""


class Posting(NamedTuple):
    """One line of a journal the documents imply: base-currency cents, debit positive. A named tuple, not a
    dataclass: a large organisation has millions, and they are read back from the points cache by the row."""

    account_id: str
    day: str
    """ISO date (YYYY-MM-DD) the journal is dated."""
    cents: Cents
    endpoint: str
    record_id: str


@dataclass
class Postings:
    lines: list[Posting] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Poster:
    def __init__(self, chart: Chart, out: Postings) -> None:
        self.chart = chart
        self.out = out

    def warn(self, message: str) -> None:
        if len(self.out.warnings) < 200:
            self.out.warnings.append(message)

    def emit(self, endpoint: str, record_id: str, day: str | None, lines: list[tuple[str, Cents]]) -> None:
        if day is None:
            self.warn(f"{endpoint} {record_id}: no date, not posted")
            return
        total = sum(cents for _, cents in lines)
        if total:
            self.warn(f"{endpoint} {record_id}: postings off balance by {total} cents")
        self.out.lines.extend(Posting(a, day, c, endpoint, record_id) for a, c in lines if c)

    def reverse(self, endpoint: str, record_id: str, day: str | None, lines: list[tuple[str, Cents]]) -> None:
        self.emit(endpoint, record_id, day, [(a, -c) for a, c in lines])

    def system(self, name: str) -> str | None:
        account = self.chart.by_system.get(name)
        return account.account_id if account else None

    def document_lines(
        self, doc: Mapping[str, Any], *, sign: int, control: str, rate: Any, where: str
    ) -> list[tuple[str, Cents]] | None:
        """Item lines, tax per tax type, and the control line; None (with a warning) if an account is unknown."""
        inclusive = str(doc.get("LineAmountTypes") or "").upper() == "INCLUSIVE"
        items = [i for i in doc.get("LineItems") or [] if isinstance(i, Mapping)]
        lines: list[list[Any]] = []
        tax_by_type: dict[str, Cents] = {}
        for item in items:
            line_amount = float(item.get("LineAmount") or 0.0)
            tax_amount = float(item.get("TaxAmount") or 0.0)
            net_doc = line_amount - tax_amount if inclusive else line_amount
            account = self.chart.find(item.get("AccountID"), item.get("AccountCode"))
            if account is None:
                self.warn(f"{where}: line account {item.get('AccountCode') or item.get('AccountID')!r} unknown")
                return None
            tax_cents = to_base(tax_amount, rate)
            lines.append([account.account_id, sign * to_base(net_doc, rate)])
            if tax_cents:
                key = str(item.get("TaxType") or "")
                tax_by_type[key] = tax_by_type.get(key, 0) + tax_cents
        if tax_by_type:
            tax_account = self.system("GST")
            if tax_account is None:
                self.warn(f"{where}: the chart has no GST system account")
                return None
            for cents in tax_by_type.values():
                lines.append([tax_account, sign * cents])
        total_doc = sum(to_cents(i.get("LineAmount")) for i in items)
        if not inclusive:
            total_doc += sum(to_cents(i.get("TaxAmount")) for i in items)
        control_cents = -sign * to_base(total_doc / 100, rate)
        drift = control_cents + sum(line[1] for line in lines)
        if drift and lines:
            lines[0][1] -= drift
        result = [(str(a), int(c)) for a, c in lines]
        result.append((control, -sum(c for _, c in result)))
        return result


def _day_of(value: Any) -> str | None:
    return iso_day(value)


def _id(doc: Mapping[str, Any], *fields: str) -> str:
    for name in fields:
        if doc.get(name):
            return str(doc[name])
    return ""


def postings(chart: Chart, documents: Mapping[str, Iterable[Mapping[str, Any]]]) -> Postings:
    """Every posting the documents of one point imply. `documents` maps endpoint name to its records;
    Invoices and CreditNotes must be given (payments look up the paid document's rate)."""
    out = Postings()
    poster = _Poster(chart, out)
    invoices = list(documents.get("Invoices", ()))
    credit_notes = list(documents.get("CreditNotes", ()))
    rates: dict[str, Any] = {}
    for doc in invoices:
        rates[_id(doc, "InvoiceID")] = doc.get("CurrencyRate")
    for doc in credit_notes:
        rates[_id(doc, "CreditNoteID")] = doc.get("CurrencyRate")

    for endpoint, docs, id_field in (
        ("Invoices", invoices, "InvoiceID"),
        ("CreditNotes", credit_notes, "CreditNoteID"),
    ):
        for doc in docs:
            _post_invoice(poster, endpoint, doc, _id(doc, id_field))
    for doc in documents.get("Payments", ()):
        _post_payment(poster, doc, rates)
    for doc in documents.get("BankTransactions", ()):
        _post_bank_transaction(poster, doc)
    for doc in documents.get("Prepayments", ()):
        _post_prepayment_allocation(poster, doc)
    for doc in documents.get("BankTransfers", ()):
        _post_transfer(poster, doc)
    for doc in documents.get("ManualJournals", ()):
        _post_manual_journal(poster, doc)
    return out


def _post_invoice(poster: _Poster, endpoint: str, doc: Mapping[str, Any], record_id: str) -> None:
    status = doc.get("Status")
    kind = str(doc.get("Type") or "")
    if status not in ("AUTHORISED", "PAID", "VOIDED") or kind not in _ITEM_SIGN:
        return
    control = poster.system("DEBTORS" if kind in RECEIVABLE_TYPES else "CREDITORS")
    if control is None:
        poster.warn(f"{endpoint} {record_id}: no receivable/payable system account")
        return
    rate = doc.get("CurrencyRate")
    lines = poster.document_lines(
        doc, sign=_ITEM_SIGN[kind], control=control, rate=rate, where=f"{endpoint} {record_id}"
    )
    if lines is None:
        return
    poster.emit(endpoint, record_id, _day_of(doc.get("Date")), lines)
    if status == "VOIDED":
        poster.reverse(endpoint, record_id, _day_of(doc.get("Date")), lines)
    elif status == "PAID" and rate and rate != 1:
        _post_settlement_rounding(poster, endpoint, doc, record_id, control, kind, rate)


def _post_settlement_rounding(
    poster: _Poster, endpoint: str, doc: Mapping[str, Any], record_id: str, control: str, kind: str, rate: Any
) -> None:
    """A settled foreign-currency document leaves nothing on the control account: the cents that converting
    the total and each part separately left behind go to realised currency gains on the settling day."""
    parts = sum(to_base(float(p.get("Amount") or 0.0), rate) for p in doc.get("Payments") or [])
    if endpoint == "Invoices":
        for key in ("CreditNotes", "Prepayments", "Overpayments"):
            parts += sum(to_base(float(c.get("AppliedAmount") or 0.0), rate) for c in doc.get(key) or [])
    else:
        parts += sum(to_base(float(a.get("Amount") or 0.0), rate) for a in doc.get("Allocations") or [])
    residual = to_base(float(doc.get("Total") or 0.0), rate) - parts
    gain = poster.system("REALISEDCURRENCYGAIN")
    if not residual or gain is None:
        return
    natural = {"ACCREC": 1, "ACCRECCREDIT": -1, "ACCPAY": -1, "ACCPAYCREDIT": 1}[kind]
    day = _day_of(doc.get("FullyPaidOnDate")) or _day_of(doc.get("UpdatedDateUTC"))
    poster.emit(endpoint, record_id, day, [(control, -natural * residual), (gain, natural * residual)])


def _post_payment(poster: _Poster, doc: Mapping[str, Any], rates: Mapping[str, Any]) -> None:
    record_id = _id(doc, "PaymentID")
    status = doc.get("Status")
    kind = str(doc.get("PaymentType") or "")
    if status not in ("AUTHORISED", "DELETED") or kind not in (
        "ACCRECPAYMENT",
        "ACCPAYPAYMENT",
        "ARCREDITPAYMENT",
        "APCREDITPAYMENT",
    ):
        return
    bank = poster.chart.find((doc.get("Account") or {}).get("AccountID"), (doc.get("Account") or {}).get("Code"))
    control = poster.system("DEBTORS" if kind in ("ACCRECPAYMENT", "ARCREDITPAYMENT") else "CREDITORS")
    if bank is None or control is None:
        poster.warn(f"Payments {record_id}: bank or control account unknown")
        return
    paid = doc.get("Invoice") or doc.get("CreditNote") or {}
    paid_id = _id(paid, "InvoiceID", "CreditNoteID")
    document_rate = rates.get(paid_id, doc.get("CurrencyRate"))
    amount = float(doc.get("Amount") or 0.0)
    direction = 1 if kind in ("ACCRECPAYMENT", "APCREDITPAYMENT") else -1
    bank_cents = to_base(amount, doc.get("CurrencyRate"))
    control_cents = to_base(amount, document_rate)
    lines = [(bank.account_id, direction * bank_cents), (control, -direction * control_cents)]
    difference = direction * (bank_cents - control_cents)
    if difference:
        gain = poster.system("REALISEDCURRENCYGAIN")
        if gain is None:
            poster.warn(f"Payments {record_id}: no realised currency gains account")
            return
        lines.append((gain, -difference))
    poster.emit("Payments", record_id, _day_of(doc.get("Date")), lines)
    if status == "DELETED":
        poster.reverse("Payments", record_id, _day_of(doc.get("Date")), lines)


def _post_bank_transaction(poster: _Poster, doc: Mapping[str, Any]) -> None:
    record_id = _id(doc, "BankTransactionID")
    status = doc.get("Status")
    if status not in ("AUTHORISED", "DELETED", "VOIDED"):
        return
    bank = poster.chart.find(
        (doc.get("BankAccount") or {}).get("AccountID"), (doc.get("BankAccount") or {}).get("Code")
    )
    if bank is None:
        poster.warn(f"BankTransactions {record_id}: bank account unknown")
        return
    sign = 1 if str(doc.get("Type") or "").startswith("SPEND") else -1
    where = f"BankTransactions {record_id}"
    lines = poster.document_lines(doc, sign=sign, control=bank.account_id, rate=doc.get("CurrencyRate"), where=where)
    if lines is None:
        return
    poster.emit("BankTransactions", record_id, _day_of(doc.get("Date")), lines)
    if status in ("DELETED", "VOIDED"):
        poster.reverse("BankTransactions", record_id, _day_of(doc.get("Date")), lines)


def _post_prepayment_allocation(poster: _Poster, doc: Mapping[str, Any]) -> None:
    """A prepayment is allocated whole: its lines come off the accounts it was coded to, onto the control."""
    allocations = [a for a in doc.get("Allocations") or [] if not a.get("IsDeleted")]
    kind = str(doc.get("Type") or "")
    if not allocations or kind not in ("RECEIVE-PREPAYMENT", "SPEND-PREPAYMENT"):
        return
    record_id = _id(doc, "PrepaymentID")
    receivable = kind == "RECEIVE-PREPAYMENT"
    control = poster.system("DEBTORS" if receivable else "CREDITORS")
    if control is None:
        poster.warn(f"Prepayments {record_id}: no control account")
        return
    lines = poster.document_lines(
        doc,
        sign=1 if receivable else -1,
        control=control,
        rate=doc.get("CurrencyRate"),
        where=f"Prepayments {record_id}",
    )
    if lines is not None:
        poster.emit("Prepayments", record_id, _day_of(allocations[0].get("Date")), lines)


def _post_transfer(poster: _Poster, doc: Mapping[str, Any]) -> None:
    record_id = _id(doc, "BankTransferID")
    if doc.get("Status", "AUTHORISED") != "AUTHORISED":
        return
    source = poster.chart.find((doc.get("FromBankAccount") or {}).get("AccountID"))
    target = poster.chart.find((doc.get("ToBankAccount") or {}).get("AccountID"))
    if source is None or target is None:
        poster.warn(f"BankTransfers {record_id}: bank account unknown")
        return
    cents = to_base(float(doc.get("Amount") or 0.0), doc.get("CurrencyRate"))
    poster.emit(
        "BankTransfers", record_id, _day_of(doc.get("Date")), [(target.account_id, cents), (source.account_id, -cents)]
    )


def _post_manual_journal(poster: _Poster, doc: Mapping[str, Any]) -> None:
    record_id = _id(doc, "ManualJournalID")
    status = doc.get("Status")
    if status not in ("POSTED", "VOIDED"):
        return
    lines: list[tuple[str, Cents]] = []
    for line in doc.get("JournalLines") or []:
        account = poster.chart.find(line.get("AccountID"), line.get("AccountCode"))
        if account is None:
            poster.warn(f"ManualJournals {record_id}: account {line.get('AccountCode')!r} unknown")
            return
        lines.append((account.account_id, to_cents(line.get("LineAmount"))))
    poster.emit("ManualJournals", record_id, _day_of(doc.get("Date")), lines)
    if status == "VOIDED":
        poster.reverse("ManualJournals", record_id, _day_of(doc.get("Date")), lines)


def daily_totals(postings: Postings) -> Postings:
    """The postings summed per account and day (endpoint and record id empty), with the same warnings: every
    balance over whole days (`balances`, and so every report) is the same from either, and a medium
    organisation's 141,000 postings are 12,000 totals."""
    totals: dict[tuple[str, str], Cents] = defaultdict(int)
    for line in postings.lines:
        totals[line.day, line.account_id] += line.cents
    lines = [Posting(account_id, day, cents, "", "") for (day, account_id), cents in sorted(totals.items()) if cents]
    return Postings(lines, list(postings.warnings))


# -- balances and reports ------------------------------------------------------------------------------------
def balances(lines: Iterable[Posting], *, to_day: str | None = None, from_day: str | None = None) -> dict[str, Cents]:
    """Net cents per account over postings dated in [from_day, to_day] (inclusive ISO dates; None = open)."""
    result: dict[str, Cents] = defaultdict(int)
    for line in lines:
        if (to_day is None or line.day <= to_day) and (from_day is None or line.day >= from_day):
            result[line.account_id] += line.cents
    return {k: v for k, v in result.items() if v}


def financial_year_start(as_at: date, end_day: int, end_month: int) -> date:
    """First day of the financial year containing `as_at`, for a year ending on `end_day`/`end_month`."""
    for year in (as_at.year, as_at.year - 1, as_at.year - 2):
        end = _safe_date(year, end_month, end_day)
        if end < as_at:
            return end + timedelta(days=1)
    return date(as_at.year - 1, 1, 1)


def _safe_date(year: int, month: int, day: int) -> date:
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            day -= 1


@dataclass(frozen=True)
class Closing:
    """Balances as at a day: P&L accounts since the financial year start, balance-sheet accounts since ever,
    the earlier years' profit folded into Retained Earnings (as Xero's Trial Balance and Balance Sheet show)."""

    balances: dict[str, Cents]
    prior_profit: Cents
    year_start: date


def closing(
    chart: Chart, totals_to_date: Mapping[str, Cents], totals_this_year: Mapping[str, Cents], year_start: date
) -> Closing:
    result: dict[str, Cents] = {}
    prior = 0
    for account_id, cents in totals_to_date.items():
        account = chart.by_id.get(account_id)
        if account is not None and account.is_pl:
            prior += cents - totals_this_year.get(account_id, 0)
            if totals_this_year.get(account_id):
                result[account_id] = totals_this_year[account_id]
        else:
            result[account_id] = cents
    retained = chart.by_system.get("RETAINEDEARNINGS")
    if retained is not None and prior:
        result[retained.account_id] = result.get(retained.account_id, 0) + prior
    return Closing({k: v for k, v in result.items() if v}, prior, year_start)


def trial_balance(chart: Chart, lines: Iterable[Posting], as_at: date, fy_end: tuple[int, int]) -> Closing:
    """Net (debit +) per account as at `as_at`, in Xero's Trial Balance YTD convention."""
    lines = list(lines)
    year_start = financial_year_start(as_at, *fy_end)
    return closing(
        chart,
        balances(lines, to_day=as_at.isoformat()),
        balances(lines, from_day=year_start.isoformat(), to_day=as_at.isoformat()),
        year_start,
    )


def profit_and_loss(chart: Chart, lines: Iterable[Posting], from_day: date, to_day: date) -> dict[str, Cents]:
    """Movement (debit +) of each P&L account between two days inclusive."""
    movement = balances(lines, from_day=from_day.isoformat(), to_day=to_day.isoformat())
    return {k: v for k, v in movement.items() if k in chart.by_id and chart.by_id[k].is_pl}


def balance_sheet(chart: Chart, closing_balances: Closing) -> dict[str, Cents]:
    """The balance-sheet accounts (debit +) of a closing, plus `current_year_earnings` under its own key."""
    result = {k: v for k, v in closing_balances.balances.items() if k in chart.by_id and not chart.by_id[k].is_pl}
    current = sum(v for k, v in closing_balances.balances.items() if k in chart.by_id and chart.by_id[k].is_pl)
    if current:
        result[CURRENT_YEAR_EARNINGS] = current
    return result


CURRENT_YEAR_EARNINGS = "current-year-earnings"
"""Key of the balance sheet's Current Year Earnings line (no account: the P&L accounts' sum, debit +)."""


def profit_of(pl: Mapping[str, Cents]) -> Cents:
    """Net profit shown positive: the negated sum of the P&L accounts' debit-positive movements."""
    return -sum(pl.values())


# -- aged receivables and payables ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AgedLine:
    invoice_id: str
    contact_id: str
    number: str
    day: str
    due_day: str | None
    total: Cents
    paid: Cents
    credited: Cents
    due: Cents


def aged(invoices: Iterable[Mapping[str, Any]], as_at: date, kind: str) -> list[AgedLine]:
    """Open invoices (`kind` ACCREC for receivables, ACCPAY for payables) as at a day, counting only the
    payments and allocations dated by then; a line per invoice with something still due."""
    cutoff = as_at.isoformat()
    result = []
    for invoice in invoices:
        if invoice.get("Type") != kind or invoice.get("Status") not in ("AUTHORISED", "PAID"):
            continue
        day = iso_day(invoice.get("Date"))
        if day is None or day > cutoff:
            continue

        def dated(entries: Any, amount_field: str) -> Cents:
            return sum(to_cents(e.get(amount_field)) for e in entries or [] if (iso_day(e.get("Date")) or "") <= cutoff)

        total = to_cents(invoice.get("Total"))
        paid = dated(invoice.get("Payments"), "Amount")
        credited = sum(
            dated(invoice.get(key), "AppliedAmount") for key in ("CreditNotes", "Prepayments", "Overpayments")
        )
        due = total - paid - credited
        if due:
            result.append(
                AgedLine(
                    invoice_id=str(invoice.get("InvoiceID")),
                    contact_id=str((invoice.get("Contact") or {}).get("ContactID") or ""),
                    number=str(invoice.get("InvoiceNumber") or invoice.get("Reference") or ""),
                    day=day,
                    due_day=iso_day(invoice.get("DueDate")),
                    total=total,
                    paid=paid,
                    credited=credited,
                    due=due,
                )
            )
    return result


def aged_by_contact(lines: Iterable[AgedLine]) -> dict[str, Cents]:
    result: dict[str, Cents] = defaultdict(int)
    for line in lines:
        result[line.contact_id] += line.due
    return dict(result)


# -- Xero's reports ------------------------------------------------------------------------------------------
def _rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for row in rows:
        if row.get("RowType") == "Section":
            yield from _rows(row.get("Rows") or [])
        else:
            yield row


def _attribute(cell: Mapping[str, Any], name: str) -> str | None:
    for attribute in cell.get("Attributes") or []:
        if attribute.get("Id") == name:
            return str(attribute.get("Value"))
    return None


def _amount(value: Any) -> Cents:
    text = str(value or "").replace(",", "").strip()
    if not text:
        return 0
    negative = text.startswith("(") and text.endswith(")")
    cents = round(float(text.strip("()")) * 100)
    return -cents if negative else cents


def first_report(body: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ReportWithRows inside a `{"Reports": [...]}` response body."""
    reports = (body or {}).get("Reports") or []
    return reports[0] if reports and isinstance(reports[0], Mapping) else None


def report_accounts(body: Mapping[str, Any] | None, chart: Chart, report: str) -> dict[str, Cents]:
    """Xero's TrialBalance, ProfitAndLoss or BalanceSheet as account id -> cents, debit positive, so they
    compare with the recomputed figures: TrialBalance uses the YTD columns (debit - credit); the P&L shows
    income positive and the balance sheet liabilities and equity positive, which are negated back. Rows without
    an account attribute (totals, Current Year Earnings) are left out."""
    parsed = first_report(body)
    result: dict[str, Cents] = {}
    if parsed is None:
        return result
    for row in _rows(parsed.get("Rows") or []):
        if row.get("RowType") != "Row":
            continue
        cells = row.get("Cells") or []
        if not cells:
            continue
        account_id = _attribute(cells[0], "account")
        if account_id is None:
            continue
        account = chart.by_id.get(account_id)
        if report == "TrialBalance":
            if len(cells) < 5:
                continue
            cents = _amount(cells[3].get("Value")) - _amount(cells[4].get("Value"))
        else:
            shown = _amount(cells[1].get("Value")) if len(cells) > 1 else 0
            if report == "ProfitAndLoss":
                cents = -shown if account is not None and account.account_class == "REVENUE" else shown
            else:
                cents = shown if account is not None and account.account_class == "ASSET" else -shown
        if cents:
            result[account_id] = result.get(account_id, 0) + cents
    return result


def report_date(body: Mapping[str, Any] | None, key: str = "date") -> date | None:
    """The date a captured report was asked for (the backup stores the query `params` next to the body)."""
    params = (body or {}).get("params") or {}
    value = params.get(key) if isinstance(params, Mapping) else None
    return parse_date(value) if value else None


def aged_report_contacts(document: Mapping[str, Any] | None) -> tuple[date | None, dict[str, dict[str, Cents]]]:
    """The backup's aged report document (`{"date", "contacts": [{"ContactID", "Reports"}]}`) as
    (report date, contact id -> invoice id -> due cents)."""
    if not document:
        return None, {}
    result: dict[str, dict[str, Cents]] = {}
    for entry in document.get("contacts") or []:
        invoices: dict[str, Cents] = {}
        parsed = first_report(entry)
        for row in _rows((parsed or {}).get("Rows") or []):
            cells = row.get("Cells") or []
            if row.get("RowType") != "Row" or len(cells) < 2:
                continue
            invoice_id = _attribute(cells[1], "invoiceID")
            if invoice_id:
                invoices[invoice_id] = _amount(cells[-1].get("Value"))
        result[str(entry.get("ContactID"))] = invoices
    return parse_date(document.get("date")), result


@dataclass(frozen=True)
class Difference:
    key: str
    label: str
    ours: Cents
    theirs: Cents | None

    @property
    def difference(self) -> Cents:
        return self.ours - (self.theirs or 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "recomputed": money(self.ours),
            "reported": None if self.theirs is None else money(self.theirs),
            "difference": money(self.difference),
        }


def compare(
    ours: Mapping[str, Cents], theirs: Mapping[str, Cents] | None, labels: Mapping[str, str] | None = None
) -> list[Difference]:
    """Every key in either mapping, side by side; `theirs` None means Xero reported nothing to compare."""
    labels = labels or {}
    keys = sorted(set(ours) | set(theirs or {}), key=lambda k: (labels.get(k, k), k))
    return [Difference(k, labels.get(k, k), ours.get(k, 0), None if theirs is None else theirs.get(k, 0)) for k in keys]


def mismatches(differences: Iterable[Difference]) -> list[Difference]:
    return [d for d in differences if d.theirs is not None and d.difference]

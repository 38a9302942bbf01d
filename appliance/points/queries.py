"""What a person asks of one backup point: summary, chart of accounts, ledger reports, contacts, documents,
one record in full, and an attachment's bytes.

Every query takes an open `PointIndex` and returns a `Table` (title, columns, rows, notes) or a plain dict,
so the CLI prints them, `--json` dumps them, the TUI shows them and `export` writes them as CSV without
knowing what they are. Ledger reports come twice: as Xero reported them at backup time (the `reports/*.json`
the backup captured) and as recomputed from the point's own documents (`appliance.points.ledger`), with the
difference per account, so a point that disagrees with itself is visible before anyone restores from it.

Amounts in tables are strings with two decimals (exact cents: a CSV of them sums back to the same figure).
It must not build indexes or talk to restic except to stream an attachment (`extract_attachment`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from appliance.errors import NotFound, UsageError
from appliance.points import ledger
from appliance.points.index import FIELDS_SUFFIX, PointIndex
from appliance.vault.repository import Repository


@dataclass
class Table:
    """A query result: rows of plain values under named columns."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    totals: dict[str, str] = field(default_factory=dict)
    """Column -> total (two-decimal string) of the money columns, over every row."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Filters:
    """Filters on a list of documents or contacts; None means no filter."""

    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None
    contact: str | None = None
    """A contact id, or text matched against the contact's name (case-insensitive, anywhere in it)."""
    account: str | None = None
    """An account code or id used on any line of the document."""
    amount_min: float | None = None
    amount_max: float | None = None
    text: str | None = None
    """Full-text search (SQLite FTS5) over number, reference, contact and line descriptions."""
    limit: int | None = None


# View name -> (endpoint, Type filter). Any endpoint name is also a view of its own records.
DOCUMENT_VIEWS: dict[str, tuple[str, str | None]] = {
    "invoices": ("Invoices", "ACCREC"),
    "bills": ("Invoices", "ACCPAY"),
    "credit-notes": ("CreditNotes", None),
    "payments": ("Payments", None),
    "batch-payments": ("BatchPayments", None),
    "bank-transactions": ("BankTransactions", None),
    "bank-transfers": ("BankTransfers", None),
    "manual-journals": ("ManualJournals", None),
    "prepayments": ("Prepayments", None),
    "overpayments": ("Overpayments", None),
    "quotes": ("Quotes", None),
    "purchase-orders": ("PurchaseOrders", None),
    "repeating-invoices": ("RepeatingInvoices", None),
    "items": ("Items", None),
    "tax-rates": ("TaxRates", None),
    "tracking": ("TrackingCategories", None),
    "users": ("Users", None),
    "currencies": ("Currencies", None),
    "contact-groups": ("ContactGroups", None),
    "budgets": ("Budgets", None),
}
REPORT_VIEWS = (
    "summary",
    "accounts",
    "trial-balance",
    "pnl",
    "balance-sheet",
    "aged-receivables",
    "aged-payables",
    "contacts",
)
VIEWS = REPORT_VIEWS + tuple(DOCUMENT_VIEWS)


def money(cents: int) -> str:
    return ledger.money(cents)


def _money_total(rows: Sequence[Sequence[Any]], columns: Sequence[str], money_columns: Sequence[str]) -> dict[str, str]:
    totals = {}
    for name in money_columns:
        position = columns.index(name)
        totals[name] = money(
            sum(ledger.to_cents(float(row[position])) for row in rows if row[position] not in (None, ""))
        )
    return totals


def organisation(index: PointIndex) -> dict[str, Any]:
    body = index.document("organisation") or {}
    organisations = body.get("Organisations") or [{}]
    return dict(organisations[0])


def financial_year_end(index: PointIndex) -> tuple[int, int]:
    details = organisation(index)
    return int(details.get("FinancialYearEndDay") or 31), int(details.get("FinancialYearEndMonth") or 12)


def report_day(index: PointIndex) -> date:
    """The day the point's reports were asked for (the backup day); else the last posting day."""
    for name in ("TrialBalance", "BalanceSheet"):
        day = ledger.report_date(index.document(f"reports/{name}"))
        if day is not None:
            return day
    days = [posting.day for posting in index.ledger_totals().lines]
    return date.fromisoformat(max(days)) if days else date.today()


# -- summary and accounts ------------------------------------------------------------------------------------
def summary(index: PointIndex) -> Table:
    manifest = index.manifest()
    details = organisation(index)
    rows = []
    for endpoint in index.endpoints():
        count = index.scalar(f"SELECT count(*) FROM [{endpoint}]")
        total = index.scalar(f"SELECT sum(_total) FROM [{endpoint}]")
        by_status = index.query(
            f"SELECT coalesce(_status, '') AS status, count(*) AS n FROM [{endpoint}] GROUP BY 1 ORDER BY 1"
        )
        statuses = ", ".join(f"{row['status'] or '-'} {row['n']}" for row in by_status if row["status"])
        rows.append([endpoint, count, money(ledger.to_cents(total)) if total is not None else "", statuses])
    attachments = index.scalar("SELECT count(*) FROM attachments")
    notes = [
        f"organisation: {details.get('Name', index.org_id)} ({details.get('BaseCurrency', '?')})",
        f"point: {index.snapshot_id[:8]} taken {manifest.get('created', '?')}, mode {manifest.get('mode', '?')},"
        f" complete {manifest.get('complete', '?')}",
        f"attachments: {attachments}",
    ]
    notes += [f"warning: {w}" for w in manifest.get("warnings") or []]
    return Table("Summary", ["type", "count", "total", "by status"], rows, notes)


def accounts(index: PointIndex) -> Table:
    chart = index.chart()
    closing = ledger.trial_balance(chart, index.ledger_totals().lines, report_day(index), financial_year_end(index))
    rows = [
        [
            a.code,
            a.name,
            a.type,
            a.account_class,
            a.status,
            a.tax_type or "",
            a.system_account or "",
            money(closing.balances.get(a.account_id, 0)),
            a.account_id,
        ]
        for a in chart.accounts
    ]
    columns = ["code", "name", "type", "class", "status", "tax type", "system account", "balance", "account id"]
    return Table(
        "Chart of accounts", columns, rows, [f"balances recomputed as at {closing.year_start} FY, {report_day(index)}"]
    )


# -- ledger reports ------------------------------------------------------------------------------------------
_COMPARE_COLUMNS = ["code", "account", "class", "recomputed", "reported", "difference", "account id"]


def _comparison_table(
    title: str, chart: ledger.Chart, ours: Mapping[str, int], theirs: Mapping[str, int] | None, notes: list[str]
) -> Table:
    rows = []
    for difference in ledger.compare(ours, theirs, {a.account_id: f"{a.code} {a.name}" for a in chart.accounts}):
        account = chart.by_id.get(difference.key)
        rows.append(
            [
                account.code if account else "",
                account.name if account else difference.key,
                account.account_class if account else "",
                money(difference.ours),
                "" if difference.theirs is None else money(difference.theirs),
                "" if difference.theirs is None else money(difference.difference),
                difference.key if account else "",
            ]
        )
    mismatched = ledger.mismatches(ledger.compare(ours, theirs))
    if theirs is None:
        notes.append("Xero's report was not captured in this point: recomputed figures only")
    elif mismatched:
        notes.append(f"{len(mismatched)} account(s) differ from what Xero reported")
    else:
        notes.append("recomputed figures equal what Xero reported")
    table = Table(title, list(_COMPARE_COLUMNS), rows, notes)
    table.totals = _money_total(rows, table.columns, ["recomputed", "reported", "difference"])
    return table


def trial_balance(index: PointIndex, as_at: date | None = None) -> Table:
    """Trial balance (YTD, debit positive) recomputed, and Xero's when it was asked for the same day."""
    chart = index.chart()
    reported_body = index.document("reports/TrialBalance")
    reported_day = ledger.report_date(reported_body)
    day = as_at or report_day(index)
    postings = index.ledger_totals()
    closing = ledger.trial_balance(chart, postings.lines, day, financial_year_end(index))
    theirs = ledger.report_accounts(reported_body, chart, "TrialBalance") if reported_day == day else None
    notes = [f"as at {day} (financial year from {closing.year_start}); debit positive"]
    notes += [f"ledger: {w}" for w in postings.warnings[:20]]
    return _comparison_table("Trial balance", chart, closing.balances, theirs, notes)


def profit_and_loss(index: PointIndex, date_from: date | None = None, date_to: date | None = None) -> Table:
    chart = index.chart()
    body = index.document("reports/ProfitAndLoss")
    reported_from, reported_to = ledger.report_date(body, "fromDate"), ledger.report_date(body, "toDate")
    day_to = date_to or reported_to or report_day(index)
    day_from = date_from or reported_from or ledger.financial_year_start(day_to, *financial_year_end(index))
    ours = ledger.profit_and_loss(chart, index.ledger_totals().lines, day_from, day_to)
    same = (day_from, day_to) == (reported_from, reported_to)
    theirs = ledger.report_accounts(body, chart, "ProfitAndLoss") if same else None
    notes = [f"{day_from} to {day_to}; debit positive (income negative); net profit {money(ledger.profit_of(ours))}"]
    return _comparison_table("Profit and loss", chart, ours, theirs, notes)


def balance_sheet(index: PointIndex, as_at: date | None = None) -> Table:
    chart = index.chart()
    body = index.document("reports/BalanceSheet")
    day = as_at or report_day(index)
    closing = ledger.trial_balance(chart, index.ledger_totals().lines, day, financial_year_end(index))
    ours = ledger.balance_sheet(chart, closing)
    current = ours.pop(ledger.CURRENT_YEAR_EARNINGS, 0)
    theirs = ledger.report_accounts(body, chart, "BalanceSheet") if ledger.report_date(body) == day else None
    notes = [f"as at {day}; debit positive; current year earnings {money(-current)}"]
    return _comparison_table("Balance sheet", chart, ours, theirs, notes)


def aged(index: PointIndex, kind: str, as_at: date | None = None) -> Table:
    """Aged receivables (`ACCREC`) or payables (`ACCPAY`) per contact: recomputed for every contact, and
    Xero's figure for the contacts the backup asked Xero about (a full backup asks for those owing most)."""
    name = "AgedReceivablesByContact" if kind == "ACCREC" else "AgedPayablesByContact"
    reported_day, reported = ledger.aged_report_contacts(index.document(f"reports/{name}"))
    day = as_at or reported_day or report_day(index)
    lines = ledger.aged(index.records("Invoices"), day, kind)
    ours = ledger.aged_by_contact(lines)
    theirs = {contact: sum(invoices.values()) for contact, invoices in reported.items()} if reported_day == day else {}
    names: dict[str, str] = {}
    if index.has("Contacts"):
        names = dict(index.db.execute("SELECT _id, _contact_name FROM Contacts").fetchall())
    rows = []
    for contact_id in sorted(set(ours) | set(theirs), key=lambda c: (-ours.get(c, 0), c)):
        reported_cents = theirs.get(contact_id)
        count = sum(1 for line in lines if line.contact_id == contact_id)
        rows.append(
            [
                names.get(contact_id, contact_id),
                count,
                money(ours.get(contact_id, 0)),
                "" if reported_cents is None else money(reported_cents),
                "" if reported_cents is None else money(ours.get(contact_id, 0) - reported_cents),
                contact_id,
            ]
        )
    title = "Aged receivables" if kind == "ACCREC" else "Aged payables"
    differing = sum(1 for contact, cents in theirs.items() if ours.get(contact, 0) != cents)
    notes = [
        f"as at {day}; Xero's figures for {len(theirs)} contact(s) captured on {reported_day or 'no date'}",
        f"{differing} contact(s) differ from what Xero reported" if theirs else "no Xero figures for this day",
    ]
    columns = ["contact", "open", "recomputed", "reported", "difference", "contact id"]
    table = Table(title, columns, rows, notes)
    table.totals = _money_total(rows, columns, ["recomputed"])
    return table


# -- contacts and documents ----------------------------------------------------------------------------------
def _fts_query(text: str) -> str:
    # Quote each word so FTS5 syntax characters in a person's search (-, :, ") are taken literally.
    words = re.findall(r"\w+", text)
    if not words:
        raise UsageError(f"nothing to search for in {text!r}")
    return " ".join('"' + word + '"' for word in words)


def contacts(index: PointIndex, filters: Filters | None = None) -> Table:
    filters = filters or Filters()
    columns = ["name", "status", "email", "customer", "supplier", "updated", "contact id"]
    if not index.has("Contacts"):
        return Table("Contacts", columns, [])
    view = {col.name for col in index.db[f"Contacts{FIELDS_SUFFIX}"].columns}
    extra = [f"f.[{name}]" if name in view else "NULL" for name in ("EmailAddress", "IsCustomer", "IsSupplier")]
    sql = (
        f"SELECT c._contact_name, c._status, {', '.join(extra)}, c._updated, c._id FROM Contacts c"
        f" JOIN [Contacts{FIELDS_SUFFIX}] f ON f._id = c._id WHERE 1=1"
    )
    params: list[Any] = []
    if filters.status:
        sql += " AND upper(c._status) = upper(?)"
        params.append(filters.status)
    if filters.text:
        sql += " AND c._id IN (SELECT id FROM contacts_fts WHERE contacts_fts MATCH ?)"
        params.append(_fts_query(filters.text))
    if filters.contact:
        sql += " AND (c._id = ? OR c._contact_name LIKE ?)"
        params += [filters.contact, f"%{filters.contact}%"]
    sql += " ORDER BY c._contact_name COLLATE NOCASE"
    if filters.limit:
        sql += f" LIMIT {int(filters.limit)}"
    rows = [list(row) for row in index.db.execute(sql, params)]
    return Table("Contacts", columns, rows)


def resolve_view(index: PointIndex, view: str) -> tuple[str, str | None]:
    """(endpoint, Type filter) of a document view name or an endpoint name (any case)."""
    if view in DOCUMENT_VIEWS:
        return DOCUMENT_VIEWS[view]
    for endpoint in index.endpoints():
        if endpoint.lower() == view.lower().replace("-", ""):
            return endpoint, None
    raise UsageError(f"unknown view {view!r}", hint=f"one of: {', '.join(VIEWS)}, or an endpoint name")


def documents(index: PointIndex, view: str, filters: Filters | None = None) -> Table:
    """Documents of one type with filters, newest first."""
    filters = filters or Filters()
    endpoint, kind = resolve_view(index, view)
    columns = ["date", "number", "reference", "contact", "status", "type", "total", "currency", "id"]
    if not index.has(endpoint):
        return Table(view, columns, [], [f"this point holds no {endpoint}"])
    sql = (
        "SELECT _date, _number, _reference, _contact_name, _status, _type, _total, _currency, _id"
        f" FROM [{endpoint}] d WHERE 1=1"
    )
    params: list[Any] = []
    if kind:
        sql += " AND _type = ?"
        params.append(kind)
    if filters.date_from:
        sql += " AND _date >= ?"
        params.append(filters.date_from.isoformat())
    if filters.date_to:
        sql += " AND _date <= ?"
        params.append(filters.date_to.isoformat())
    if filters.status:
        sql += " AND upper(_status) = upper(?)"
        params.append(filters.status)
    if filters.contact:
        sql += " AND (_contact_id = ? OR _contact_name LIKE ?)"
        params += [filters.contact, f"%{filters.contact}%"]
    if filters.account:
        sql += (
            " AND _id IN (SELECT _parent_id FROM line_items WHERE _endpoint = ? AND (AccountCode = ? OR AccountID = ?))"
        )
        params += [endpoint, filters.account, filters.account]
    if filters.amount_min is not None:
        sql += " AND _total >= ?"
        params.append(filters.amount_min)
    if filters.amount_max is not None:
        sql += " AND _total <= ?"
        params.append(filters.amount_max)
    if filters.text:
        sql += " AND _id IN (SELECT id FROM documents_fts WHERE documents_fts MATCH ? AND endpoint = ?)"
        params += [_fts_query(filters.text), endpoint]
    sql += " ORDER BY _date DESC, _number DESC, _id"
    if filters.limit:
        sql += f" LIMIT {int(filters.limit)}"
    rows = []
    for row in index.db.execute(sql, params):
        values = list(row)
        values[6] = money(ledger.to_cents(values[6])) if values[6] is not None else ""
        rows.append(values)
    table = Table(view, columns, rows)
    table.totals = _money_total(rows, columns, ["total"])
    return table


def run_view(index: PointIndex, view: str, filters: Filters | None = None) -> Table:
    """Any view by name (`VIEWS`, or an endpoint name): what `strongroom show` and `export --view` call."""
    filters = filters or Filters()
    builders: dict[str, Callable[[], Table]] = {
        "summary": lambda: summary(index),
        "accounts": lambda: accounts(index),
        "trial-balance": lambda: trial_balance(index, filters.date_to),
        "pnl": lambda: profit_and_loss(index, filters.date_from, filters.date_to),
        "balance-sheet": lambda: balance_sheet(index, filters.date_to),
        "aged-receivables": lambda: aged(index, "ACCREC", filters.date_to),
        "aged-payables": lambda: aged(index, "ACCPAY", filters.date_to),
        "contacts": lambda: contacts(index, filters),
    }
    if view in builders:
        return builders[view]()
    return documents(index, view, filters)


# -- one record ----------------------------------------------------------------------------------------------
def find_record(index: PointIndex, record_id: str, endpoint: str | None = None) -> tuple[str, str]:
    """(endpoint, full id) of a record by id or unambiguous id prefix (or document number), in `endpoint` or any."""
    candidates = [endpoint] if endpoint else index.endpoints()
    matches: list[tuple[str, str]] = []
    for name in candidates:
        if not index.has(name):
            continue
        rows = index.db.execute(
            f"SELECT _id FROM [{name}] WHERE _id = ? OR _id LIKE ? OR _number = ? LIMIT 3",
            [record_id, record_id.replace("%", "").replace("_", "") + "%", record_id],
        ).fetchall()
        matches += [(name, row[0]) for row in rows]
    exact = [m for m in matches if m[1] == record_id]
    if len(exact) == 1:
        return exact[0]
    if not matches:
        raise NotFound(f"no record {record_id!r} in point {index.snapshot_id[:8]}")
    if len(matches) > 1:
        raise UsageError(f"{record_id!r} matches several records", hint="give more of the id, or the type")
    return matches[0]


def record(index: PointIndex, record_id: str, endpoint: str | None = None) -> dict[str, Any]:
    """One record in full: its flattened fields, line items, raw JSON, attachments and what it posts."""
    endpoint, full_id = find_record(index, record_id, endpoint)
    row = index.query(f"SELECT * FROM [{endpoint}{FIELDS_SUFFIX}] WHERE _id = ?", [full_id])[0]
    raw = index.raw(endpoint, full_id) or {}
    fields = {k: v for k, v in row.items() if not k.startswith("_") and v is not None}
    lines = index.query(
        "SELECT * FROM line_items WHERE _endpoint = ? AND _parent_id = ? ORDER BY _line_no", [endpoint, full_id]
    )
    attachments = index.query(
        "SELECT AttachmentID, FileName, MimeType, size, sha256, snapshot_path FROM attachments"
        " WHERE endpoint = ? AND record_id = ? ORDER BY FileName",
        [endpoint, full_id],
    )
    postings = index.postings_of(endpoint, full_id)
    chart = index.chart()
    return {
        "endpoint": endpoint,
        "id": full_id,
        "point": index.snapshot_id,
        "fields": fields,
        "line_items": [{k: v for k, v in line.items() if v is not None} for line in lines],
        "attachments": attachments,
        "history": raw.get("History"),
        "postings": [
            {
                "day": p.day,
                "account": chart.by_id[p.account_id].label if p.account_id in chart.by_id else p.account_id,
                "amount": money(p.cents),
            }
            for p in postings
        ],
        "raw": raw,
    }


def extract_attachment(
    index: PointIndex, repository: Repository, record_id: str, name: str, out: Path, *, endpoint: str | None = None
) -> Path:
    """Write one attachment of a record (by file name, safe name or AttachmentID) to `out` (a file, or a
    directory to put it in under its safe name); its sha256 is checked against the backup's index."""
    endpoint, full_id = find_record(index, record_id, endpoint)
    rows = index.query(
        "SELECT * FROM attachments WHERE endpoint = ? AND record_id = ?"
        " AND (FileName = ? OR file = ? OR AttachmentID = ?)",
        [endpoint, full_id, name, name, name],
    )
    if not rows:
        raise NotFound(f"{endpoint} {full_id} has no attachment {name!r} in this point")
    entry = rows[0]
    target = out / str(entry["file"]) if out.is_dir() else out
    temporary = target.with_name(f".{target.name}.part")
    with open(temporary, "wb") as handle:
        repository.dump(index.snapshot_id, str(entry["snapshot_path"]), handle)
    digest = hashlib.sha256(temporary.read_bytes()).hexdigest()
    if entry.get("sha256") and digest != entry["sha256"]:
        temporary.unlink(missing_ok=True)
        raise NotFound(f"attachment {name!r} read back with a different sha256 than the backup recorded")
    temporary.replace(target)
    return target

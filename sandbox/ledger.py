"""The sandbox organisations' general ledger: balanced journals posted from Xero documents.

This module owns double entry. Every document that moves money (invoices, bills, credit notes, payments,
bank transactions incl. prepayments and overpayments, bank transfers, manual journals, prepayment
allocations) becomes a journal whose lines sum to zero in the organisation's base currency, with Xero's
sign convention (debit positive, `NetAmount` on `/Journals`). Voids and deletions of approved documents
post a reversing journal; deleting a draft posts nothing. Journals are append-only, as Xero's are: an edit is
a reversal plus a new journal (https://developer.xero.com/documentation/api/accounting/journals).

Both the generator (buffered, many journals per flush) and any code that writes one document at a time (the
churn, and API writes later) go through `Ledger`, so the ledger rules live in one place. This module must not
generate random data or decide business events; it only turns documents into journal lines.

Multi-currency: Xero's `CurrencyRate` is units of the document currency per one unit of base currency, so a
base amount is the document amount divided by the rate. Each line is converted and rounded to the cent; the
control line (Accounts Receivable/Payable or the bank) takes the opposite of the others so that rounding never
unbalances a journal. A payment at a rate other than its invoice's posts the difference to the realised
currency gains system account (https://central.xero.com/s/article/Realised-currency-gains-and-losses).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sandbox.store import SandboxStore


def stable_id(name: str) -> str:
    """A name-based (version 5 layout) GUID, a pure function of `name`: journal and line ids are derived
    from (tenant, journal number, line number) so a regenerated ledger is identical. Formatted by hand
    because `uuid.uuid5` dominates the generator's profile."""
    h = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


DAY_MS = 86_400_000


class LedgerError(ValueError):
    """A journal that would not balance, or a reference to an unknown account."""


def to_cents(amount: float) -> int:
    return round(amount * 100)


def from_cents(cents: int) -> float:
    return round(cents / 100, 2)


def to_base(amount: float, rate: float | None) -> int:
    """Cents of base currency for an amount in a document currency at Xero's `CurrencyRate`."""
    if not rate or rate == 1:
        return to_cents(amount)
    return round(amount / rate * 100)


@dataclass(frozen=True)
class AccountRef:
    account_id: str
    code: str
    type: str
    name: str
    system_account: str | None = None
    currency_code: str | None = None


@dataclass
class Line:
    """One journal line in base-currency cents; `net_cents` is debit positive."""

    account: AccountRef
    net_cents: int
    tax_cents: int = 0
    tax_type: str | None = None
    tax_name: str | None = None
    description: str | None = None
    contact_id: str | None = None
    tracking: list[dict[str, Any]] | None = None


@dataclass
class _Journal:
    number: int
    date_ms: int
    created_ms: int
    source_id: str | None
    source_type: str | None
    reference: str | None
    lines: list[Line] = field(default_factory=list)


class Ledger:
    """Posts journals for one organisation. `buffered=True` holds rows until `flush()` (for bulk generation)."""

    def __init__(
        self,
        store: SandboxStore,
        tenant_id: str,
        *,
        buffered: bool = False,
        accounts: Iterable[Mapping[str, Any]] | None = None,
        tax_names: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.buffered = buffered
        self.by_id: dict[str, AccountRef] = {}
        self.by_code: dict[str, AccountRef] = {}
        self.by_system: dict[str, AccountRef] = {}
        docs = list(accounts) if accounts is not None else list(store.iter_records(tenant_id, "Accounts"))
        for doc in docs:
            self.add_account(doc)
        if tax_names is None:
            tax_names = {d["TaxType"]: d["Name"] for d in store.iter_records(tenant_id, "TaxRates")}
        self.tax_names = dict(tax_names)
        last = store.scalar("SELECT max(journal_number) FROM journals WHERE tenant_id=?", (tenant_id,))
        self.next_number = int(last or 0) + 1
        self.last_created_ms = int(
            store.scalar("SELECT max(created_ms) FROM journals WHERE tenant_id=?", (tenant_id,)) or 0
        )
        self._pending: list[_Journal] = []
        self._pending_by_source: dict[str, list[_Journal]] = {}

    # -- accounts -----------------------------------------------------------------------
    def add_account(self, doc: Mapping[str, Any]) -> AccountRef:
        ref = AccountRef(
            account_id=doc["AccountID"],
            code=doc.get("Code", ""),
            type=doc["Type"],
            name=doc["Name"],
            system_account=doc.get("SystemAccount") or None,
            currency_code=doc.get("CurrencyCode"),
        )
        self.by_id[ref.account_id] = ref
        if ref.code:
            self.by_code[ref.code] = ref
        if ref.system_account:
            self.by_system[ref.system_account] = ref
        return ref

    def account(self, key: str) -> AccountRef:
        """An account by AccountID or Code."""
        ref = self.by_id.get(key) or self.by_code.get(key)
        if ref is None:
            raise LedgerError(f"unknown account {key!r} in organisation {self.tenant_id}")
        return ref

    def system(self, name: str) -> AccountRef:
        try:
            return self.by_system[name]
        except KeyError:
            raise LedgerError(f"organisation {self.tenant_id} has no {name} system account") from None

    # -- posting ------------------------------------------------------------------------
    def post(
        self,
        *,
        source_type: str,
        source_id: str | None,
        date_ms: int,
        lines: Sequence[Line],
        reference: str | None = None,
        created_ms: int | None = None,
    ) -> int:
        """Post one balanced journal; returns its JournalNumber. Zero lines are dropped."""
        kept = [line for line in lines if line.net_cents != 0 or line.tax_cents != 0]
        total = sum(line.net_cents for line in kept)
        if total != 0:
            raise LedgerError(f"journal for {source_type} {source_id} does not balance: off by {total} cents")
        if not kept:
            return 0
        # Journal numbers follow creation order, and CreatedDateUTC never goes backwards along them, as on
        # Xero's `/Journals` feed, which clients page by `offset` = last JournalNumber.
        created = max(created_ms if created_ms is not None else date_ms, self.last_created_ms + 1)
        self.last_created_ms = created
        journal = _Journal(self.next_number, date_ms, created, source_id, source_type, reference, kept)
        self.next_number += 1
        self._pending.append(journal)
        if source_id:
            self._pending_by_source.setdefault(source_id, []).append(journal)
        if not self.buffered:
            self.flush()
        return journal.number

    def flush(self) -> None:
        if not self._pending:
            return
        journal_rows = []
        line_rows = []
        tenant = self.tenant_id
        for j in self._pending:
            journal_rows.append(
                (
                    tenant,
                    j.number,
                    stable_id(f"{tenant}/{j.number}"),
                    j.date_ms,
                    j.created_ms,
                    j.source_id,
                    j.source_type,
                    j.reference,
                )
            )
            for n, line in enumerate(j.lines, start=1):
                net = from_cents(line.net_cents)
                tax = from_cents(line.tax_cents)
                line_rows.append(
                    (
                        tenant,
                        j.number,
                        n,
                        stable_id(f"{tenant}/{j.number}/{n}"),
                        line.account.account_id,
                        line.account.code,
                        line.account.type,
                        line.account.name,
                        line.description,
                        net,
                        round(net + tax, 2),
                        tax,
                        line.tax_type,
                        line.tax_name,
                        line.contact_id,
                        j.date_ms,
                        orjson.dumps(line.tracking).decode() if line.tracking else None,
                    )
                )
        with self.store.transaction():
            self.store.db.executemany("INSERT INTO journals VALUES (?,?,?,?,?,?,?,?)", journal_rows)
            self.store.db.executemany(
                "INSERT INTO journal_lines(tenant_id, journal_number, line_no, journal_line_id, account_id,"
                " account_code, account_type, account_name, description, net_amount, gross_amount, tax_amount,"
                " tax_type, tax_name, contact_id, date_ms, tracking) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                line_rows,
            )
        self._pending.clear()
        self._pending_by_source.clear()

    def _lines_of(self, source_id: str) -> dict[int, list[Line]]:
        """Everything posted so far for `source_id`, by journal date."""
        by_date: dict[int, list[Line]] = {}
        for j in self._pending_by_source.get(source_id, []):
            by_date.setdefault(j.date_ms, []).extend(j.lines)
        rows = self.store.query(
            "SELECT j.journal_date_ms, l.account_id, l.net_amount, l.tax_amount, l.tax_type, l.tax_name,"
            " l.description, l.contact_id, l.tracking FROM journal_lines l JOIN journals j"
            " ON j.tenant_id = l.tenant_id AND j.journal_number = l.journal_number"
            " WHERE l.tenant_id=? AND j.source_id=? ORDER BY l.journal_number, l.line_no",
            (self.tenant_id, source_id),
        )
        for date_ms, account_id, net, tax, tax_type, tax_name, description, contact_id, tracking in rows:
            by_date.setdefault(int(date_ms), []).append(
                Line(
                    self.account(account_id),
                    to_cents(net),
                    to_cents(tax),
                    tax_type,
                    tax_name,
                    description,
                    contact_id,
                    json.loads(tracking) if tracking else None,
                )
            )
        return by_date

    def reverse(
        self,
        source_id: str,
        *,
        source_type: str,
        date_ms: int,
        created_ms: int | None = None,
        reference: str | None = None,
    ) -> int:
        """Undo everything posted so far for `source_id` (a void, a deletion, or the first half of an edit).

        The reversal is dated like what it reverses, not `date_ms` (the day of the void): Xero takes a voided or
        deleted document out of the reports of its own period, which is why a void is refused in a locked
        period (https://central.xero.com/s/article/Void-an-invoice; lock dates:
        https://central.xero.com/s/article/Lock-dates). One reversing journal per original journal date.
        Returns the last journal number, or 0 when nothing was posted for it (a draft).
        """
        del date_ms  # kept in the signature: callers say when the void happened (created_ms carries it)
        number = 0
        for original_date, lines in sorted(self._lines_of(source_id).items()):
            negated = [
                Line(
                    line.account,
                    -line.net_cents,
                    -line.tax_cents,
                    line.tax_type,
                    line.tax_name,
                    line.description,
                    line.contact_id,
                    line.tracking,
                )
                for line in lines
            ]
            if not any(line.net_cents for line in negated):
                continue
            number = self.post(
                source_type=source_type,
                source_id=source_id,
                date_ms=original_date,
                lines=negated,
                reference=reference,
                created_ms=created_ms,
            )
        return number

    # -- documents ----------------------------------------------------------------------
    def _document_lines(
        self,
        doc: Mapping[str, Any],
        *,
        sign: int,
        control: AccountRef,
        contact_id: str | None,
        rate: float | None,
    ) -> list[Line]:
        """Lines for a document with LineItems: each item on its account, tax on the tax account, the
        opposite total on `control`. `sign` is +1 where item lines are debits (bills, spend money)."""
        tax_account = self.by_system.get("GST")
        inclusive = doc.get("LineAmountTypes") in ("Inclusive", "INCLUSIVE")
        lines: list[Line] = []
        tax_by_type: dict[str, int] = {}
        for item in doc.get("LineItems", []):
            line_amount = float(item.get("LineAmount", 0.0))
            tax_amount = float(item.get("TaxAmount", 0.0))
            net_doc = line_amount - tax_amount if inclusive else line_amount
            net_cents = to_base(net_doc, rate)
            tax_cents = to_base(tax_amount, rate)
            tax_type = item.get("TaxType")
            account = self.account(item.get("AccountID") or item["AccountCode"])
            lines.append(
                Line(
                    account,
                    sign * net_cents,
                    sign * tax_cents,
                    tax_type,
                    self.tax_names.get(tax_type or "", tax_type),
                    item.get("Description"),
                    contact_id,
                    [
                        {k: t[k] for k in ("TrackingCategoryID", "TrackingOptionID", "Name", "Option") if k in t}
                        for t in item.get("Tracking", [])
                    ]
                    or None,
                )
            )
            if tax_cents:
                tax_by_type[tax_type or ""] = tax_by_type.get(tax_type or "", 0) + tax_cents
        for tax_type, cents in tax_by_type.items():
            if tax_account is None:
                raise LedgerError(f"organisation {self.tenant_id} has no tax account")
            lines.append(
                Line(tax_account, sign * cents, 0, tax_type, self.tax_names.get(tax_type, tax_type), None, contact_id)
            )
        # The control line carries the document total converted once, as its payments will clear it; the
        # cents that converting line by line adds or loses are absorbed by the first item line.
        total_doc = sum(to_cents(float(i.get("LineAmount", 0.0))) for i in doc.get("LineItems", []))
        if not inclusive:
            total_doc += sum(to_cents(float(i.get("TaxAmount", 0.0))) for i in doc.get("LineItems", []))
        control_cents = -sign * to_base(total_doc / 100, rate)
        drift = control_cents + sum(line.net_cents for line in lines)
        if drift and lines:
            lines[0].net_cents -= drift
        lines.append(Line(control, -sum(line.net_cents for line in lines), 0, None, None, None, contact_id))
        return lines

    def post_invoice(self, doc: Mapping[str, Any], *, created_ms: int | None = None) -> int:
        """An approved invoice, bill or credit note (Type ACCREC, ACCPAY, ACCRECCREDIT, ACCPAYCREDIT)."""
        kind = doc["Type"]
        receivable = kind in ("ACCREC", "ACCRECCREDIT")
        control = self.system("DEBTORS" if receivable else "CREDITORS")
        # Sales credit revenue (-), bills debit expenses (+); credit notes do the opposite.
        sign = {"ACCREC": -1, "ACCPAY": 1, "ACCRECCREDIT": 1, "ACCPAYCREDIT": -1}[kind]
        contact_id = doc.get("Contact", {}).get("ContactID")
        lines = self._document_lines(
            doc, sign=sign, control=control, contact_id=contact_id, rate=doc.get("CurrencyRate")
        )
        source_id = doc.get("InvoiceID") or doc.get("CreditNoteID")
        return self.post(
            source_type=kind,
            source_id=source_id,
            date_ms=_doc_date(doc),
            lines=lines,
            reference=doc.get("InvoiceNumber") or doc.get("CreditNoteNumber") or doc.get("Reference"),
            created_ms=created_ms,
        )

    def post_payment(
        self, payment: Mapping[str, Any], *, document_rate: float | None, created_ms: int | None = None
    ) -> int:
        """A payment against an invoice, bill or credit note (PaymentType ACCRECPAYMENT, ACCPAYPAYMENT,
        ARCREDITPAYMENT, APCREDITPAYMENT). `document_rate` is the paid document's CurrencyRate."""
        kind = payment["PaymentType"]
        bank = self.account(payment["Account"]["AccountID"])
        receivable = kind in ("ACCRECPAYMENT", "ARCREDITPAYMENT")
        control = self.system("DEBTORS" if receivable else "CREDITORS")
        amount = float(payment["Amount"])
        # Money in for customer payments and supplier refunds; out for bill payments and customer refunds.
        money_in = kind in ("ACCRECPAYMENT", "APCREDITPAYMENT")
        bank_cents = to_base(amount, payment.get("CurrencyRate"))
        control_cents = to_base(amount, document_rate)
        direction = 1 if money_in else -1
        contact_id = (payment.get("Invoice") or payment.get("CreditNote") or {}).get("Contact", {}).get("ContactID")
        lines = [
            Line(bank, direction * bank_cents, contact_id=contact_id),
            Line(control, -direction * control_cents, contact_id=contact_id),
        ]
        difference = direction * (bank_cents - control_cents)
        if difference:
            lines.append(Line(self.system("REALISEDCURRENCYGAIN"), -difference, contact_id=contact_id))
        return self.post(
            source_type=kind,
            source_id=payment["PaymentID"],
            date_ms=_doc_date(payment),
            lines=lines,
            reference=payment.get("Reference"),
            created_ms=created_ms,
        )

    def post_bank_transaction(self, doc: Mapping[str, Any], *, created_ms: int | None = None) -> int:
        """Spend or receive money, including prepayments and overpayments (Xero creates those through
        BankTransactions of type RECEIVE-/SPEND-PREPAYMENT and -OVERPAYMENT)."""
        kind = doc["Type"]
        bank = self.account(doc["BankAccount"]["AccountID"])
        sign = 1 if kind.startswith("SPEND") else -1
        contact_id = doc.get("Contact", {}).get("ContactID")
        lines = self._document_lines(doc, sign=sign, control=bank, contact_id=contact_id, rate=doc.get("CurrencyRate"))
        return self.post(
            source_type="CASHPAID" if kind.startswith("SPEND") else "CASHREC",
            source_id=doc["BankTransactionID"],
            date_ms=_doc_date(doc),
            lines=lines,
            reference=doc.get("Reference"),
            created_ms=created_ms,
        )

    def post_prepayment_allocation(
        self, prepayment: Mapping[str, Any], *, date_ms: int, created_ms: int | None = None
    ) -> int:
        """Allocating a whole prepayment to an invoice moves it out of the accounts the prepayment was coded
        to and against the invoice's receivable/payable: the prepayment's lines reversed, control opposite."""
        kind = prepayment["Type"]
        receivable = kind == "RECEIVE-PREPAYMENT"
        control = self.system("DEBTORS" if receivable else "CREDITORS")
        sign = 1 if receivable else -1
        contact_id = prepayment.get("Contact", {}).get("ContactID")
        lines = self._document_lines(
            prepayment, sign=sign, control=control, contact_id=contact_id, rate=prepayment.get("CurrencyRate")
        )
        return self.post(
            source_type="ARPREPAYMENT" if receivable else "APPREPAYMENT",
            source_id=prepayment["PrepaymentID"],
            date_ms=date_ms,
            lines=lines,
            reference=prepayment.get("Reference"),
            created_ms=created_ms,
        )

    def post_bank_transfer(self, doc: Mapping[str, Any], *, created_ms: int | None = None) -> int:
        cents = to_base(float(doc["Amount"]), doc.get("CurrencyRate"))
        lines = [
            Line(self.account(doc["ToBankAccount"]["AccountID"]), cents, description=doc.get("Reference")),
            Line(self.account(doc["FromBankAccount"]["AccountID"]), -cents, description=doc.get("Reference")),
        ]
        return self.post(
            source_type="TRANSFER",
            source_id=doc["BankTransferID"],
            date_ms=_doc_date(doc),
            lines=lines,
            reference=doc.get("Reference"),
            created_ms=created_ms,
        )

    def post_manual_journal(self, doc: Mapping[str, Any], *, created_ms: int | None = None) -> int:
        lines = [
            Line(
                self.account(line.get("AccountID") or line["AccountCode"]),
                to_cents(float(line["LineAmount"])),
                to_cents(float(line.get("TaxAmount", 0.0))),
                line.get("TaxType"),
                self.tax_names.get(line.get("TaxType", ""), line.get("TaxType")),
                line.get("Description"),
                None,
                [
                    {
                        "TrackingCategoryID": t["TrackingCategoryID"],
                        "TrackingOptionID": t["TrackingOptionID"],
                        "Name": t["Name"],
                        "Option": t["Option"],
                    }
                    for t in line.get("Tracking", [])
                ]
                or None,
            )
            for line in doc.get("JournalLines", [])
        ]
        return self.post(
            source_type="MANJOURNAL",
            source_id=doc["ManualJournalID"],
            date_ms=_doc_date(doc),
            lines=lines,
            reference=doc.get("Narration"),
            created_ms=created_ms,
        )


def _doc_date(doc: Mapping[str, Any]) -> int:
    return parse_ms_date(doc["Date"])


def parse_ms_date(value: str) -> int:
    """Epoch ms from Xero's `/Date(1539993600000+0000)/`; the milliseconds are the instant."""
    inner = value[value.index("(") + 1 : value.index(")")]
    for sep in ("+", "-"):
        pos = inner.find(sep, 1)
        if pos > 0:
            inner = inner[:pos]
            break
    return int(inner)


def post(
    store: SandboxStore,
    tenant_id: str,
    *,
    source_type: str,
    source_id: str | None,
    date_ms: int,
    lines: Sequence[Line],
    reference: str | None = None,
    created_ms: int | None = None,
) -> int:
    """Post one balanced journal for an organisation now; returns its JournalNumber."""
    return Ledger(store, tenant_id).post(
        source_type=source_type,
        source_id=source_id,
        date_ms=date_ms,
        lines=lines,
        reference=reference,
        created_ms=created_ms,
    )


def balances(
    store: SandboxStore, tenant_id: str, *, to_ms: int | None = None, from_ms: int | None = None
) -> dict[str, int]:
    """Net cents per AccountID over journal dates in [from_ms, to_ms] (inclusive; None = unbounded)."""
    sql = "SELECT account_id, sum(CAST(round(net_amount * 100) AS INTEGER)) FROM journal_lines WHERE tenant_id=?"
    params: list[Any] = [tenant_id]
    if from_ms is not None:
        sql += " AND date_ms >= ?"
        params.append(from_ms)
    if to_ms is not None:
        sql += " AND date_ms <= ?"
        params.append(to_ms)
    sql += " GROUP BY account_id"
    return {account_id: int(total) for account_id, total in store.query(sql, tuple(params)) if total}

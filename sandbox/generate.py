"""Deterministic organisations that look like real firms' Xero files: the sandbox's data generator.

This module owns what a sandbox organisation contains and how its documents are built: the Organisation,
chart of accounts, tax rates, currencies, contacts and groups, items, tracking categories, branding themes,
users, and a history of 12-24 months of invoices, bills, payments and batch payments, credit notes and their
allocations, prepayments and overpayments, bank transactions and transfers, manual journals, purchase orders,
quotes, repeating invoices, linked transactions, budgets, history entries and attachments.

`OrgBuilder` holds the business operations (create an invoice, pay it, void it, allocate a credit note...)
that both the generator and `churn` play; each one writes the documents as Xero's JSON with `unitdp=4` would
show them afterwards and posts the matching journals through `ledger.Ledger`. The generator replays a history
as a time-ordered queue of such events ending at the anchor (the business "now"), so journal numbers and
`UpdatedDateUTC` follow time as they do in Xero. Everything is a pure function of the seed: ids come from a
seeded `random.Random`, never from `uuid4()` or the wall clock.

It must not serve HTTP or decide API behaviour (paging, summary forms, 2-dp rounding): that is the server's.
Xero behaviours modelled here are cited where they are implemented; simplifications are listed in
`docs/sandbox-data.md`.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any

import orjson

from sandbox import countries
from sandbox.assets import make_attachment
from sandbox.countries import CountryProfile
from sandbox.ledger import DAY_MS, Ledger, Line, from_cents, to_base, to_cents
from sandbox.store import SandboxStore, ms_date

HOUR_MS = 3_600_000

# The same person the HTTP side's `identity.ensure_default_user` creates (same email, same id derivation),
# so whichever side runs first, there is one demo user who can open every organisation.
DEMO_USER_EMAIL = "demo@strongroom.example"
DEMO_USER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, f"strongroom-sandbox-user:{DEMO_USER_EMAIL}"))
DEMO_USER_NAME = "Demo User"


@dataclass(frozen=True)
class SizeSpec:
    """How big an organisation is; record counts scale with `invoices_per_day`."""

    history_days: int
    invoices_per_day: float  # sales invoices plus bills, on an average weekday
    contacts: int
    items: int
    approx_records: int  # what the spec targets, all endpoints together (documentation and bench)


SIZES: dict[str, SizeSpec] = {
    "small": SizeSpec(history_days=365, invoices_per_day=2.7, contacts=60, items=20, approx_records=2_000),
    "medium": SizeSpec(history_days=548, invoices_per_day=51.0, contacts=900, items=120, approx_records=50_000),
    "large": SizeSpec(history_days=730, invoices_per_day=380.0, contacts=6000, items=400, approx_records=500_000),
}

# Indexed columns per endpoint: (id field, number field) for `records.record_id` and `records.number`.
ID_FIELDS: dict[str, tuple[str, str | None]] = {
    "Accounts": ("AccountID", "Code"),
    "Contacts": ("ContactID", "ContactNumber"),
    "ContactGroups": ("ContactGroupID", None),
    "Invoices": ("InvoiceID", "InvoiceNumber"),
    "CreditNotes": ("CreditNoteID", "CreditNoteNumber"),
    "Payments": ("PaymentID", None),
    "BatchPayments": ("BatchPaymentID", None),
    "BankTransactions": ("BankTransactionID", None),
    "BankTransfers": ("BankTransferID", None),
    "ManualJournals": ("ManualJournalID", None),
    "Items": ("ItemID", "Code"),
    "TrackingCategories": ("TrackingCategoryID", None),
    "TaxRates": ("TaxType", "TaxType"),
    "Currencies": ("Code", "Code"),
    "BrandingThemes": ("BrandingThemeID", None),
    "PurchaseOrders": ("PurchaseOrderID", "PurchaseOrderNumber"),
    "Quotes": ("QuoteID", "QuoteNumber"),
    "Overpayments": ("OverpaymentID", None),
    "Prepayments": ("PrepaymentID", None),
    "RepeatingInvoices": ("RepeatingInvoiceID", None),
    "LinkedTransactions": ("LinkedTransactionID", None),
    "Users": ("UserID", None),
    "Budgets": ("BudgetID", None),
}

# Endpoints whose element has no UpdatedDateUTC in the spec; the store keeps NULL in `updated_ms` for them
# (BankTransfers and BrandingThemes carry CreatedDateUTC instead, which is used).
NO_UPDATED = {"TrackingCategories", "TaxRates", "Currencies", "ContactGroups", "RepeatingInvoices"}

_ORG_NAMES: dict[str, tuple[str, ...]] = {
    "AU": ("Harbourside Plumbing", "Wattle & Gum Landscaping", "Koala Coffee Roasters", "Southern Cross Physio"),
    "NZ": ("Kauri Joinery", "Tui Creative Studio", "Southern Alps Tours", "Pōhutukawa Dental"),
    "GB": ("Thames Valley Joinery", "Kettle & Crumpet Bakery", "Brighton Bike Works", "Highland Heating"),
    "US": ("Brooklyn Letterpress", "Lone Star HVAC", "Cascade Outdoor Supply", "Windy City Dental"),
    "CA": ("Maple Leaf Millwork", "Rideau Cycles", "Bonne Bouffe Café", "Okanagan Orchards"),
}
_FIRST = ("Olivia", "Jack", "Aroha", "Liam", "Chloé", "Noah", "Siobhan", "Mateo", "Zoë", "Ravi", "Mei", "Tama")
_LAST = ("Smith", "O'Brien", "Nguyen", "Müller", "Patel", "Ngata", "García", "Kowalski", "Brown", "Lefèvre", "Kim")
_BUSINESS = (
    "Acme Supplies",
    "Blue Fin Traders",
    "Café São Paulo",
    "Smith, Jones & Partners",
    "O'Reilly Electrical",
    "Müller GmbH",
    "North Shore Print",
    '"Best Value" Hardware',
    "Pacific Freight",
    "Greenleaf Organics",
    "Rapid Couriers",
    "Summit IT Services",
    "The Coffee Cart",
    "Tech & Co",
    "Øresund Design",
    "Fenwick Legal",
    "Harbour Insurance",
    "City Power & Light",
    "Parkside Property",
    "Wilson Stationery",
)
_SALES_DESCRIPTIONS = (
    "Consulting services",
    "Monthly retainer",
    "Installation labour",
    "Site visit – call-out fee",
    "Design work (phase 2)",
    "Annual maintenance contract",
    "Training session, half day",
    "Materials as quoted",
)
_PURCHASE_DESCRIPTIONS = (
    "Office supplies",
    "Fuel",
    "Software subscription",
    "Courier charges",
    "Electricity – quarterly",
    "Rent for the month",
    "Insurance premium",
    "Repairs to equipment",
    "Telephone & internet",
    "Advertising – social media",
)
_ITEM_NAMES = ("Widget", "Gadget", "Cable", "Bracket", "Valve", "Filter", "Panel", "Sensor", "Hinge", "Pump")


def random_guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from `rng` (deterministic under a seed), formatted without `uuid.UUID`,
    which is several times slower and runs hundreds of thousands of times per large organisation."""
    h = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


@lru_cache(maxsize=4096)
def iso_date(ms: int) -> str:
    """Xero's `DateString` form: the UTC calendar date at midnight, no zone."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT00:00:00")


def day_start(ms: int) -> int:
    return ms - ms % DAY_MS


def today_ms() -> int:
    return day_start(int(time.time() * 1000))


class OrgBuilder:
    """Business operations on one organisation, shared by the generator and `churn`.

    Documents are mutable dicts; every operation that changes one calls `put` again, so the last state wins
    when `flush` writes pending rows. Journals go through `self.ledger`.
    """

    def __init__(
        self,
        store: SandboxStore,
        tenant_id: str,
        profile: CountryProfile,
        rng: random.Random,
        *,
        base_currency: str,
        buffered: bool = True,
        accounts: list[dict[str, Any]] | None = None,
        fresh: bool = False,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        # A new organisation has no stored history or attachments yet, so there is nothing to look up.
        self.fresh = fresh
        self.profile = profile
        self.rng = rng
        self.base = base_currency
        # (endpoint, id) -> (document, its Date in ms, the event time it was last changed at)
        self.pending: dict[tuple[str, str], tuple[dict[str, Any], int | None, int]] = {}
        self.event_ms = 0
        self.history_rows: list[tuple[Any, ...]] = []
        self.attachment_rows: list[tuple[Any, ...]] = []
        self.history_seq: dict[tuple[str, str], int] = {}
        self.attachment_count: dict[tuple[str, str], int] = {}
        self.accounts: dict[str, dict[str, Any]] = {}  # by Code
        self.ledger = Ledger(
            store,
            tenant_id,
            buffered=buffered,
            accounts=accounts or [],
            tax_names={t.tax_type: t.name for t in profile.tax_rates},
        )
        for doc in accounts or []:
            self.accounts[doc["Code"]] = doc
        self.currencies: dict[str, float] = {}  # foreign code -> base rate
        self.customers: list[dict[str, Any]] = []
        self.suppliers: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.tracking: list[dict[str, Any]] = []
        self.themes: list[str] = []
        self.user_names: list[str] = []
        self.counters: dict[str, int] = {}
        self.events: list[tuple[int, int, Callable[[], object]]] = []
        self._seq = itertools.count()

    # -- plumbing -------------------------------------------------------------------------
    def uid(self) -> str:
        return random_guid(self.rng)

    def next_number(self, key: str) -> int:
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]

    def put(self, endpoint: str, doc: dict[str, Any], *, date_ms: int | None = None) -> None:
        id_field, _ = ID_FIELDS[endpoint]
        self.pending[(endpoint, str(doc[id_field]))] = (doc, date_ms, self.event_ms)

    def schedule(self, at_ms: int, action: Callable[[], object]) -> None:
        heapq.heappush(self.events, (at_ms, next(self._seq), action))

    def run_events(self, until_ms: int) -> None:
        """Play queued events with `at_ms < until_ms` in time order (events may queue more)."""
        while self.events and self.events[0][0] < until_ms:
            self.event_ms, _, action = heapq.heappop(self.events)
            action()

    def history(self, endpoint: str, record_id: str, at_ms: int, changes: str, details: str, user: str = "") -> None:
        key = (endpoint, record_id)
        seq = self.history_seq.get(key)
        if seq is None and not self.fresh:
            seq = int(
                self.store.scalar(
                    "SELECT max(seq) FROM history WHERE tenant_id=? AND endpoint=? AND record_id=?",
                    (self.tenant_id, endpoint, record_id),
                )
                or 0
            )
        seq = (seq or 0) + 1
        self.history_seq[key] = seq
        who = user or (self.rng.choice(self.user_names) if self.user_names else "System Generated")
        self.history_rows.append((self.tenant_id, endpoint, record_id, seq, at_ms, changes, who, details))

    def attach(self, endpoint: str, doc: dict[str, Any], at_ms: int, title: str) -> None:
        """Add one attachment (Xero allows 10 per document) and set HasAttachments on the record.

        Adding an attachment does not move UpdatedDateUTC here: Xero documents that only changes posting a
        journal or editing the document itself reliably do, and a backup must not rely on it.
        """
        id_field, _ = ID_FIELDS[endpoint]
        record_id = str(doc[id_field])
        key = (endpoint, record_id)
        count = self.attachment_count.get(key)
        if count is None and not self.fresh:
            count = int(
                self.store.scalar(
                    "SELECT count(*) FROM attachments WHERE tenant_id=? AND endpoint=? AND record_id=?",
                    (self.tenant_id, endpoint, record_id),
                )
                or 0
            )
        count = count or 0
        if count >= 10:
            return
        n = self.rng.randrange(100_000)
        file = make_attachment(n, title)
        # PUT with an existing file name overwrites in Xero; keep names unique per record instead.
        name = file.file_name if count == 0 else f"{count + 1} {file.file_name}"
        include_online = endpoint in ("Invoices", "CreditNotes") and self.rng.random() < 0.3
        self.attachment_rows.append(
            (
                self.uid(),
                self.tenant_id,
                endpoint,
                record_id,
                name,
                file.mime_type,
                int(include_online),
                file.content,
                at_ms,
            )
        )
        self.attachment_count[key] = count + 1
        doc["HasAttachments"] = True
        self.put(endpoint, doc, date_ms=self.pending[key][1] if key in self.pending else None)

    def flush(self, *, untouched_since_ms: int | None = None) -> None:
        """Write pending documents, history, attachments and journals in one transaction.

        With `untouched_since_ms`, documents changed at or after that event time stay pending: the generator
        uses it so an invoice paid a month after it was raised is serialised and inserted once, not twice."""
        rows = []
        kept: dict[tuple[str, str], tuple[dict[str, Any], int | None, int]] = {}
        for key, entry in self.pending.items():
            if untouched_since_ms is not None and entry[2] >= untouched_since_ms:
                kept[key] = entry
                continue
            (endpoint, record_id), (doc, date_ms, _) = key, entry
            _, number_field = ID_FIELDS[endpoint]
            updated = doc.get("UpdatedDateUTC") or doc.get("CreatedDateUTC")
            contact = doc.get("Contact")
            rows.append(
                (
                    self.tenant_id,
                    endpoint,
                    record_id,
                    None if endpoint in NO_UPDATED or not updated else _ms(updated),
                    date_ms,
                    doc.get("Status") or doc.get("ContactStatus"),
                    doc.get("Type"),
                    contact.get("ContactID") if isinstance(contact, dict) else doc.get("ContactID"),
                    doc.get(number_field) if number_field else None,
                    int(bool(doc.get("HasAttachments"))),
                    orjson.dumps(doc).decode(),
                )
            )
        with self.store.transaction():
            if rows:
                self.store.put_record_rows(rows)
            if self.history_rows:
                self.store.db.executemany("INSERT OR REPLACE INTO history VALUES (?,?,?,?,?,?,?,?)", self.history_rows)
            if self.attachment_rows:
                self.store.db.executemany(
                    "INSERT INTO attachments(attachment_id, tenant_id, endpoint, record_id, file_name, mime_type,"
                    " include_online, content, updated_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                    self.attachment_rows,
                )
            self.ledger.flush()
        self.pending = kept
        self.history_rows.clear()
        self.attachment_rows.clear()

    # -- reference data -----------------------------------------------------------------
    def fx(self, currency: str, at_ms: int) -> float:
        """A day's rate (units of `currency` per base unit): the profile rate with a slow saw-tooth drift of
        up to 4% over 120 days, so payments settle at rates other than their invoices' (realised gains)."""
        if currency == self.base:
            return 1.0
        base_rate = self.currencies[currency]
        day = at_ms // DAY_MS
        phase = sum(currency.encode()) % 97  # not hash(): str hashes are salted per process
        drift = 0.04 * (((day + phase) % 120) - 60) / 60
        return round(base_rate * (1 + drift), 6)

    def account_ref(self, code: str) -> dict[str, Any]:
        doc = self.accounts[code]
        return {"AccountID": doc["AccountID"], "Code": doc["Code"], "Name": doc["Name"]}

    def contact_ref(self, contact: dict[str, Any]) -> dict[str, Any]:
        return {
            "ContactID": contact["ContactID"],
            "Name": contact["Name"],
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "HasValidationErrors": False,
        }

    def pick_tracking(self) -> list[dict[str, Any]]:
        result = []
        for category in self.tracking:
            if category["Status"] != "ACTIVE" or self.rng.random() > 0.5:
                continue
            options = [o for o in category["Options"] if o["Status"] == "ACTIVE"]
            if options:
                option = self.rng.choice(options)
                result.append(
                    {
                        "Name": category["Name"],
                        "Option": option["Name"],
                        "TrackingCategoryID": category["TrackingCategoryID"],
                        "TrackingOptionID": option["TrackingOptionID"],
                    }
                )
        return result

    def active_codes(self, codes: Iterable[str]) -> list[str]:
        return [c for c in codes if c in self.accounts and self.accounts[c]["Status"] == "ACTIVE"]

    # -- documents with line items ------------------------------------------------------
    def line_items(
        self, purpose: str, line_amount_types: str, *, count: int | None = None, unit_dp: int = 4
    ) -> list[dict[str, Any]]:
        """Line items for sales (`purpose="sales"`) or purchases, with tax worked out per line as Xero does:
        exclusive lines add tax on top; inclusive lines carry it inside LineAmount; NoTax lines have none.

        `unit_dp=2` for the types whose GET has no `unitdp` parameter (Quotes, PurchaseOrders,
        RepeatingInvoices in the SPEC): the API can only ever show them at 2 dp, so that is what they hold."""
        rng = self.rng
        p = self.profile
        lines = []
        for _ in range(count or rng.choice((1, 1, 1, 2, 2, 3, 4))):
            item = None
            if purpose == "sales":
                if self.items and rng.random() < 0.4:
                    item = rng.choice(self.items)
                account = rng.choice(self.active_codes(countries.SALES_CODES) or ["200"])
                tax_type = p.sales_tax
                r = rng.random()
                if p.extra_sales_taxes and r < 0.12:
                    tax_type = rng.choice(p.extra_sales_taxes)
                elif r < 0.17:
                    tax_type = p.exempt_sales_tax
                description = item["Description"] if item else rng.choice(_SALES_DESCRIPTIONS)
                unit = (
                    item["SalesDetails"]["UnitPrice"] if item else round(rng.uniform(20, 2500), rng.choice((2, 2, 4)))
                )
            else:
                account = rng.choice([*self.active_codes(countries.EXPENSE_CODES), countries.COGS_CODE])
                tax_type = p.purchases_tax if rng.random() < 0.85 else p.exempt_purchases_tax
                description = rng.choice(_PURCHASE_DESCRIPTIONS)
                unit = round(rng.uniform(5, 1800), rng.choice((2, 2, 4)))
            unit = round(unit, unit_dp)
            if line_amount_types == "NoTax":
                tax_type = p.none_tax
            quantity = rng.choice((1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 12.0))
            discount = rng.choice((0.0,) * 19 + (10.0,)) if purpose == "sales" else 0.0
            line_amount = round(quantity * unit * (1 - discount / 100), 2)
            rate = p.rate_of(tax_type) / 100
            if line_amount_types == "Exclusive":
                tax = round(line_amount * rate, 2)
            elif line_amount_types == "Inclusive":
                tax = round(line_amount * rate / (1 + rate), 2)
            else:
                tax = 0.0
            line: dict[str, Any] = {
                "LineItemID": self.uid(),
                "Description": description,
                "Quantity": quantity,
                "UnitAmount": unit,
                "AccountCode": account,
                "AccountID": self.accounts[account]["AccountID"],
                "TaxType": tax_type,
                "TaxAmount": tax,
                "LineAmount": line_amount,
                "Tracking": self.pick_tracking(),
            }
            if discount:
                line["DiscountRate"] = discount
            if item is not None:
                line["ItemCode"] = item["Code"]
                line["Item"] = {"ItemID": item["ItemID"], "Name": item["Name"], "Code": item["Code"]}
            lines.append(line)
        return lines

    @staticmethod
    def totals(lines: list[dict[str, Any]], line_amount_types: str) -> tuple[float, float, float]:
        tax_cents = sum(to_cents(li["TaxAmount"]) for li in lines)
        amount_cents = sum(to_cents(li["LineAmount"]) for li in lines)
        sub_cents = amount_cents - tax_cents if line_amount_types == "Inclusive" else amount_cents
        return from_cents(sub_cents), from_cents(tax_cents), from_cents(sub_cents + tax_cents)

    def pick_line_amount_types(self, purpose: str) -> str:
        r = self.rng.random()
        if purpose == "sales":
            return "Exclusive" if r < 0.8 else ("Inclusive" if r < 0.95 else "NoTax")
        return "Inclusive" if r < 0.55 else ("Exclusive" if r < 0.95 else "NoTax")

    def document_currency(self, contact: dict[str, Any], at_ms: int) -> tuple[str, float]:
        currency = contact.get("DefaultCurrency") or self.base
        if currency != self.base and currency in self.currencies:
            return currency, self.fx(currency, at_ms)
        return self.base, 1.0

    # -- invoices -----------------------------------------------------------------------
    def create_invoice(
        self,
        kind: str,
        at_ms: int,
        *,
        status: str = "AUTHORISED",
        contact: dict[str, Any] | None = None,
        lines: list[dict[str, Any]] | None = None,
        line_amount_types: str | None = None,
        repeating_invoice_id: str | None = None,
        date_ms: int | None = None,
    ) -> dict[str, Any]:
        """A sales invoice (ACCREC) or bill (ACCPAY) created at `at_ms`, DRAFT, SUBMITTED or AUTHORISED."""
        rng = self.rng
        purpose = "sales" if kind == "ACCREC" else "purchases"
        if contact is None:
            contact = rng.choice(self.customers if kind == "ACCREC" else self.suppliers)
        date = date_ms if date_ms is not None else day_start(at_ms)
        lat = line_amount_types or self.pick_line_amount_types(purpose)
        items = lines if lines is not None else self.line_items(purpose, lat)
        sub, tax, total = self.totals(items, lat)
        currency, rate = self.document_currency(contact, date)
        terms = rng.choice((7, 14, 14, 30, 30, 30)) if kind == "ACCREC" else rng.choice((14, 30, 30, 45))
        due = date + terms * DAY_MS
        invoice_id = self.uid()
        if kind == "ACCREC":
            number = f"INV-{self.next_number('INV'):05d}"
            reference = rng.choice(
                ("", "", f"PO {rng.randrange(1000, 99999)}", "Website order", "Job #" + str(rng.randrange(100, 999)))
            )
        else:
            number = rng.choice(
                (
                    "",
                    f"{rng.randrange(10000, 999999)}",
                    f"SI-{rng.randrange(1000, 9999)}",
                    f"INV/{rng.randrange(100, 9999)}",
                )
            )
            reference = rng.choice(("", "", "Monthly", "Account " + str(rng.randrange(1000, 9999))))
        doc: dict[str, Any] = {
            "Type": kind,
            "InvoiceID": invoice_id,
            "InvoiceNumber": number,
            "Reference": reference,
            "Payments": [],
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "AmountDue": total,
            "AmountPaid": 0.0,
            "AmountCredited": 0.0,
            "CurrencyRate": rate,
            "IsDiscounted": any("DiscountRate" in li for li in items),
            "HasAttachments": False,
            "HasErrors": False,
            "Contact": self.contact_ref(contact),
            "DateString": iso_date(date),
            "Date": ms_date(date),
            "DueDateString": iso_date(due),
            "DueDate": ms_date(due),
            "Status": status,
            "LineAmountTypes": lat,
            "LineItems": items,
            "SubTotal": sub,
            "TotalTax": tax,
            "Total": total,
            "UpdatedDateUTC": ms_date(at_ms),
            "CurrencyCode": currency,
            "SentToContact": kind == "ACCREC" and status == "AUTHORISED" and rng.random() < 0.7,
        }
        if kind == "ACCREC" and self.themes:
            doc["BrandingThemeID"] = self.themes[0] if rng.random() < 0.85 else rng.choice(self.themes)
        if repeating_invoice_id:
            doc["RepeatingInvoiceID"] = repeating_invoice_id
        self.put("Invoices", doc, date_ms=date)
        label = "Invoice" if kind == "ACCREC" else "Bill"
        self.history(
            "Invoices", invoice_id, at_ms, "Created", f"{label} {number} to {contact['Name']} for {total:,.2f}."
        )
        if status == "AUTHORISED":
            self._approve(doc, at_ms, "Invoices")
        return doc

    def _approve(self, doc: dict[str, Any], at_ms: int, endpoint: str) -> None:
        doc["Status"] = "AUTHORISED"
        doc["UpdatedDateUTC"] = ms_date(at_ms)
        self.put(endpoint, doc, date_ms=_ms(doc["Date"]))
        self.ledger.post_invoice(doc, created_ms=at_ms)
        id_field = "InvoiceID" if endpoint == "Invoices" else "CreditNoteID"
        self.history(endpoint, doc[id_field], at_ms, "Approved", f"Approved for {doc['Total']:,.2f}.")

    def approve(self, doc: dict[str, Any], at_ms: int) -> None:
        self._approve(doc, at_ms, "Invoices" if "InvoiceID" in doc else "CreditNotes")

    def edit_draft(self, doc: dict[str, Any], at_ms: int) -> None:
        """Edit a draft's lines: no journal (drafts post nothing), UpdatedDateUTC moves."""
        purpose = "sales" if doc["Type"] in ("ACCREC", "ACCRECCREDIT") else "purchases"
        items = self.line_items(purpose, doc["LineAmountTypes"])
        sub, tax, total = self.totals(items, doc["LineAmountTypes"])
        doc.update(LineItems=items, SubTotal=sub, TotalTax=tax, Total=total, UpdatedDateUTC=ms_date(at_ms))
        if "AmountDue" in doc:
            doc["AmountDue"] = total
        if "RemainingCredit" in doc:
            doc["RemainingCredit"] = total
        endpoint = "Invoices" if "InvoiceID" in doc else "CreditNotes"
        self.put(endpoint, doc, date_ms=_ms(doc["Date"]))
        self.history(endpoint, doc.get("InvoiceID") or doc["CreditNoteID"], at_ms, "Edited", "Line items changed.")

    def delete_draft(self, doc: dict[str, Any], at_ms: int) -> None:
        """Xero deletes only DRAFT/SUBMITTED documents; the record stays with Status DELETED, no journal."""
        if doc["Status"] not in ("DRAFT", "SUBMITTED"):
            return
        doc["Status"] = "DELETED"
        doc["UpdatedDateUTC"] = ms_date(at_ms)
        endpoint = "Invoices" if "InvoiceID" in doc else "CreditNotes"
        self.put(endpoint, doc, date_ms=_ms(doc["Date"]))
        self.history(endpoint, doc.get("InvoiceID") or doc["CreditNoteID"], at_ms, "Deleted", "Deleted.")

    def void(self, doc: dict[str, Any], at_ms: int) -> None:
        """Void an approved document with nothing paid or allocated against it (Xero requires removing
        payments first): a reversing journal dated the void date. Returns quietly otherwise."""
        if doc["Status"] != "AUTHORISED" or doc.get("Payments") or doc.get("AmountCredited") or doc.get("Allocations"):
            return
        doc["Status"] = "VOIDED"
        doc["UpdatedDateUTC"] = ms_date(at_ms)
        if "AmountDue" in doc:
            doc["AmountDue"] = 0.0
        endpoint = "Invoices" if "InvoiceID" in doc else "CreditNotes"
        record_id = doc.get("InvoiceID") or doc["CreditNoteID"]
        self.put(endpoint, doc, date_ms=_ms(doc["Date"]))
        self.ledger.reverse(record_id, source_type=doc["Type"], date_ms=day_start(at_ms), created_ms=at_ms)
        self.history(endpoint, record_id, at_ms, "Voided", "Voided.")

    def due_cents(self, invoice: dict[str, Any]) -> int:
        return to_cents(invoice["Total"]) - to_cents(invoice["AmountPaid"]) - to_cents(invoice["AmountCredited"])

    def _settle(self, invoice: dict[str, Any], at_ms: int) -> None:
        due = self.due_cents(invoice)
        invoice["AmountDue"] = from_cents(due)
        invoice["UpdatedDateUTC"] = ms_date(at_ms)
        if due == 0 and invoice["Status"] == "AUTHORISED":
            invoice["Status"] = "PAID"
            invoice["FullyPaidOnDate"] = ms_date(day_start(at_ms))
            self._close_rounding(invoice, at_ms)
        self.put("Invoices", invoice, date_ms=_ms(invoice["Date"]))

    def _close_rounding(self, doc: dict[str, Any], at_ms: int) -> None:
        """When a foreign-currency invoice or credit note is fully settled, clear the cents that converting
        its total and each part separately left on Accounts Receivable/Payable into realised currency gains,
        so a settled document leaves nothing behind on the control account, as in Xero."""
        rate = doc.get("CurrencyRate") or 1.0
        if rate == 1.0:
            return
        parts = sum(to_base(p["Amount"], rate) for p in doc.get("Payments", []))
        if "InvoiceID" in doc:
            for key in ("CreditNotes", "Prepayments", "Overpayments"):
                parts += sum(to_base(c["AppliedAmount"], rate) for c in doc.get(key, []))
        else:
            parts += sum(to_base(a["Amount"], rate) for a in doc.get("Allocations", []))
        residual = to_base(doc["Total"], rate) - parts
        if not residual:
            return
        kind = doc["Type"]
        receivable = kind in ("ACCREC", "ACCRECCREDIT")
        natural = {"ACCREC": 1, "ACCRECCREDIT": -1, "ACCPAY": -1, "ACCPAYCREDIT": 1}[kind]
        ledger = self.ledger
        self.ledger.post(
            source_type="ACCRECPAYMENT" if receivable else "ACCPAYPAYMENT",
            source_id=doc.get("InvoiceID") or doc["CreditNoteID"],
            date_ms=day_start(at_ms),
            lines=[
                Line(ledger.system("DEBTORS" if receivable else "CREDITORS"), -natural * residual),
                Line(ledger.system("REALISEDCURRENCYGAIN"), natural * residual),
            ],
            reference="Currency rounding",
            created_ms=at_ms,
        )

    def bank_for(self, currency: str) -> str:
        foreign = self.accounts.get(countries.FOREIGN_BANK_CODE)
        if foreign and foreign.get("CurrencyCode") == currency and currency != self.base:
            return countries.FOREIGN_BANK_CODE
        return countries.BANK_CODES[0]

    def pay(
        self,
        invoice: dict[str, Any],
        amount_cents: int,
        at_ms: int,
        *,
        batch_id: str | None = None,
        bank_code: str | None = None,
    ) -> dict[str, Any] | None:
        """Record a payment against an AUTHORISED invoice or bill (Payments PUT), posting bank vs AR/AP."""
        if invoice["Status"] != "AUTHORISED":
            return None
        amount_cents = min(amount_cents, self.due_cents(invoice))
        if amount_cents <= 0:
            return None
        date = day_start(at_ms)
        currency = invoice["CurrencyCode"]
        rate = self.fx(currency, date)
        bank_code = bank_code or self.bank_for(currency)
        bank_account = self.accounts[bank_code]
        amount = from_cents(amount_cents)
        bank_amount = amount if bank_account.get("CurrencyCode", self.base) == currency else round(amount / rate, 2)
        receivable = invoice["Type"] == "ACCREC"
        payment: dict[str, Any] = {
            "PaymentID": self.uid(),
            "Date": ms_date(date),
            "BankAmount": bank_amount,
            "Amount": amount,
            "Reference": self.rng.choice(("", invoice["InvoiceNumber"], "Thank you", "Direct credit")),
            "CurrencyRate": rate,
            "PaymentType": "ACCRECPAYMENT" if receivable else "ACCPAYPAYMENT",
            "Status": "AUTHORISED",
            "UpdatedDateUTC": ms_date(at_ms),
            "HasAccount": True,
            "IsReconciled": self.rng.random() < 0.9,
            "Account": {"AccountID": bank_account["AccountID"], "Code": bank_account["Code"]},
            "Invoice": {
                "Type": invoice["Type"],
                "InvoiceID": invoice["InvoiceID"],
                "InvoiceNumber": invoice["InvoiceNumber"],
                "Contact": {"ContactID": invoice["Contact"]["ContactID"], "Name": invoice["Contact"]["Name"]},
                "CurrencyCode": currency,
                "HasErrors": False,
                "IsDiscounted": False,
            },
            "HasValidationErrors": False,
        }
        if batch_id:
            payment["BatchPaymentID"] = batch_id
            payment["BatchPayment"] = {"BatchPaymentID": batch_id}
        self.put("Payments", payment, date_ms=date)
        self.ledger.post_payment(payment, document_rate=invoice["CurrencyRate"], created_ms=at_ms)
        invoice["Payments"].append(
            {
                "PaymentID": payment["PaymentID"],
                "Date": payment["Date"],
                "Amount": amount,
                "Reference": payment["Reference"],
                "CurrencyRate": rate,
                "HasAccount": False,
                "HasValidationErrors": False,
            }
        )
        invoice["AmountPaid"] = from_cents(to_cents(invoice["AmountPaid"]) + amount_cents)
        self._settle(invoice, at_ms)
        self.history("Payments", payment["PaymentID"], at_ms, "Created", f"Payment of {amount:,.2f} created.")
        self.history(
            "Invoices",
            invoice["InvoiceID"],
            at_ms,
            "Paid" if invoice["Status"] == "PAID" else "Payment",
            f"Payment received from {invoice['Contact']['Name']} on {iso_date(date)[:10]} for {amount:,.2f}.",
        )
        return payment

    def delete_payment(self, payment: dict[str, Any], invoice: dict[str, Any], at_ms: int) -> None:
        """Payments POST with Status DELETED: the payment stays (Status DELETED), a reversal is posted and
        the invoice goes back to AUTHORISED with the amount due again."""
        payment["Status"] = "DELETED"
        payment["UpdatedDateUTC"] = ms_date(at_ms)
        self.put("Payments", payment, date_ms=_ms(payment["Date"]))
        self.ledger.reverse(
            payment["PaymentID"], source_type=payment["PaymentType"], date_ms=day_start(at_ms), created_ms=at_ms
        )
        invoice["Payments"] = [p for p in invoice["Payments"] if p["PaymentID"] != payment["PaymentID"]]
        invoice["AmountPaid"] = from_cents(to_cents(invoice["AmountPaid"]) - to_cents(payment["Amount"]))
        if invoice["Status"] == "PAID":
            invoice["Status"] = "AUTHORISED"
            invoice.pop("FullyPaidOnDate", None)
        self._settle(invoice, at_ms)
        self.history(
            "Invoices", invoice["InvoiceID"], at_ms, "Payment deleted", f"Payment of {payment['Amount']:,.2f} removed."
        )

    def batch_pay(self, bills: list[dict[str, Any]], at_ms: int) -> dict[str, Any] | None:
        """A supplier pay run: one BatchPayment (PAYBATCH) holding one payment per bill, base currency only."""
        payable = [b for b in bills if b["Status"] == "AUTHORISED" and b["CurrencyCode"] == self.base]
        if len(payable) < 2:
            for bill in payable:
                self.pay(bill, self.due_cents(bill), at_ms)
            return None
        batch_id = self.uid()
        payments = [p for bill in payable if (p := self.pay(bill, self.due_cents(bill), at_ms, batch_id=batch_id))]
        total = from_cents(sum(to_cents(p["Amount"]) for p in payments))
        date = day_start(at_ms)
        bank = self.accounts[countries.BANK_CODES[0]]
        batch = {
            "BatchPaymentID": batch_id,
            "Account": {"AccountID": bank["AccountID"]},
            "Reference": f"Pay run {iso_date(date)[:10]}",
            "Particulars": "",
            "Code": "",
            "Details": "Supplier payments",
            "Narrative": "",
            "DateString": iso_date(date),
            "Date": ms_date(date),
            "Amount": total,
            "TotalAmount": total,
            "Type": "PAYBATCH",
            "Status": "AUTHORISED",
            "IsReconciled": all(p["IsReconciled"] for p in payments),
            "UpdatedDateUTC": ms_date(at_ms),
            "Payments": [
                {
                    "Invoice": {"InvoiceID": p["Invoice"]["InvoiceID"], "InvoiceNumber": p["Invoice"]["InvoiceNumber"]},
                    "PaymentID": p["PaymentID"],
                    "Amount": p["Amount"],
                    "BankAmount": p["BankAmount"],
                }
                for p in payments
            ],
        }
        self.put("BatchPayments", batch, date_ms=date)
        self.history("BatchPayments", batch_id, at_ms, "Created", f"Batch payment of {total:,.2f} created.")
        return batch

    # -- credit notes -------------------------------------------------------------------
    def create_credit_note(
        self,
        kind: str,
        contact: dict[str, Any],
        at_ms: int,
        *,
        total_hint: float | None = None,
        status: str = "AUTHORISED",
        currency: tuple[str, float] | None = None,
    ) -> dict[str, Any]:
        rng = self.rng
        purpose = "sales" if kind == "ACCRECCREDIT" else "purchases"
        lat = "Exclusive" if purpose == "sales" else self.pick_line_amount_types(purpose)
        if lat == "NoTax":
            lat = "Exclusive"
        items = self.line_items(purpose, lat, count=1)
        if total_hint:
            # Scale the single line so the credit is a share of the invoice it relates to.
            item = items[0]
            target = (
                round(total_hint / (1 + self.profile.rate_of(item["TaxType"]) / 100), 2)
                if lat == "Exclusive"
                else total_hint
            )
            item.update(Quantity=1.0, UnitAmount=target, LineAmount=target)
            item.pop("DiscountRate", None)
            rate = self.profile.rate_of(item["TaxType"]) / 100
            item["TaxAmount"] = round(target * rate, 2) if lat == "Exclusive" else round(target * rate / (1 + rate), 2)
        sub, tax, total = self.totals(items, lat)
        date = day_start(at_ms)
        code, fx = currency or self.document_currency(contact, date)
        number = f"CN-{self.next_number('CN'):05d}" if kind == "ACCRECCREDIT" else f"SCN-{rng.randrange(1000, 99999)}"
        doc: dict[str, Any] = {
            "CreditNoteID": self.uid(),
            "CreditNoteNumber": number,
            "Payments": [],
            "ID": None,
            "CurrencyRate": fx,
            "Type": kind,
            "Reference": rng.choice(("", "Returned goods", "Pricing error", "Goodwill")),
            "RemainingCredit": total,
            "Allocations": [],
            "HasAttachments": False,
            "HasErrors": False,
            "Contact": self.contact_ref(contact),
            "DateString": iso_date(date),
            "Date": ms_date(date),
            "Status": status,
            "LineAmountTypes": lat,
            "LineItems": items,
            "SubTotal": sub,
            "TotalTax": tax,
            "Total": total,
            "UpdatedDateUTC": ms_date(at_ms),
            "CurrencyCode": code,
            "SentToContact": False,
        }
        doc["ID"] = doc["CreditNoteID"]
        self.put("CreditNotes", doc, date_ms=date)
        self.history("CreditNotes", doc["CreditNoteID"], at_ms, "Created", f"Credit note {number} for {total:,.2f}.")
        if status == "AUTHORISED":
            self._approve(doc, at_ms, "CreditNotes")
        return doc

    def allocate_credit_note(self, credit: dict[str, Any], invoice: dict[str, Any], at_ms: int) -> bool:
        """Allocate as much of the credit as the invoice still owes (CreditNotes/{id}/Allocations PUT).

        Both sides sit in the same receivable/payable account at the same rate, so the allocation posts no
        journal; only the documents' AmountCredited/RemainingCredit and statuses change."""
        if credit["Status"] != "AUTHORISED" or invoice["Status"] != "AUTHORISED":
            return False
        if credit["CurrencyCode"] != invoice["CurrencyCode"] or credit["CurrencyRate"] != invoice["CurrencyRate"]:
            return False
        amount_cents = min(to_cents(credit["RemainingCredit"]), self.due_cents(invoice))
        if amount_cents <= 0:
            return False
        amount = from_cents(amount_cents)
        date = day_start(at_ms)
        credit["Allocations"].append(
            {
                "AllocationID": self.uid(),
                "Amount": amount,
                "Date": ms_date(date),
                "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice["InvoiceNumber"]},
                "IsDeleted": False,
            }
        )
        remaining = to_cents(credit["RemainingCredit"]) - amount_cents
        credit["RemainingCredit"] = from_cents(remaining)
        credit["AppliedAmount"] = from_cents(to_cents(credit.get("AppliedAmount", 0.0)) + amount_cents)
        credit["UpdatedDateUTC"] = ms_date(at_ms)
        if remaining == 0:
            credit["Status"] = "PAID"
            credit["FullyPaidOnDate"] = ms_date(date)
            self._close_rounding(credit, at_ms)
        self.put("CreditNotes", credit, date_ms=_ms(credit["Date"]))
        invoice["CreditNotes"].append(
            {
                "CreditNoteID": credit["CreditNoteID"],
                "CreditNoteNumber": credit["CreditNoteNumber"],
                "ID": credit["CreditNoteID"],
                "AppliedAmount": amount,
                "DateString": iso_date(date),
                "Date": ms_date(date),
                "Total": credit["Total"],
                "HasErrors": False,
            }
        )
        invoice["AmountCredited"] = from_cents(to_cents(invoice["AmountCredited"]) + amount_cents)
        self._settle(invoice, at_ms)
        self.history(
            "CreditNotes",
            credit["CreditNoteID"],
            at_ms,
            "Credit Applied",
            f"{amount:,.2f} applied to {invoice['InvoiceNumber']}.",
        )
        return True

    def refund_credit_note(self, credit: dict[str, Any], at_ms: int) -> dict[str, Any] | None:
        """Pay out the remaining credit (ARCREDITPAYMENT / APCREDITPAYMENT)."""
        if credit["Status"] != "AUTHORISED" or credit["CurrencyCode"] != self.base:
            return None
        amount = credit["RemainingCredit"]
        if amount <= 0:
            return None
        date = day_start(at_ms)
        bank = self.accounts[countries.BANK_CODES[0]]
        kind = "ARCREDITPAYMENT" if credit["Type"] == "ACCRECCREDIT" else "APCREDITPAYMENT"
        payment = {
            "PaymentID": self.uid(),
            "Date": ms_date(date),
            "BankAmount": amount,
            "Amount": amount,
            "Reference": "Refund",
            "CurrencyRate": 1.0,
            "PaymentType": kind,
            "Status": "AUTHORISED",
            "UpdatedDateUTC": ms_date(at_ms),
            "HasAccount": True,
            "IsReconciled": self.rng.random() < 0.8,
            "Account": {"AccountID": bank["AccountID"], "Code": bank["Code"]},
            "CreditNote": {
                "CreditNoteNumber": credit["CreditNoteNumber"],
                "CreditNoteID": credit["CreditNoteID"],
                "Type": credit["Type"],
                "Contact": {"ContactID": credit["Contact"]["ContactID"], "Name": credit["Contact"]["Name"]},
            },
            "HasValidationErrors": False,
        }
        self.put("Payments", payment, date_ms=date)
        self.ledger.post_payment(payment, document_rate=credit["CurrencyRate"], created_ms=at_ms)
        credit["Payments"].append(
            {
                "PaymentID": payment["PaymentID"],
                "Date": payment["Date"],
                "Amount": amount,
                "Reference": "Refund",
                "CurrencyRate": 1.0,
                "HasAccount": False,
                "HasValidationErrors": False,
            }
        )
        credit["RemainingCredit"] = 0.0
        credit["Status"] = "PAID"
        credit["FullyPaidOnDate"] = ms_date(date)
        credit["UpdatedDateUTC"] = ms_date(at_ms)
        self.put("CreditNotes", credit, date_ms=_ms(credit["Date"]))
        self.history("CreditNotes", credit["CreditNoteID"], at_ms, "Cash Refunded", f"Refund of {amount:,.2f}.")
        return payment

    # -- bank -----------------------------------------------------------------------------
    def create_bank_transaction(
        self,
        kind: str,
        at_ms: int,
        *,
        contact: dict[str, Any] | None = None,
        lines: list[dict[str, Any]] | None = None,
        bank_code: str | None = None,
        line_amount_types: str | None = None,
        reference: str = "",
    ) -> dict[str, Any]:
        """Spend or receive money (BankTransactions PUT); RECEIVE-/SPEND-PREPAYMENT and -OVERPAYMENT also
        create the Prepayment/Overpayment record that Xero derives from them."""
        rng = self.rng
        spend = kind.startswith("SPEND")
        if contact is None:
            contact = rng.choice(self.suppliers if spend else self.customers)
        lat = line_amount_types or ("Inclusive" if rng.random() < 0.6 else "Exclusive")
        if lines is None:
            lines = self.line_items("purchases" if spend else "sales", lat, count=rng.choice((1, 1, 2)))
        bank_code = bank_code or rng.choice(
            (countries.BANK_CODES[0],) * 6 + (countries.CREDIT_CARD_CODE,) * (3 if spend else 0)
        )
        bank = self.accounts[bank_code]
        currency = bank.get("CurrencyCode", self.base)
        date = day_start(at_ms)
        rate = self.fx(currency, date)
        sub, tax, total = self.totals(lines, lat)
        doc: dict[str, Any] = {
            "BankTransactionID": self.uid(),
            "BankAccount": {"AccountID": bank["AccountID"], "Code": bank["Code"], "Name": bank["Name"]},
            "Type": kind,
            "Reference": reference or rng.choice(("", "", "Card purchase", "EFT", "Cash")),
            "IsReconciled": rng.random() < 0.85,
            "HasAttachments": False,
            "Contact": self.contact_ref(contact),
            "DateString": iso_date(date),
            "Date": ms_date(date),
            "Status": "AUTHORISED",
            "LineAmountTypes": lat,
            "LineItems": lines,
            "SubTotal": sub,
            "TotalTax": tax,
            "Total": total,
            "UpdatedDateUTC": ms_date(at_ms),
            "CurrencyCode": currency,
        }
        if currency != self.base:
            doc["CurrencyRate"] = rate
        if kind.endswith("PREPAYMENT"):
            doc["PrepaymentID"] = self.uid()
        if kind.endswith("OVERPAYMENT"):
            doc["OverpaymentID"] = self.uid()
        self.put("BankTransactions", doc, date_ms=date)
        self.ledger.post_bank_transaction(doc, created_ms=at_ms)
        self.history(
            "BankTransactions",
            doc["BankTransactionID"],
            at_ms,
            "Created",
            f"{'Spend' if spend else 'Receive'} money for {total:,.2f}.",
        )
        if "PrepaymentID" in doc or "OverpaymentID" in doc:
            self._credit_from_bank(doc, at_ms)
        return doc

    def _credit_from_bank(self, bank_doc: dict[str, Any], at_ms: int) -> None:
        prepayment = "PrepaymentID" in bank_doc
        endpoint = "Prepayments" if prepayment else "Overpayments"
        id_field = "PrepaymentID" if prepayment else "OverpaymentID"
        doc: dict[str, Any] = {
            id_field: bank_doc[id_field],
            "Type": bank_doc["Type"],
            "Contact": bank_doc["Contact"],
            "DateString": bank_doc["DateString"],
            "Date": bank_doc["Date"],
            "Status": "AUTHORISED",
            "LineAmountTypes": bank_doc["LineAmountTypes"],
            "LineItems": bank_doc["LineItems"],
            "SubTotal": bank_doc["SubTotal"],
            "TotalTax": bank_doc["TotalTax"],
            "Total": bank_doc["Total"],
            "UpdatedDateUTC": ms_date(at_ms),
            "CurrencyCode": bank_doc["CurrencyCode"],
            "CurrencyRate": bank_doc.get("CurrencyRate", 1.0),
            "RemainingCredit": bank_doc["Total"],
            "Allocations": [],
            "Payments": [],
            "HasAttachments": False,
        }
        if not prepayment:
            doc["Reference"] = bank_doc["Reference"]
        self.put(endpoint, doc, date_ms=_ms(bank_doc["Date"]))

    def allocate_credit(
        self, credit: dict[str, Any], invoice: dict[str, Any], at_ms: int, *, date_ms: int | None = None
    ) -> bool:
        """Allocate a prepayment (whole) or overpayment (up to the amount due) to an invoice, dated `date_ms`
        (default: the day of `at_ms`)."""
        prepayment = "PrepaymentID" in credit
        if credit["Status"] != "AUTHORISED" or invoice["Status"] != "AUTHORISED":
            return False
        if credit["CurrencyCode"] != self.base or invoice["CurrencyCode"] != self.base:
            return False
        if credit["Contact"]["ContactID"] != invoice["Contact"]["ContactID"]:
            return False  # Xero allocates only to the same contact's documents
        remaining = to_cents(credit["RemainingCredit"])
        due = self.due_cents(invoice)
        if prepayment and (remaining != to_cents(credit["Total"]) or remaining > due):
            return False
        amount_cents = min(remaining, due)
        if amount_cents <= 0:
            return False
        date = day_start(date_ms if date_ms is not None else at_ms)
        if prepayment:
            self.ledger.post_prepayment_allocation(credit, date_ms=date, created_ms=at_ms)
        credit["Allocations"].append(
            {
                "AllocationID": self.uid(),
                "Amount": from_cents(amount_cents),
                "Date": ms_date(date),
                "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice["InvoiceNumber"]},
                "IsDeleted": False,
            }
        )
        credit["RemainingCredit"] = from_cents(remaining - amount_cents)
        credit["AppliedAmount"] = from_cents(to_cents(credit.get("AppliedAmount", 0.0)) + amount_cents)
        credit["UpdatedDateUTC"] = ms_date(at_ms)
        if remaining == amount_cents:
            credit["Status"] = "PAID"
        endpoint = "Prepayments" if prepayment else "Overpayments"
        self.put(endpoint, credit, date_ms=_ms(credit["Date"]))
        entry = {
            ("PrepaymentID" if prepayment else "OverpaymentID"): credit[
                "PrepaymentID" if prepayment else "OverpaymentID"
            ],
            "Date": ms_date(date),
            "AppliedAmount": from_cents(amount_cents),
            "Total": credit["Total"],
        }
        invoice["Prepayments" if prepayment else "Overpayments"].append(entry)
        invoice["AmountCredited"] = from_cents(to_cents(invoice["AmountCredited"]) + amount_cents)
        self._settle(invoice, at_ms)
        return True

    def create_transfer(self, at_ms: int, amount: float, from_code: str, to_code: str) -> dict[str, Any]:
        date = day_start(at_ms)
        source = self.accounts[from_code]
        target = self.accounts[to_code]
        doc = {
            "BankTransferID": self.uid(),
            "FromBankAccount": {"AccountID": source["AccountID"], "Code": source["Code"], "Name": source["Name"]},
            "ToBankAccount": {"AccountID": target["AccountID"], "Code": target["Code"], "Name": target["Name"]},
            "Amount": amount,
            "Date": ms_date(date),
            "DateString": iso_date(date),
            "CurrencyRate": 1.0,
            "FromBankTransactionID": self.uid(),
            "ToBankTransactionID": self.uid(),
            "FromIsReconciled": self.rng.random() < 0.9,
            "ToIsReconciled": self.rng.random() < 0.9,
            "Reference": self.rng.choice(("Savings", "Top up", "Transfer", "Sweep to savings")),
            "HasAttachments": False,
            "CreatedDateUTC": ms_date(at_ms),
            "Status": "AUTHORISED",
        }
        self.put("BankTransfers", doc, date_ms=date)
        self.ledger.post_bank_transfer(doc, created_ms=at_ms)
        return doc

    def create_manual_journal(
        self, at_ms: int, narration: str, lines: list[tuple[str, float, str]], *, status: str = "POSTED"
    ) -> dict[str, Any]:
        """`lines` are (account code, amount debit +, description); POSTED journals post, drafts don't."""
        date = day_start(at_ms)
        doc: dict[str, Any] = {
            "ManualJournalID": self.uid(),
            "Narration": narration,
            "Date": ms_date(date),
            "DateString": iso_date(date),
            "Status": status,
            "LineAmountTypes": "NoTax",
            "ShowOnCashBasisReports": True,
            "HasAttachments": False,
            "UpdatedDateUTC": ms_date(at_ms),
            "JournalLines": [
                {
                    "LineAmount": amount,
                    "AccountCode": code,
                    "AccountID": self.accounts[code]["AccountID"],
                    "Description": description,
                    "TaxType": self.profile.none_tax,
                    "TaxAmount": 0.0,
                    "IsBlank": False,
                    "Tracking": [],
                }
                for code, amount, description in lines
            ],
        }
        self.put("ManualJournals", doc, date_ms=date)
        if status == "POSTED":
            self.ledger.post_manual_journal(doc, created_ms=at_ms)
        self.history("ManualJournals", doc["ManualJournalID"], at_ms, "Created", narration)
        return doc

    def void_manual_journal(self, doc: dict[str, Any], at_ms: int) -> None:
        doc["Status"] = "VOIDED"
        doc["UpdatedDateUTC"] = ms_date(at_ms)
        self.put("ManualJournals", doc, date_ms=_ms(doc["Date"]))
        self.ledger.reverse(
            doc["ManualJournalID"], source_type="MANJOURNAL", date_ms=day_start(at_ms), created_ms=at_ms
        )
        self.history("ManualJournals", doc["ManualJournalID"], at_ms, "Voided", "Voided.")

    # -- documents without journals -----------------------------------------------------
    def create_purchase_order(self, at_ms: int, status: str) -> dict[str, Any]:
        rng = self.rng
        contact = rng.choice(self.suppliers)
        lat = "Exclusive"
        items = self.line_items("purchases", lat, unit_dp=2)
        sub, tax, total = self.totals(items, lat)
        date = day_start(at_ms)
        delivery = date + rng.choice((3, 7, 14)) * DAY_MS
        currency, rate = self.document_currency(contact, date)
        city = rng.choice(self.profile.cities)
        doc: dict[str, Any] = {
            "PurchaseOrderID": self.uid(),
            "PurchaseOrderNumber": f"PO-{self.next_number('PO'):05d}",
            "Contact": self.contact_ref(contact),
            "Date": ms_date(date),
            "DateString": iso_date(date),
            "DeliveryDate": ms_date(delivery),
            "DeliveryDateString": iso_date(delivery),
            "LineAmountTypes": lat,
            "Reference": rng.choice(("", "Stock", "Job supplies")),
            "CurrencyCode": currency,
            "CurrencyRate": rate,
            "Status": status,
            "SentToContact": status != "DRAFT",
            "DeliveryAddress": f"{rng.randrange(1, 400)} Main Street, {city[0]} {city[2]}",
            "AttentionTo": rng.choice(_FIRST),
            "Telephone": f"+{self.profile.phone_country} {rng.randrange(200, 999)} {rng.randrange(1000, 9999)}",
            "DeliveryInstructions": rng.choice(("", "Leave at reception", "Call on arrival; gate code 1234#")),
            "ExpectedArrivalDate": ms_date(delivery),
            "LineItems": items,
            "SubTotal": sub,
            "TotalTax": tax,
            "Total": total,
            "TotalDiscount": 0.0,
            "HasAttachments": False,
            "IsDiscounted": False,
            "UpdatedDateUTC": ms_date(at_ms),
        }
        if self.themes:
            doc["BrandingThemeID"] = self.themes[0]
        self.put("PurchaseOrders", doc, date_ms=date)
        self.history("PurchaseOrders", doc["PurchaseOrderID"], at_ms, "Created", f"Purchase order for {total:,.2f}.")
        return doc

    def create_quote(self, at_ms: int, status: str) -> dict[str, Any]:
        rng = self.rng
        contact = rng.choice(self.customers)
        items = self.line_items("sales", "Exclusive", unit_dp=2)
        sub, tax, total = self.totals(items, "Exclusive")
        date = day_start(at_ms)
        expiry = date + 30 * DAY_MS
        currency, rate = self.document_currency(contact, date)
        doc: dict[str, Any] = {
            "QuoteID": self.uid(),
            "QuoteNumber": f"QU-{self.next_number('QU'):05d}",
            "Reference": rng.choice(("", "Kitchen refit", "Stage 2", "Annual service")),
            "Terms": "Valid for 30 days. 50% deposit on acceptance.",
            "Contact": self.contact_ref(contact),
            "LineItems": items,
            "Date": ms_date(date),
            "DateString": iso_date(date),
            "ExpiryDate": ms_date(expiry),
            "ExpiryDateString": iso_date(expiry),
            "Status": status,
            "CurrencyCode": currency,
            "CurrencyRate": rate,
            "SubTotal": sub,
            "TotalTax": tax,
            "Total": total,
            "TotalDiscount": 0.0,
            "Title": rng.choice(("Quote", "Proposal", "Estimate")),
            "Summary": rng.choice(("", "As discussed on site.", "Includes materials & labour")),
            "UpdatedDateUTC": ms_date(at_ms),
            "LineAmountTypes": "EXCLUSIVE",
        }
        if self.themes:
            doc["BrandingThemeID"] = self.themes[0]
        self.put("Quotes", doc, date_ms=date)
        return doc

    def _contact_names(self) -> set[str]:
        names: set[str] | None = getattr(self, "_names_in_use", None)
        if names is None:
            names = set()
            if not self.fresh:
                rows = self.store.query(
                    "SELECT json_extract(doc, '$.Name') FROM records WHERE tenant_id=? AND endpoint='Contacts'",
                    (self.tenant_id,),
                )
                names = {str(name).lower() for (name,) in rows if name}
            self._names_in_use = names
        return names

    def create_contact(
        self, at_ms: int, *, customer: bool, supplier: bool, currency: str | None = None
    ) -> dict[str, Any]:
        rng = self.rng
        p = self.profile
        person = rng.random() < 0.25
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        n = self.next_number("CONTACT")
        name = f"{first} {last}" if person else f"{rng.choice(_BUSINESS)}"
        name = f"{name} ({n})" if not person or rng.random() < 0.5 else name
        if name.lower() in self._contact_names():
            # Xero refuses a second active contact with the same name ("The contact name ... is already assigned
            # to another contact", https://developer.xero.com/documentation/api/accounting/contacts#post-contacts).
            name = f"{name} ({n})"
        self._contact_names().add(name.lower())
        city, region, postcode = rng.choice(p.cities)
        doc: dict[str, Any] = {
            "ContactID": self.uid(),
            "ContactNumber": f"C{n:05d}" if rng.random() < 0.3 else None,
            "AccountNumber": f"ACC-{n:04d}" if rng.random() < 0.4 else None,
            "ContactStatus": "ACTIVE",
            "Name": name,
            "FirstName": first,
            "LastName": last,
            "EmailAddress": f"{first.lower()}.{last.lower().replace(chr(39), '')}{n}@example.com",
            "BankAccountDetails": f"{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}-{rng.randrange(10**6, 10**7)}"
            if supplier
            else "",
            "TaxNumber": f"{rng.randrange(10**8, 10**9)}" if rng.random() < 0.5 else "",
            "Addresses": [
                {
                    "AddressType": "STREET",
                    "AddressLine1": f"{rng.randrange(1, 300)} High St",
                    "City": city,
                    "Region": region,
                    "PostalCode": postcode,
                    "Country": p.code,
                },
                {
                    "AddressType": "POBOX",
                    "AddressLine1": f"PO Box {rng.randrange(100, 9999)}",
                    "City": city,
                    "Region": region,
                    "PostalCode": postcode,
                    "Country": p.code,
                },
            ],
            "Phones": [
                {
                    "PhoneType": "DEFAULT",
                    "PhoneNumber": f"{rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
                    "PhoneAreaCode": f"{rng.randrange(2, 9)}",
                    "PhoneCountryCode": p.phone_country,
                },
                {"PhoneType": "MOBILE", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
                {"PhoneType": "FAX", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
                {"PhoneType": "DDI", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""},
            ],
            "UpdatedDateUTC": ms_date(at_ms),
            "ContactGroups": [],
            "IsSupplier": supplier,
            "IsCustomer": customer,
            "ContactPersons": [
                {
                    "FirstName": rng.choice(_FIRST),
                    "LastName": rng.choice(_LAST),
                    "EmailAddress": f"accounts{n}@example.com",
                    "IncludeInEmails": True,
                }
            ]
            if rng.random() < 0.3
            else [],
            "HasAttachments": False,
            "HasValidationErrors": False,
        }
        for key in ("ContactNumber", "AccountNumber"):
            if doc[key] is None:
                del doc[key]
        if currency and currency != self.base:
            doc["DefaultCurrency"] = currency
        if customer:
            doc["SalesDefaultAccountCode"] = "200"
        if supplier:
            doc["PurchasesDefaultAccountCode"] = self.rng.choice(countries.EXPENSE_CODES)
        self.put("Contacts", doc)
        if customer:
            self.customers.append(doc)
        if supplier:
            self.suppliers.append(doc)
        return doc

    def create_item(self, at_ms: int) -> dict[str, Any]:
        rng = self.rng
        n = self.next_number("ITEM")
        name = f"{rng.choice(_ITEM_NAMES)} {rng.choice(('Mk II', 'Pro', 'Lite', 'XL', '50mm', '3/4 inch', 'Blue'))}"
        price = round(rng.uniform(2, 900), rng.choice((2, 4)))
        doc = {
            "ItemID": self.uid(),
            "Code": f"ITM-{n:04d}",
            "Description": f"{name} – supplied & fitted",
            "PurchaseDescription": f"{name} (wholesale)",
            "UpdatedDateUTC": ms_date(at_ms),
            "PurchaseDetails": {
                "UnitPrice": round(price * 0.6, 4),
                "AccountCode": countries.COGS_CODE,
                "TaxType": self.profile.purchases_tax,
            },
            "SalesDetails": {"UnitPrice": price, "AccountCode": "200", "TaxType": self.profile.sales_tax},
            "Name": name,
            "IsTrackedAsInventory": False,
            "IsSold": True,
            "IsPurchased": True,
        }
        self.put("Items", doc)
        self.items.append(doc)
        return doc


def _ms(value: str) -> int:
    inner = value[6 : value.index(")")]
    cut = max(inner.rfind("+"), inner.rfind("-"))
    return int(inner[:cut] if cut > 0 else inner)


# -- organisation skeleton ------------------------------------------------------------------
def _accounts(builder: OrgBuilder, at_ms: int, *, multi_currency_code: str | None) -> list[dict[str, Any]]:
    p = builder.profile
    docs = []
    specs = list(countries.DEFAULT_CHART)
    specs.insert(2, countries.AccountSpec(countries.CREDIT_CARD_CODE, "Company Credit Card", "BANK", "none"))
    if multi_currency_code:
        specs.insert(
            3, countries.AccountSpec(countries.FOREIGN_BANK_CODE, f"{multi_currency_code} Account", "BANK", "none")
        )
    for spec in specs:
        account_class = countries.ACCOUNT_CLASS[spec.type]
        reporting_code, reporting_name = countries.REPORTING_CODE[account_class]
        doc: dict[str, Any] = {
            "AccountID": builder.uid(),
            "Code": spec.code,
            "Name": spec.name.format(tax_label=p.tax_label),
            "Status": "ACTIVE",
            "Type": spec.type,
            "TaxType": p.tax_type_for(spec.tax),
            "Description": spec.description,
            "Class": account_class,
            "EnablePaymentsToAccount": spec.enable_payments,
            "ShowInExpenseClaims": spec.show_in_expense_claims,
            "BankAccountType": "",
            "ReportingCode": reporting_code,
            "ReportingCodeName": reporting_name,
            "HasAttachments": False,
            "UpdatedDateUTC": ms_date(at_ms),
            "AddToWatchlist": False,
        }
        if spec.system_account:
            doc["SystemAccount"] = spec.system_account
        if spec.type == "BANK":
            doc["BankAccountType"] = "CREDITCARD" if spec.code == countries.CREDIT_CARD_CODE else "BANK"
            doc["BankAccountNumber"] = f"{builder.rng.randrange(10**7, 10**8)}"
            doc["CurrencyCode"] = multi_currency_code if spec.code == countries.FOREIGN_BANK_CODE else builder.base
        docs.append(doc)
    return docs


def _organisation_doc(builder: OrgBuilder, name: str, created_ms: int) -> dict[str, Any]:
    p = builder.profile
    rng = builder.rng
    city, region, postcode = p.cities[0]
    fy_day, fy_month = p.financial_year_end
    return {
        "OrganisationID": builder.tenant_id,
        "APIKey": "",
        "Name": name,
        "LegalName": name if name.endswith(p.legal_suffix) else f"{name} {p.legal_suffix}",
        "PaysTax": True,
        "Version": p.version,
        "OrganisationType": "COMPANY",
        "BaseCurrency": builder.base,
        "CountryCode": p.code,
        "IsDemoCompany": False,
        "OrganisationStatus": "ACTIVE",
        "RegistrationNumber": f"{rng.randrange(10**8, 10**9)}",
        "TaxNumber": f"{rng.randrange(10**8, 10**9)}",
        "FinancialYearEndDay": fy_day,
        "FinancialYearEndMonth": fy_month,
        "SalesTaxBasis": p.sales_tax_basis,
        "SalesTaxPeriod": p.sales_tax_period,
        "DefaultSalesTax": "Tax Exclusive",
        "DefaultPurchasesTax": "Tax Inclusive",
        "CreatedDateUTC": ms_date(created_ms),
        "OrganisationEntityType": "COMPANY",
        "Timezone": p.timezone,
        "ShortCode": "!" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(5)),
        "Edition": "BUSINESS",
        "Class": "STANDARD",
        "LineOfBusiness": rng.choice(("Trades", "Professional services", "Hospitality", "Retail")),
        "Addresses": [
            {
                "AddressType": "STREET",
                "AddressLine1": f"{rng.randrange(1, 200)} Queen Street",
                "City": city,
                "Region": region,
                "PostalCode": postcode,
                "Country": p.code,
                "AttentionTo": "",
            },
            {
                "AddressType": "POBOX",
                "AddressLine1": f"PO Box {rng.randrange(100, 9999)}",
                "City": city,
                "Region": region,
                "PostalCode": postcode,
                "Country": p.code,
            },
        ],
        "Phones": [
            {
                "PhoneType": "OFFICE",
                "PhoneNumber": f"{rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
                "PhoneCountryCode": p.phone_country,
            }
        ],
        "ExternalLinks": [{"LinkType": "Website", "Url": "https://example.com"}],
        "PaymentTerms": {
            "Bills": {"Day": 20, "Type": "OFFOLLOWINGMONTH"},
            "Sales": {"Day": 14, "Type": "DAYSAFTERBILLDATE"},
        },
    }


def _tax_rate_docs(p: CountryProfile) -> list[dict[str, Any]]:
    docs = []
    for spec in p.tax_rates:
        assets, equity, expenses, liabilities, revenue = spec.applies_to
        docs.append(
            {
                "Name": spec.name,
                "TaxType": spec.tax_type,
                "ReportTaxType": spec.report_tax_type,
                "CanApplyToAssets": assets,
                "CanApplyToEquity": equity,
                "CanApplyToExpenses": expenses,
                "CanApplyToLiabilities": liabilities,
                "CanApplyToRevenue": revenue,
                "DisplayTaxRate": spec.rate,
                "EffectiveRate": spec.rate,
                "Status": "ACTIVE",
                "TaxComponents": [
                    {"Name": name, "Rate": rate, "IsCompound": False, "IsNonRecoverable": False}
                    for name, rate in spec.component_list()
                ],
            }
        )
    return docs


def _insert_org(
    store: SandboxStore, builder: OrgBuilder, name: str, size: str, seed: int | None, created_ms: int
) -> None:
    doc = _organisation_doc(builder, name, created_ms)
    store.db.execute(
        "INSERT OR REPLACE INTO orgs(tenant_id, name, country, base_currency, tier, size, seed, created_ms, doc)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        (
            builder.tenant_id,
            name,
            builder.profile.code,
            builder.base,
            "core",
            size,
            seed,
            created_ms,
            orjson.dumps(doc).decode(),
        ),
    )


def _skeleton(builder: OrgBuilder, at_ms: int, *, multi_currency: bool, demo_user: bool) -> None:
    """What every organisation has on day one: chart, tax rates, currencies, a branding theme, a user."""
    p = builder.profile
    foreign = list(p.foreign_currencies) if multi_currency else []
    for doc in _accounts(builder, at_ms, multi_currency_code=foreign[0][0] if foreign else None):
        builder.accounts[doc["Code"]] = doc
        builder.ledger.add_account(doc)
        builder.put("Accounts", doc)
    for doc in _tax_rate_docs(p):
        builder.put("TaxRates", doc)
    builder.put("Currencies", {"Code": builder.base, "Description": countries.CURRENCY_NAMES[builder.base]})
    for code, rate in foreign:
        builder.currencies[code] = rate
        builder.put("Currencies", {"Code": code, "Description": countries.CURRENCY_NAMES[code]})
    theme: dict[str, Any] = {
        "BrandingThemeID": builder.uid(),
        "Name": "Standard",
        "Type": "INVOICE",
        "SortOrder": 0,
        "CreatedDateUTC": ms_date(at_ms),
    }
    builder.put("BrandingThemes", theme)
    builder.themes.append(theme["BrandingThemeID"])
    if demo_user:
        user = {
            "UserID": DEMO_USER_ID,
            "EmailAddress": DEMO_USER_EMAIL,
            "FirstName": "Demo",
            "LastName": "User",
            "UpdatedDateUTC": ms_date(at_ms),
            "IsSubscriber": True,
            "OrganisationRole": "FINANCIALADVISER",
        }
        builder.put("Users", user)
        builder.user_names.append(DEMO_USER_NAME)


def _save_state(store: SandboxStore, builder: OrgBuilder, multi_currency: bool) -> None:
    """What churn needs to carry on where generation stopped (counters, currencies)."""
    store.set_config(
        f"org_state:{builder.tenant_id}",
        {"counters": builder.counters, "currencies": builder.currencies, "multi_currency": multi_currency},
    )


def ensure_demo_user(store: SandboxStore) -> str:
    store.db.execute(
        "INSERT OR IGNORE INTO users(user_id, email, name) VALUES (?,?,?)",
        (DEMO_USER_ID, DEMO_USER_EMAIL, DEMO_USER_NAME),
    )
    return DEMO_USER_ID


def create_empty_org(store: SandboxStore, *, country: str, base_currency: str | None = None, name: str) -> str:
    """A new, empty organisation as a person creates one in Xero before a restore: the Organisation, default
    chart with system accounts, default tax rates, base currency, the Standard branding theme; no transactions.

    The tenant id is random (like Xero's); everything else is fixed by `country` and `name`.
    """
    p = countries.profile(country)
    tenant_id = str(uuid.uuid4())
    now = store.now_ms()
    rng = random.Random(f"empty:{tenant_id}")
    builder = OrgBuilder(store, tenant_id, p, rng, base_currency=base_currency or p.base_currency, fresh=True)
    if builder.base not in countries.CURRENCY_NAMES:
        raise ValueError(f"unsupported base currency {builder.base!r}")
    with store.transaction():
        _skeleton(builder, now, multi_currency=False, demo_user=True)
        _insert_org(store, builder, name, "empty", None, now)
        ensure_demo_user(store)
        store.db.execute("INSERT OR IGNORE INTO user_orgs(user_id, tenant_id) VALUES (?,?)", (DEMO_USER_ID, tenant_id))
        builder.flush()
        _save_state(store, builder, False)
    return tenant_id


def create_org(
    store: SandboxStore,
    *,
    seed: int,
    size: str,
    country: str,
    name: str | None = None,
    anchor_ms: int | None = None,
    multi_currency: bool | None = None,
) -> str:
    """Generate one organisation with `size` worth of history ending at `anchor_ms` (default: today 00:00
    UTC). Deterministic: the same arguments give the same tenant id and the same `store.truth()`."""
    spec = SIZES[size]
    p = countries.profile(country)
    # Default: the sandbox's current business day, so an organisation added after `advance` is up to date.
    anchor = day_start(anchor_ms if anchor_ms is not None else store.now_ms())
    rng = random.Random(f"org:{seed}:{p.code}:{size}")
    tenant_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if multi_currency is None:
        multi_currency = rng.random() < 0.5
    org_name = name or f"{rng.choice(_ORG_NAMES[p.code])} {p.legal_suffix}"
    builder = OrgBuilder(store, tenant_id, p, rng, base_currency=p.base_currency, fresh=True)
    # Bulk generation skips fsync on commit (about 12% faster for a large organisation). WAL keeps the file
    # consistent if this process dies; only an OS crash mid-generation could lose it, and the organisation
    # is then simply generated again. The connection's own setting is restored afterwards.
    synchronous = int(store.scalar("PRAGMA synchronous"))
    store.db.execute("PRAGMA synchronous=OFF")
    try:
        _History(builder, spec, anchor, multi_currency).play()
        with store.transaction():
            _insert_org(store, builder, org_name, size, seed, anchor - (spec.history_days + 30) * DAY_MS)
            ensure_demo_user(store)
            store.db.execute(
                "INSERT OR IGNORE INTO user_orgs(user_id, tenant_id) VALUES (?,?)", (DEMO_USER_ID, tenant_id)
            )
            builder.flush()
            _save_state(store, builder, multi_currency)
            _advance_clock_marker(store, anchor)
    finally:
        store.db.execute(f"PRAGMA synchronous={synchronous}")
    return tenant_id


def _advance_clock_marker(store: SandboxStore, anchor: int) -> None:
    """History is complete up to `anchor`: the business clock starts there and `advance` plays from it."""
    played = store.get_config("clock_played_until_ms")
    if played is None or int(played) < anchor:
        store.set_config("clock_played_until_ms", anchor)
        store.set_clock(anchor)


def seed_sandbox(store: SandboxStore, *, seed: int, orgs: int, size: str, anchor_ms: int | None = None) -> list[str]:
    """Generate `orgs` organisations (countries cycle AU, NZ, GB, US, CA; every other one multi-currency)
    and the demo user who can access all of them. Returns their tenant ids.

    `anchor_ms` is the business "now" at the end of the generated history (default: the sandbox's current
    business day, which is today's 00:00 UTC on a new sandbox). The business clock is set to it unless the
    sandbox is already later (organisations added after `advance` never move the clock back).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    anchor = day_start(anchor_ms if anchor_ms is not None else store.now_ms())
    tenant_ids = []
    for index in range(orgs):
        country = countries.COUNTRIES[index % len(countries.COUNTRIES)]
        tenant_ids.append(
            create_org(
                store,
                seed=seed * 1000 + index,
                size=size,
                country=country,
                anchor_ms=anchor,
                multi_currency=index % 2 == 0,
            )
        )
    with store.transaction():
        _advance_clock_marker(store, anchor)
        if store.get_config("seed") is None:
            store.set_config("seed", seed)
    return tenant_ids


class _History:
    """Plays an organisation's past as a time-ordered queue of business events ending at the anchor."""

    def __init__(self, builder: OrgBuilder, spec: SizeSpec, anchor: int, multi_currency: bool) -> None:
        self.b = builder
        self.spec = spec
        self.anchor = anchor
        self.start = anchor - spec.history_days * DAY_MS
        self.multi_currency = multi_currency
        self.pay_runs: dict[int, list[dict[str, Any]]] = {}
        self.open_prepayments: list[dict[str, Any]] = []
        self.open_overpayments: list[dict[str, Any]] = []
        self.repeating: list[dict[str, Any]] = []
        self.template_contacts: dict[str, dict[str, Any]] = {}
        self._base_customers: list[dict[str, Any]] | None = None

    def at(self, day: int, lo_hour: float = 8.0, hi_hour: float = 18.0) -> int:
        return day + int(self.b.rng.uniform(lo_hour, hi_hour) * HOUR_MS)

    def play(self) -> None:
        b = self.b
        setup = self.start - 20 * DAY_MS
        _skeleton(b, setup, multi_currency=self.multi_currency, demo_user=True)
        for first, last, role in (
            ("Sam", "Taylor", "STANDARD"),
            ("Priya", "Shah", "READONLY"),
            ("Alex", "Ng", "STANDARD"),
        ):
            user = {
                "UserID": b.uid(),
                "EmailAddress": f"{first.lower()}@example.com",
                "FirstName": first,
                "LastName": last,
                "UpdatedDateUTC": ms_date(setup + HOUR_MS),
                "IsSubscriber": False,
                "OrganisationRole": role,
            }
            b.put("Users", user)
            b.user_names.append(f"{first} {last}")
        second_theme: dict[str, Any] = {
            "BrandingThemeID": b.uid(),
            "Name": "Special Projects",
            "Type": "INVOICE",
            "SortOrder": 1,
            "CreatedDateUTC": ms_date(setup + 2 * HOUR_MS),
            "LogoUrl": "https://example.com/logo.png",
        }
        b.put("BrandingThemes", second_theme)
        b.themes.append(second_theme["BrandingThemeID"])
        self._tracking()
        self._contacts(setup)
        for _ in range(self.spec.items):
            b.create_item(setup + 5 * HOUR_MS)
        # An account the organisation stopped using; still in the chart, ARCHIVED, as Xero keeps it.
        archived = b.accounts["494"]
        archived["Status"] = "ARCHIVED"
        archived["UpdatedDateUTC"] = ms_date(setup + 6 * HOUR_MS)
        b.put("Accounts", archived)
        self._opening(self.start)
        self._repeating_templates(self.start)
        flush_every = max(7, int(20_000 / max(1.0, self.spec.invoices_per_day * 3)))
        for index, day in enumerate(range(self.start, self.anchor, DAY_MS)):
            self._day(day)
            b.run_events(day + DAY_MS)
            if index % flush_every == flush_every - 1:
                b.flush(untouched_since_ms=day - 45 * DAY_MS)
        b.events.clear()  # anything planned on or after the anchor has not happened yet
        self._budgets()

    # setup --------------------------------------------------------------------------------
    def _tracking(self) -> None:
        b = self.b
        for name, options, archived in (
            ("Region", ("North", "South", "East", "West", "Central"), "Central"),
            ("Department", ("Sales", "Operations", "Admin"), None),
        ):
            category_id = b.uid()
            category = {
                "TrackingCategoryID": category_id,
                "Name": name,
                "Status": "ACTIVE",
                "Options": [
                    {
                        "TrackingOptionID": b.uid(),
                        "Name": option,
                        "Status": "ARCHIVED" if option == archived else "ACTIVE",
                        "HasValidationErrors": False,
                        "IsDeleted": False,
                        "IsArchived": option == archived,
                        "IsActive": option != archived,
                    }
                    for option in options
                ],
            }
            b.put("TrackingCategories", category)
            b.tracking.append(category)
        old = {
            "TrackingCategoryID": b.uid(),
            "Name": "Project (old)",
            "Status": "ARCHIVED",
            "Options": [
                {
                    "TrackingOptionID": b.uid(),
                    "Name": "Fit-out 2023",
                    "Status": "ARCHIVED",
                    "HasValidationErrors": False,
                    "IsDeleted": False,
                    "IsArchived": True,
                    "IsActive": False,
                }
            ],
        }
        b.put("TrackingCategories", old)

    def _contacts(self, at_ms: int) -> None:
        b = self.b
        rng = b.rng
        foreign = list(b.currencies)
        groups: list[dict[str, Any]] = []
        for name in ("Preferred suppliers", "Retail customers", "Wholesale", "VIP – Gold"):
            groups.append({"ContactGroupID": b.uid(), "Name": name, "Status": "ACTIVE", "Contacts": []})
        groups.append({"ContactGroupID": b.uid(), "Name": "Old mailing list", "Status": "DELETED", "Contacts": []})
        for index in range(self.spec.contacts):
            r = rng.random()
            customer, supplier = (True, False) if r < 0.6 else ((False, True) if r < 0.92 else (True, True))
            currency = rng.choice(foreign) if foreign and rng.random() < 0.15 else None
            created = at_ms + index * 1000
            contact = b.create_contact(created, customer=customer, supplier=supplier, currency=currency)
            if rng.random() < 0.3:
                group = rng.choice(groups[:4])
                group["Contacts"].append({"ContactID": contact["ContactID"], "Name": contact["Name"]})
                contact["ContactGroups"].append(
                    {
                        "ContactGroupID": group["ContactGroupID"],
                        "Name": group["Name"],
                        "Status": "ACTIVE",
                        "HasValidationErrors": False,
                    }
                )
            if rng.random() < 0.03:
                b.attach("Contacts", contact, created, contact["Name"])
        for group in groups:
            b.put("ContactGroups", group)
        # A few contacts archived during the year (ARCHIVED is a status; Xero never hard-deletes contacts).
        for contact in rng.sample(b.customers, max(1, len(b.customers) // 40)):
            contact["ContactStatus"] = "ARCHIVED"
            contact["UpdatedDateUTC"] = ms_date(self.start + rng.randrange(30, self.spec.history_days) * DAY_MS)
            b.put("Contacts", contact)
        b.customers = [c for c in b.customers if c["ContactStatus"] == "ACTIVE"]
        b.suppliers = [c for c in b.suppliers if c["ContactStatus"] == "ACTIVE"] or b.suppliers

    def _opening(self, day: int) -> None:
        """Money in at the start: owner's funds and a loan, so the bank carries a realistic balance."""
        b = self.b
        scale = max(1.0, self.spec.invoices_per_day)
        owner = b.rng.choice(b.customers)
        for code, amount, reference in (
            (countries.OWNER_FUNDS_CODE, round(25_000 * scale, 2), "Owner capital"),
            (countries.LOAN_CODE, round(40_000 * scale, 2), "Business loan drawdown"),
        ):
            lines = [self._plain_line(code, amount, "Funds introduced", b.profile.none_tax)]
            b.create_bank_transaction(
                "RECEIVE",
                self.at(day),
                contact=owner,
                lines=lines,
                bank_code="090",
                line_amount_types="NoTax",
                reference=reference,
            )

    def _plain_line(
        self, code: str, amount: float, description: str, tax_type: str, tax: float = 0.0
    ) -> dict[str, Any]:
        b = self.b
        return {
            "LineItemID": b.uid(),
            "Description": description,
            "Quantity": 1.0,
            "UnitAmount": amount,
            "AccountCode": code,
            "AccountID": b.accounts[code]["AccountID"],
            "TaxType": tax_type,
            "TaxAmount": tax,
            "LineAmount": amount,
            "Tracking": [],
        }

    def _repeating_templates(self, day: int) -> None:
        b = self.b
        rng = b.rng
        count = max(2, len(b.customers) // 25)
        for index in range(count):
            kind = "ACCREC" if index % 4 else "ACCPAY"
            contact = rng.choice(b.customers if kind == "ACCREC" else b.suppliers)
            lat = "Exclusive"
            items = b.line_items("sales" if kind == "ACCREC" else "purchases", lat, count=1, unit_dp=2)
            sub, tax, total = b.totals(items, lat)
            start = day + rng.randrange(0, 28) * DAY_MS
            status = "AUTHORISED" if index % 7 else "DRAFT"
            template_id = b.uid()
            template: dict[str, Any] = {
                "RepeatingInvoiceID": template_id,
                "ID": template_id,
                "Type": kind,
                "Contact": b.contact_ref(contact),
                "Schedule": {
                    "Period": 1,
                    "Unit": "MONTHLY",
                    "DueDate": 20,
                    "DueDateType": "OFFOLLOWINGMONTH",
                    "StartDate": ms_date(start),
                    "NextScheduledDate": ms_date(start),
                },
                "LineItems": items,
                "LineAmountTypes": lat,
                "Reference": "Monthly retainer" if kind == "ACCREC" else "Monthly subscription",
                "Status": status,
                "SubTotal": sub,
                "TotalTax": tax,
                "Total": total,
                "CurrencyCode": b.document_currency(contact, start)[0],
                "HasAttachments": False,
                "ApprovedForSending": kind == "ACCREC" and status == "AUTHORISED",
                "SendCopy": False,
                "MarkAsSent": False,
                "IncludePDF": True,
            }
            if kind == "ACCREC" and b.themes:
                template["BrandingThemeID"] = b.themes[0]
            if index % 9 == 5:
                end = start + 150 * DAY_MS
                template["Schedule"]["EndDate"] = ms_date(end)
            b.put("RepeatingInvoices", template)
            self.repeating.append(template)
            self.template_contacts[template_id] = contact
            if status == "AUTHORISED":
                b.schedule(start + 7 * HOUR_MS, partial(self._repeat, template))

    def _repeat(self, template: dict[str, Any]) -> None:
        """Xero raises the invoice from a repeating template on its scheduled date, then moves the date on."""
        b = self.b
        schedule = template["Schedule"]
        when = _ms(schedule["NextScheduledDate"])
        if "EndDate" in schedule and when > _ms(schedule["EndDate"]):
            return
        contact = self.template_contacts.get(template["RepeatingInvoiceID"])
        if contact is None:
            return
        lines = [dict(li, LineItemID=b.uid()) for li in template["LineItems"]]
        invoice = b.create_invoice(
            template["Type"],
            when + 7 * HOUR_MS,
            contact=contact,
            lines=lines,
            line_amount_types=template["LineAmountTypes"],
            repeating_invoice_id=template["RepeatingInvoiceID"],
        )
        self._plan_settlement(invoice, when + 7 * HOUR_MS)
        following = datetime.fromtimestamp(when / 1000, UTC)
        month = following.month % 12 + 1
        year = following.year + (1 if month == 1 else 0)
        next_ms = int(datetime(year, month, min(following.day, 28), tzinfo=UTC).timestamp() * 1000)
        schedule["NextScheduledDate"] = ms_date(next_ms)
        b.put("RepeatingInvoices", template)
        b.schedule(next_ms + 7 * HOUR_MS, partial(self._repeat, template))

    # days ----------------------------------------------------------------------------------
    def _count(self, rate: float) -> int:
        whole = int(rate)
        return whole + (1 if self.b.rng.random() < rate - whole else 0)

    def _day(self, day: int) -> None:
        """Queue one day's business: new documents at random office-hours times, and the routines."""
        b = self.b
        rng = b.rng
        weekday = (day // DAY_MS + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
        busy = 1.0 if weekday < 5 else 0.15
        recent = self.anchor - day
        per_day = self.spec.invoices_per_day * busy
        for _ in range(self._count(per_day * 0.62)):
            b.schedule(at := self.at(day), partial(self._invoice, "ACCREC", at, recent))
        for _ in range(self._count(per_day * 0.38)):
            b.schedule(at := self.at(day), partial(self._invoice, "ACCPAY", at, recent))
        for _ in range(self._count(per_day * 0.16)):
            b.schedule(at := self.at(day), partial(self._spend_or_receive, at))
        po_statuses = ("DRAFT", "SUBMITTED", "AUTHORISED") + (
            ("BILLED", "BILLED", "DELETED") if recent > 30 * DAY_MS else ()
        )
        for _ in range(self._count(per_day * 0.04)):
            b.schedule(at := self.at(day), partial(b.create_purchase_order, at, rng.choice(po_statuses)))
        for _ in range(self._count(per_day * 0.05)):
            b.schedule(at := self.at(day), partial(self._quote, at, recent))
        for _ in range(self._count(per_day * 0.01)):
            b.schedule(at := self.at(day), partial(self._prepayment, at))
        for _ in range(self._count(per_day * 0.006)):
            b.schedule(at := self.at(day), partial(self._overpayment, at))
        if weekday == 3:  # Thursday supplier pay run
            b.schedule(day + 15 * HOUR_MS, partial(self._pay_run, day))
        if weekday == 4 and (day // DAY_MS) % 14 < 7:  # fortnightly wages on Friday
            b.schedule(day + 10 * HOUR_MS, partial(self._wages, day))
        dt = datetime.fromtimestamp(day / 1000, UTC)
        if dt.day == 1:
            b.schedule(day + 9 * HOUR_MS, partial(self._month_start, day))
        if dt.day == 28:
            b.schedule(day + 16 * HOUR_MS, partial(self._month_end, day))
        if weekday < 5 and rng.random() < 0.08:
            amount = round(rng.uniform(500, 5000) * max(1, self.spec.invoices_per_day / 4), 2)
            b.schedule(at := self.at(day), partial(b.create_transfer, at, amount, "090", "091"))

    def _invoice(self, kind: str, at: int, recent: int) -> None:
        b = self.b
        rng = b.rng
        r = rng.random()
        status = ("DRAFT" if r < 0.06 else "SUBMITTED") if recent < 45 * DAY_MS and r < 0.08 else "AUTHORISED"
        if r > 0.985:  # a draft that was thrown away: DELETED, no journal
            invoice = b.create_invoice(kind, at, status="DRAFT")
            when = at + rng.randrange(1, 10) * DAY_MS
            b.schedule(when, partial(b.delete_draft, invoice, when))
            return
        invoice = b.create_invoice(kind, at, status=status)
        if rng.random() < (0.05 if kind == "ACCREC" else 0.03):
            b.attach("Invoices", invoice, at + 60_000, invoice["InvoiceNumber"] or invoice["Contact"]["Name"])
        if status != "AUTHORISED":
            if status == "DRAFT" and rng.random() < 0.2:
                b.schedule(at + DAY_MS, partial(b.edit_draft, invoice, at + DAY_MS + HOUR_MS))
            return
        if r > 0.97:  # voided a few days later, before any payment
            when = at + rng.randrange(1, 20) * DAY_MS
            b.schedule(when, partial(b.void, invoice, when))
            return
        if kind == "ACCPAY" and rng.random() < 0.05:
            self._billable_expense(invoice, at)
        self._plan_settlement(invoice, at)

    def _plan_settlement(self, invoice: dict[str, Any], at: int) -> None:
        b = self.b
        rng = b.rng
        kind = invoice["Type"]
        date = _ms(invoice["Date"])
        due = _ms(invoice["DueDate"])
        r = rng.random()
        if r < 0.03:  # a credit note for part or all of it, allocated, the rest paid
            share = rng.choice((0.1, 0.25, 0.5, 1.0))
            credit_kind = "ACCRECCREDIT" if kind == "ACCREC" else "ACCPAYCREDIT"
            credit_at = at + rng.randrange(2, 20) * DAY_MS
            b.schedule(credit_at, partial(self._credit, invoice, credit_kind, share, credit_at))
        # A customer's open prepayment or overpayment goes against their next invoice. Xero allocates a credit only
        # to a document of the same contact ("The contact on the prepayment must match the contact on the
        # invoice", https://developer.xero.com/documentation/api/accounting/prepayments#allocating-prepayments).
        if kind == "ACCREC":
            prepayment = self._open_credit(self.open_prepayments, invoice)
            if prepayment is not None and b.allocate_credit(prepayment, invoice, at + HOUR_MS):
                self.open_prepayments.remove(prepayment)
                if invoice["Status"] == "PAID":
                    return
            overpayment = self._open_credit(self.open_overpayments, invoice)
            if overpayment is not None and b.allocate_credit(overpayment, invoice, at + HOUR_MS):
                if overpayment["Status"] != "AUTHORISED":
                    self.open_overpayments.remove(overpayment)
                if invoice["Status"] == "PAID":
                    return
        # Most get paid: customers around the due date, suppliers on the Thursday pay run before it is due.
        if rng.random() < 0.06:
            return  # never paid (bad debt, dispute)
        if kind == "ACCREC":
            delay = max(1, int(rng.gauss((due - date) / DAY_MS, 8)))
            when = date + delay * DAY_MS + int(rng.uniform(9, 17) * HOUR_MS)
            if rng.random() < 0.08:  # paid in two parts
                part = max(1, b.due_cents(invoice) // 2)
                b.schedule(when - 7 * DAY_MS, partial(b.pay, invoice, part, when - 7 * DAY_MS))
            b.schedule(when, partial(self._pay_rest, invoice, when))
        else:
            pay_day = due - 3 * DAY_MS
            pay_day -= ((pay_day // DAY_MS + 3) % 7 - 3) % 7 * DAY_MS  # back to the Thursday on or before
            pay_day = max(pay_day, date + DAY_MS)
            while (pay_day // DAY_MS + 3) % 7 != 3:
                pay_day += DAY_MS
            if invoice["CurrencyCode"] != b.base or rng.random() < 0.3:
                when = pay_day + int(rng.uniform(9, 17) * HOUR_MS)
                b.schedule(when, partial(self._pay_rest, invoice, when))
            else:
                self.pay_runs.setdefault(day_start(pay_day), []).append(invoice)

    def _pay_rest(self, invoice: dict[str, Any], at: int) -> None:
        self.b.pay(invoice, self.b.due_cents(invoice), at)

    def _credit(self, invoice: dict[str, Any], credit_kind: str, share: float, at: int) -> None:
        """A credit note against `invoice` for `share` of it, allocated to it; if the invoice was settled in
        the meantime, half the time the credit is refunded two days later and otherwise left open."""
        b = self.b
        contact = {"ContactID": invoice["Contact"]["ContactID"], "Name": invoice["Contact"]["Name"]}
        credit = b.create_credit_note(
            credit_kind,
            contact,
            at,
            total_hint=round(invoice["Total"] * share, 2),
            currency=(invoice["CurrencyCode"], invoice["CurrencyRate"]),
        )
        if not b.allocate_credit_note(credit, invoice, at + 60_000) and b.rng.random() < 0.5:
            b.schedule(at + 2 * DAY_MS, partial(b.refund_credit_note, credit, at + 2 * DAY_MS))

    def _pay_run(self, day: int) -> None:
        bills = self.pay_runs.pop(day, [])
        if bills:
            batch = self.b.batch_pay(bills, day + 15 * HOUR_MS)
            if batch and self.b.rng.random() < 0.05:
                self.b.history(
                    "BatchPayments",
                    batch["BatchPaymentID"],
                    day + 15 * HOUR_MS + 60_000,
                    "Note",
                    "Remittance emailed to suppliers.",
                )

    def _billable_expense(self, bill: dict[str, Any], at: int) -> None:
        """A bill line marked billable to a customer (LinkedTransactions type BILLABLEEXPENSE); about half
        are later billed on a sales invoice, the rest stay APPROVED (not yet billed)."""
        b = self.b
        rng = b.rng
        customer = rng.choice(b.customers)
        line = bill["LineItems"][0]
        link: dict[str, Any] = {
            "LinkedTransactionID": b.uid(),
            "SourceTransactionID": bill["InvoiceID"],
            "SourceLineItemID": line["LineItemID"],
            "ContactID": customer["ContactID"],
            "Status": "APPROVED",
            "Type": "BILLABLEEXPENSE",
            "UpdatedDateUTC": ms_date(at),
            "SourceTransactionTypeCode": "ACCPAY",
        }
        b.put("LinkedTransactions", link)
        if rng.random() < 0.5:
            when = at + rng.randrange(3, 30) * DAY_MS

            def bill_it() -> None:
                items = b.line_items("sales", "Exclusive", count=1)
                items[0].update(
                    Description=f"Recharge: {line['Description']}",
                    Quantity=1.0,
                    UnitAmount=line["LineAmount"],
                    LineAmount=line["LineAmount"],
                )
                items[0].pop("DiscountRate", None)
                items[0]["TaxAmount"] = round(line["LineAmount"] * b.profile.rate_of(items[0]["TaxType"]) / 100, 2)
                invoice = b.create_invoice("ACCREC", when, contact=customer, lines=items, line_amount_types="Exclusive")
                link.update(
                    TargetTransactionID=invoice["InvoiceID"],
                    TargetLineItemID=items[0]["LineItemID"],
                    Status="BILLED",
                    UpdatedDateUTC=ms_date(when),
                )
                b.put("LinkedTransactions", link)
                self._plan_settlement(invoice, when)

            b.schedule(when, bill_it)

    def _spend_or_receive(self, at: int) -> None:
        b = self.b
        rng = b.rng
        kind = "SPEND" if rng.random() < 0.75 else "RECEIVE"
        bank_code = None
        if "093" in b.accounts and rng.random() < 0.1:
            bank_code = "093"
        doc = b.create_bank_transaction(kind, at, bank_code=bank_code)
        if rng.random() < 0.04:
            b.attach("BankTransactions", doc, _ms(doc["UpdatedDateUTC"]) + 60_000, doc["Reference"] or "receipt")
        if rng.random() < 0.01:  # entered twice by mistake and deleted: Status DELETED plus a reversal
            when = at + DAY_MS
            b.schedule(when, partial(self._delete_bank_transaction, doc, when))

    def _delete_bank_transaction(self, doc: dict[str, Any], at: int) -> None:
        b = self.b
        doc["Status"] = "DELETED"
        doc["UpdatedDateUTC"] = ms_date(at)
        b.put("BankTransactions", doc, date_ms=_ms(doc["Date"]))
        b.ledger.reverse(
            doc["BankTransactionID"],
            source_type="CASHPAID" if doc["Type"].startswith("SPEND") else "CASHREC",
            date_ms=day_start(at),
            created_ms=at,
        )
        b.history("BankTransactions", doc["BankTransactionID"], at, "Deleted", "Deleted.")

    def base_customers(self) -> list[dict[str, Any]]:
        """Customers who trade in the base currency (prepayments and overpayments are modelled in it only)."""
        if self._base_customers is None:
            self._base_customers = [c for c in self.b.customers if "DefaultCurrency" not in c] or self.b.customers
        return self._base_customers

    @staticmethod
    def _open_credit(credits: list[dict[str, Any]], invoice: dict[str, Any]) -> dict[str, Any] | None:
        contact_id = invoice["Contact"]["ContactID"]
        return next((c for c in reversed(credits) if c["Contact"]["ContactID"] == contact_id), None)

    def _invoice_against_credit(self, customer: dict[str, Any], at: int) -> None:
        """The customer who paid a deposit or overpaid is invoiced again; the credit is allocated to it."""
        invoice = self.b.create_invoice("ACCREC", at, contact=customer)
        self._plan_settlement(invoice, at)

    def _prepayment(self, at: int) -> None:
        b = self.b
        customer = b.rng.choice(self.base_customers())
        lines = b.line_items("sales", "Exclusive", count=1)
        lines[0]["Description"] = "Deposit: " + lines[0]["Description"]
        doc = b.create_bank_transaction(
            "RECEIVE-PREPAYMENT",
            at,
            contact=customer,
            lines=lines,
            bank_code="090",
            line_amount_types="Exclusive",
            reference="Deposit",
        )
        prepayment = b.pending[("Prepayments", doc["PrepaymentID"])][0]
        self.open_prepayments.append(prepayment)
        when = self.at(day_start(at) + b.rng.randrange(3, 30) * DAY_MS)
        b.schedule(when, partial(self._invoice_against_credit, customer, when))

    def _overpayment(self, at: int) -> None:
        b = self.b
        customer = b.rng.choice(self.base_customers())
        amount = round(b.rng.uniform(20, 400), 2)
        lines = [self._plain_line("610", amount, "Overpayment", b.profile.none_tax)]
        doc = b.create_bank_transaction(
            "RECEIVE-OVERPAYMENT",
            at,
            contact=customer,
            lines=lines,
            bank_code="090",
            line_amount_types="NoTax",
            reference="Overpaid",
        )
        self.open_overpayments.append(b.pending[("Overpayments", doc["OverpaymentID"])][0])
        when = self.at(day_start(at) + b.rng.randrange(5, 60) * DAY_MS)
        b.schedule(when, partial(self._invoice_against_credit, customer, when))

    def _quote(self, at: int, recent: int) -> None:
        b = self.b
        rng = b.rng
        if recent < 30 * DAY_MS:
            status = rng.choice(("DRAFT", "SENT", "SENT"))
        else:
            status = rng.choice(("SENT", "DECLINED", "ACCEPTED", "INVOICED", "INVOICED", "DELETED"))
        b.create_quote(at, status)

    def _wages(self, day: int) -> None:
        b = self.b
        amount = round(b.rng.uniform(3000, 4500) * max(1.0, self.spec.invoices_per_day / 3), 2)
        lines = [self._plain_line(countries.WAGES_CODE, amount, "Fortnightly wages", b.profile.none_tax)]
        supplier = b.suppliers[0]
        b.create_bank_transaction(
            "SPEND",
            day + 10 * HOUR_MS,
            contact=supplier,
            lines=lines,
            bank_code="090",
            line_amount_types="NoTax",
            reference="Wages",
        )

    def _month_start(self, day: int) -> None:
        b = self.b
        fees = [
            self._plain_line(
                countries.BANK_FEES_CODE,
                round(b.rng.uniform(10, 60), 2),
                "Account keeping fee",
                b.profile.exempt_purchases_tax,
            )
        ]
        bank_contact = b.suppliers[-1]
        b.create_bank_transaction(
            "SPEND",
            day + 9 * HOUR_MS,
            contact=bank_contact,
            lines=fees,
            bank_code="090",
            line_amount_types="NoTax",
            reference="Fees",
        )
        interest = [
            self._plain_line(
                countries.INTEREST_INCOME_CODE, round(b.rng.uniform(5, 90), 2), "Interest", b.profile.exempt_sales_tax
            )
        ]
        b.create_bank_transaction(
            "RECEIVE",
            day + 9 * HOUR_MS + 60_000,
            contact=bank_contact,
            lines=interest,
            bank_code="091",
            line_amount_types="NoTax",
            reference="Interest",
        )

    def _month_end(self, day: int) -> None:
        b = self.b
        rng = b.rng
        amount = round(rng.uniform(200, 900), 2)
        narration = f"Depreciation for {datetime.fromtimestamp(day / 1000, UTC):%B %Y}"
        status = "POSTED" if self.anchor - day > 20 * DAY_MS or rng.random() < 0.5 else "DRAFT"
        mj = b.create_manual_journal(
            day + 16 * HOUR_MS,
            narration,
            [
                (countries.DEPRECIATION_CODE, amount, "Depreciation"),
                (countries.ACCUMULATED_DEPRECIATION_CODE, -amount, "Depreciation"),
            ],
            status=status,
        )
        if rng.random() < 0.1:
            b.attach("ManualJournals", mj, day + 16 * HOUR_MS + 60_000, narration)
        if rng.random() < 0.3:
            accrual = round(rng.uniform(100, 2000), 2)
            mj2 = b.create_manual_journal(
                day + 16 * HOUR_MS + 120_000,
                "Reclassify office costs; see note #3 (rounding)",
                [("453", accrual, "Reclass"), ("429", -accrual, "Reclass")],
            )
            if rng.random() < 0.3:  # posted in error and voided the next week
                when = day + 7 * DAY_MS + 10 * HOUR_MS
                b.schedule(when, partial(b.void_manual_journal, mj2, when))

    def _budgets(self) -> None:
        b = self.b
        rng = b.rng
        _fy_day, fy_month = b.profile.financial_year_end
        end = datetime.fromtimestamp(self.anchor / 1000, UTC)
        first_year = end.year if end.month > fy_month else end.year - 1
        start_month = fy_month % 12 + 1
        start_year = first_year if start_month > 1 else first_year + 1
        periods = []
        for i in range(12):
            month = (start_month - 1 + i) % 12 + 1
            year = start_year + (start_month - 1 + i) // 12
            periods.append(int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000))
        codes = ["200", "260", "400", "429", "453", "469", "477"]
        for budget_type, description in (("OVERALL", "Overall Budget"), ("TRACKING", "Regional targets")):
            budget = {
                "BudgetID": b.uid(),
                "Type": budget_type,
                "Description": description,
                "UpdatedDateUTC": ms_date(self.anchor - rng.randrange(20, 60) * DAY_MS),
                "BudgetLines": [
                    {
                        "AccountID": b.accounts[code]["AccountID"],
                        "AccountCode": code,
                        "BudgetBalances": [
                            {"Period": ms_date(p), "Amount": round(rng.uniform(500, 20000), 0)} for p in periods
                        ],
                    }
                    for code in codes
                ],
                "Tracking": [],
            }
            if budget_type == "TRACKING":
                category = b.tracking[0]
                option = category["Options"][0]
                budget["Tracking"] = [
                    {
                        "TrackingCategoryID": category["TrackingCategoryID"],
                        "Name": category["Name"],
                        "Option": option["Name"],
                        "TrackingOptionID": option["TrackingOptionID"],
                    }
                ]
            b.put("Budgets", budget)

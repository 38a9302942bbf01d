"""Time passing in the sandbox: `advance(days)` plays realistic business days on every organisation.

This module owns the daily churn: about 0.5-2% of an organisation's records change per day through the same
`generate.OrgBuilder` operations the generator uses (new invoices and bills, payments and batch payments,
approvals, edits, voids and deletions, credit notes, bank transactions, quotes and purchase orders, new and
edited and archived contacts, new attachments) and the HARD deletions Xero performs without a tombstone:
Items, tracking options and attachments (https://developer.xero.com/documentation/api/accounting/items#delete,
.../trackingcategories#delete-trackingoptions, .../attachments). It also owns the business clock's
movement: days are played from the next day boundary and the clock is left at the end of the last one.

UpdatedDateUTC moves as Xero documents it (https://developer.xero.com/documentation/api/accounting/requests-and-responses):
on every edit that changes a document or posts a journal, but NOT when only the due date of a partly paid
invoice changes, nor for attachments; a backup relying only on `If-Modified-Since` must miss those, which is
what the sandbox is for. It must not generate an organisation from scratch or serve HTTP.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from sandbox import countries, damage
from sandbox.generate import HOUR_MS, OrgBuilder, day_start, iso_date, ms_date
from sandbox.ledger import DAY_MS, Ledger
from sandbox.store import SandboxStore

ACTIONS: tuple[tuple[str, int], ...] = (
    ("new_invoice", 18),
    ("new_bill", 11),
    ("pay_invoice", 16),
    ("pay_bill", 8),
    ("batch_pay", 2),
    ("approve_draft", 4),
    ("edit_draft", 3),
    ("delete_draft", 3),
    ("void_invoice", 2),
    ("edit_reference", 3),
    ("move_due_date", 1),
    ("delete_payment", 1),
    ("credit_note", 1),
    ("bank_transaction", 8),
    ("new_contact", 2),
    ("edit_contact", 3),
    ("archive_contact", 1),
    ("attach", 3),
    ("delete_attachment", 1),
    ("new_item", 1),
    ("edit_item", 1),
    ("delete_item", 1),
    ("tracking_option", 1),
    ("new_quote", 2),
    ("quote_status", 2),
    ("new_purchase_order", 2),
    ("manual_journal", 1),
)


def load_builder(store: SandboxStore, tenant_id: str, rng: random.Random) -> OrgBuilder:
    """An `OrgBuilder` for an existing organisation, with its reference data loaded from the store."""
    row = next(iter(store.query("SELECT country, base_currency FROM orgs WHERE tenant_id=?", (tenant_id,))), None)
    if row is None:
        raise LookupError(f"no organisation {tenant_id}")
    country, base_currency = row
    accounts = list(store.iter_records(tenant_id, "Accounts"))
    builder = OrgBuilder(
        store, tenant_id, countries.profile(country), rng, base_currency=base_currency, buffered=True, accounts=accounts
    )
    state = store.get_config(f"org_state:{tenant_id}", {}) or {}
    builder.counters = dict(state.get("counters", {}))
    builder.currencies = {k: float(v) for k, v in state.get("currencies", {}).items()}
    for contact in store.iter_records(tenant_id, "Contacts"):
        if contact.get("ContactStatus") != "ACTIVE":
            continue
        if contact.get("IsCustomer"):
            builder.customers.append(contact)
        if contact.get("IsSupplier"):
            builder.suppliers.append(contact)
    builder.items = list(store.iter_records(tenant_id, "Items"))
    builder.tracking = list(store.iter_records(tenant_id, "TrackingCategories"))
    themes = sorted(store.iter_records(tenant_id, "BrandingThemes"), key=lambda t: t.get("SortOrder", 0))
    builder.themes = [t["BrandingThemeID"] for t in themes]
    builder.user_names = [f"{u['FirstName']} {u['LastName']}" for u in store.iter_records(tenant_id, "Users")]
    return builder


class _Day:
    """One business day of one organisation."""

    def __init__(self, builder: OrgBuilder, day: int, summary: Counter[str]) -> None:
        self.b = builder
        self.day = day
        self.summary = summary
        self.hard_deletes: list[tuple[str, str]] = []
        self.attachment_deletes: list[str] = []
        self.used_tracking: str | None = None
        self.candidates: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        store, tenant = builder.store, builder.tenant_id
        self.invoices: dict[str, list[tuple[str, str]]] = {}
        for record_id, status, kind in store.query(
            "SELECT record_id, status, type FROM records WHERE tenant_id=? AND endpoint='Invoices'"
            " AND status IN ('DRAFT','SUBMITTED','AUTHORISED') ORDER BY record_id",
            (tenant,),
        ):
            self.invoices.setdefault(status, []).append((record_id, kind))

    def doc(self, endpoint: str, record_id: str) -> dict[str, Any] | None:
        pending = self.b.pending.get((endpoint, record_id))
        if pending is not None:
            return pending[0]
        return self.b.store.get_record(self.b.tenant_id, endpoint, record_id)

    def pick_invoice(self, statuses: Iterable[str], kind: str | None = None) -> dict[str, Any] | None:
        candidates = [(s, rid) for s in statuses for rid, k in self.invoices.get(s, []) if kind is None or k == kind]
        for _ in range(4):
            if not candidates:
                return None
            status, record_id = self.b.rng.choice(candidates)
            doc = self.doc("Invoices", record_id)
            if doc is not None and doc["Status"] == status:
                return doc
        return None

    def random_record(self, endpoint: str, statuses: tuple[str, ...]) -> dict[str, Any] | None:
        """A random document of `endpoint` whose status is one of `statuses` (as of now, pending included).

        Candidate ids are read once per day and endpoint (ids and statuses only); documents are then fetched
        by key. Sampling with OFFSET or filtering on the document text would read every document per call,
        which a large organisation cannot afford thousands of times a day."""
        key = (endpoint, statuses)
        candidates = self.candidates.get(key)
        if candidates is None:
            marks = ",".join("?" * len(statuses))
            candidates = [
                record_id
                for (record_id,) in self.b.store.query(
                    f"SELECT record_id FROM records WHERE tenant_id=? AND endpoint=? AND status IN ({marks})"
                    " ORDER BY record_id",
                    (self.b.tenant_id, endpoint, *statuses),
                )
            ]
            self.candidates[key] = candidates
        for _ in range(4):
            if not candidates:
                return None
            doc = self.doc(endpoint, self.b.rng.choice(candidates))
            if doc is not None and (doc.get("Status") or doc.get("ContactStatus")) in statuses:
                return doc
        return None

    # actions: each returns the kind of change it made, or None when it found nothing to do ---------
    def new_invoice(self, at: int) -> str | None:
        if not self.b.customers:
            return None
        status = "DRAFT" if self.b.rng.random() < 0.15 else "AUTHORISED"
        doc = self.b.create_invoice("ACCREC", at, status=status)
        self.invoices.setdefault(status, []).append((doc["InvoiceID"], "ACCREC"))
        return "created"

    def new_bill(self, at: int) -> str | None:
        if not self.b.suppliers:
            return None
        status = "DRAFT" if self.b.rng.random() < 0.1 else "AUTHORISED"
        doc = self.b.create_invoice("ACCPAY", at, status=status)
        self.invoices.setdefault(status, []).append((doc["InvoiceID"], "ACCPAY"))
        return "created"

    def _pay(self, at: int, kind: str) -> str | None:
        invoice = self.pick_invoice(("AUTHORISED",), kind)
        if invoice is None:
            return None
        due = self.b.due_cents(invoice)
        amount = due if self.b.rng.random() < 0.85 else max(1, due // 2)
        return "created" if self.b.pay(invoice, amount, at) else None

    def pay_invoice(self, at: int) -> str | None:
        return self._pay(at, "ACCREC")

    def pay_bill(self, at: int) -> str | None:
        return self._pay(at, "ACCPAY")

    def batch_pay(self, at: int) -> str | None:
        bills = [b for _ in range(4) if (b := self.pick_invoice(("AUTHORISED",), "ACCPAY")) is not None]
        unique = list({b["InvoiceID"]: b for b in bills}.values())
        return "created" if unique and (self.b.batch_pay(unique, at) or True) else None

    def approve_draft(self, at: int) -> str | None:
        invoice = self.pick_invoice(("DRAFT", "SUBMITTED"))
        if invoice is None:
            return None
        self.b.approve(invoice, at)
        return "updated"

    def edit_draft(self, at: int) -> str | None:
        invoice = self.pick_invoice(("DRAFT",))
        if invoice is None:
            return None
        self.b.edit_draft(invoice, at)
        return "updated"

    def delete_draft(self, at: int) -> str | None:
        invoice = self.pick_invoice(("DRAFT", "SUBMITTED"))
        if invoice is None:
            return None
        self.b.delete_draft(invoice, at)
        return "deleted"

    def void_invoice(self, at: int) -> str | None:
        invoice = self.pick_invoice(("AUTHORISED",))
        if invoice is None or invoice["Payments"] or invoice["AmountCredited"]:
            return None
        self.b.void(invoice, at)
        return "voided"

    def edit_reference(self, at: int) -> str | None:
        invoice = self.pick_invoice(("AUTHORISED",))
        if invoice is None:
            return None
        invoice["Reference"] = self.b.rng.choice(("Updated per phone call", "PO 4471 (amended)", "See email 12/3"))
        invoice["UpdatedDateUTC"] = ms_date(at)
        self.b.put("Invoices", invoice, date_ms=day_start(_date(invoice["Date"])))
        self.b.history("Invoices", invoice["InvoiceID"], at, "Edited", "Reference changed.")
        return "updated"

    def move_due_date(self, at: int) -> str | None:
        """Xero: changes to partially paid transactions that post no journal, such as DueDate, do not
        change UpdatedDateUTC. The document changes; its UpdatedDateUTC stays."""
        invoice = self.pick_invoice(("AUTHORISED",))
        if invoice is None or not invoice["Payments"]:
            return None
        due = _date(invoice["DueDate"]) + 14 * DAY_MS
        invoice["DueDate"] = ms_date(due)
        invoice["DueDateString"] = iso_date(due)
        self.b.put("Invoices", invoice, date_ms=_date(invoice["Date"]))
        return "updated"

    def delete_payment(self, at: int) -> str | None:
        payment = self.random_record("Payments", ("AUTHORISED",))
        # Payments made in a batch are removed with their batch in Xero, not one by one.
        if payment is None or "Invoice" not in payment or "BatchPaymentID" in payment:
            return None
        invoice = self.doc("Invoices", payment["Invoice"]["InvoiceID"])
        if invoice is None or invoice["Status"] not in ("AUTHORISED", "PAID"):
            return None
        self.b.delete_payment(payment, invoice, at)
        return "deleted"

    def credit_note(self, at: int) -> str | None:
        invoice = self.pick_invoice(("AUTHORISED",), "ACCREC")
        if invoice is None:
            return None
        contact = {"ContactID": invoice["Contact"]["ContactID"], "Name": invoice["Contact"]["Name"]}
        credit = self.b.create_credit_note(
            "ACCRECCREDIT",
            contact,
            at,
            total_hint=round(invoice["AmountDue"] * 0.5, 2) or None,
            currency=(invoice["CurrencyCode"], invoice["CurrencyRate"]),
        )
        self.b.allocate_credit_note(credit, invoice, at + 60_000)
        return "created"

    def bank_transaction(self, at: int) -> str | None:
        if not self.b.suppliers or not self.b.customers:
            return None
        kind = "SPEND" if self.b.rng.random() < 0.7 else "RECEIVE"
        self.b.create_bank_transaction(kind, at)
        return "created"

    def new_contact(self, at: int) -> str | None:
        r = self.b.rng.random()
        self.b.create_contact(at, customer=r < 0.7, supplier=r >= 0.6)
        return "created"

    def edit_contact(self, at: int) -> str | None:
        contact = self.random_record("Contacts", ("ACTIVE",))
        if contact is None or contact["ContactStatus"] != "ACTIVE":
            return None
        number = self.b.rng.randrange(1000, 9999)
        contact["EmailAddress"] = f"accounts+{number}@example.com"
        contact["Phones"][0]["PhoneNumber"] = f"{number} {self.b.rng.randrange(1000, 9999)}"
        contact["UpdatedDateUTC"] = ms_date(at)
        self.b.put("Contacts", contact)
        self.b.history("Contacts", contact["ContactID"], at, "Edited", "Email address and phone changed.")
        return "updated"

    def archive_contact(self, at: int) -> str | None:
        contact = self.random_record("Contacts", ("ACTIVE",))
        if (
            contact is None
            or contact["ContactStatus"] != "ACTIVE"
            or min(len(self.b.customers), len(self.b.suppliers)) < 5
        ):
            return None
        contact["ContactStatus"] = "ARCHIVED"
        contact["UpdatedDateUTC"] = ms_date(at)
        self.b.put("Contacts", contact)
        self.b.customers = [c for c in self.b.customers if c["ContactID"] != contact["ContactID"]]
        self.b.suppliers = [c for c in self.b.suppliers if c["ContactID"] != contact["ContactID"]]
        self.b.history("Contacts", contact["ContactID"], at, "Archived", "Contact archived.")
        return "updated"

    def attach(self, at: int) -> str | None:
        endpoint = self.b.rng.choice(("Invoices", "Invoices", "BankTransactions", "Contacts"))
        doc = self.random_record(endpoint, ("AUTHORISED", "PAID") if endpoint != "Contacts" else ("ACTIVE",))
        if doc is None:
            return None
        self.b.attach(endpoint, doc, at, doc.get("InvoiceNumber") or doc.get("Name") or doc.get("Reference") or "scan")
        return "updated"

    def delete_attachment(self, at: int) -> str | None:
        """Attachments are hard-deleted (no tombstone); the record's HasAttachments follows."""
        store, tenant = self.b.store, self.b.tenant_id
        rows = list(
            store.query(
                "SELECT attachment_id, endpoint, record_id FROM attachments WHERE tenant_id=? ORDER BY attachment_id",
                (tenant,),
            )
        )
        rows = [r for r in rows if r[0] not in self.attachment_deletes]
        if not rows:
            return None
        attachment_id, endpoint, record_id = self.b.rng.choice(rows)
        self.attachment_deletes.append(attachment_id)
        remaining = [r for r in rows if r[1] == endpoint and r[2] == record_id and r[0] != attachment_id]
        pending_same = [a for a in self.b.attachment_rows if a[2] == endpoint and a[3] == record_id]
        if not remaining and not pending_same:
            doc = self.doc(endpoint, record_id)
            if doc is not None:
                doc["HasAttachments"] = False
                self.b.put(endpoint, doc, date_ms=_date(doc["Date"]) if "Date" in doc else None)
        key = (endpoint, record_id)
        if key in self.b.attachment_count:
            self.b.attachment_count[key] -= 1
        return "hard_deleted"

    def new_item(self, at: int) -> str | None:
        self.b.create_item(at)
        return "created"

    def edit_item(self, at: int) -> str | None:
        if not self.b.items:
            return None
        item = self.b.rng.choice(self.b.items)
        item["SalesDetails"]["UnitPrice"] = round(item["SalesDetails"]["UnitPrice"] * 1.05, 4)
        item["UpdatedDateUTC"] = ms_date(at)
        self.b.put("Items", item)
        return "updated"

    def delete_item(self, at: int) -> str | None:
        """Items DELETE removes the item outright; line items that used it keep their ItemCode text."""
        if len(self.b.items) < 3:
            return None
        item = self.b.rng.choice(self.b.items)
        self.b.items = [i for i in self.b.items if i["ItemID"] != item["ItemID"]]
        self.b.pending.pop(("Items", item["ItemID"]), None)
        self.hard_deletes.append(("Items", item["ItemID"]))
        return "hard_deleted"

    def tracking_option(self, at: int) -> str | None:
        """Add a tracking option, or hard-delete one nothing has used (Xero only deletes unused options;
        used ones can only be archived). TrackingCategories have no UpdatedDateUTC at all."""
        categories = [c for c in self.b.tracking if c["Status"] == "ACTIVE"]
        if not categories:
            return None
        category = self.b.rng.choice(categories)
        store, tenant = self.b.store, self.b.tenant_id
        if self.used_tracking is None:
            # One pass over the distinct tracking combinations posted (a few hundred), not one per option.
            self.used_tracking = " ".join(
                t
                for (t,) in store.query(
                    "SELECT DISTINCT tracking FROM journal_lines WHERE tenant_id=? AND tracking IS NOT NULL", (tenant,)
                )
            )
        for option in list(category["Options"]):
            option_id = option["TrackingOptionID"]
            in_use = option_id in self.used_tracking or any(
                option_id in json.dumps(entry[0]) for entry in self.b.pending.values()
            )
            if not in_use and self.b.rng.random() < 0.5:
                category["Options"].remove(option)
                self.b.put("TrackingCategories", category)
                return "hard_deleted"
        name = f"Pop-up {self.b.next_number('OPTION')}"
        category["Options"].append(
            {
                "TrackingOptionID": self.b.uid(),
                "Name": name,
                "Status": "ACTIVE",
                "HasValidationErrors": False,
                "IsDeleted": False,
                "IsArchived": False,
                "IsActive": True,
            }
        )
        self.b.put("TrackingCategories", category)
        return "updated"

    def new_quote(self, at: int) -> str | None:
        if not self.b.customers:
            return None
        self.b.create_quote(at, self.b.rng.choice(("DRAFT", "SENT")))
        return "created"

    def quote_status(self, at: int) -> str | None:
        quote = self.random_record("Quotes", ("DRAFT", "SENT"))
        if quote is None or quote["Status"] not in ("DRAFT", "SENT"):  # changed earlier today
            return None
        quote["Status"] = {"DRAFT": "SENT", "SENT": self.b.rng.choice(("ACCEPTED", "DECLINED", "INVOICED"))}[
            quote["Status"]
        ]
        quote["UpdatedDateUTC"] = ms_date(at)
        self.b.put("Quotes", quote, date_ms=_date(quote["Date"]))
        return "updated"

    def new_purchase_order(self, at: int) -> str | None:
        if not self.b.suppliers:
            return None
        self.b.create_purchase_order(at, self.b.rng.choice(("DRAFT", "AUTHORISED")))
        return "created"

    def manual_journal(self, at: int) -> str | None:
        amount = round(self.b.rng.uniform(50, 900), 2)
        self.b.create_manual_journal(
            at, "Accrual adjustment", [("453", amount, "Accrual"), ("429", -amount, "Accrual")]
        )
        return "created"


def _date(value: str) -> int:
    inner = value[value.index("(") + 1 : value.index(")")]
    cut = max(inner.rfind("+"), inner.rfind("-"))
    return int(inner[:cut] if cut > 0 else inner)


def _play_day(builder: OrgBuilder, day: int, summary: Counter[str]) -> None:
    rng = builder.rng
    store, tenant = builder.store, builder.tenant_id
    total = int(store.scalar("SELECT count(*) FROM records WHERE tenant_id=?", (tenant,)))
    rate = rng.uniform(0.005, 0.02)
    # A payment or allocation touches two records, a new document one or two: aim the action count so the
    # share of changed records lands in 0.5-2%.
    actions = max(1, round(total * rate / 1.4))
    weekday = (day // DAY_MS + 3) % 7
    if weekday >= 5:
        actions = max(1, actions // 5)
    runner = _Day(builder, day, summary)
    names = [name for name, _ in ACTIONS]
    weights = [weight for _, weight in ACTIONS]
    times = sorted(day + int(rng.uniform(8, 18) * HOUR_MS) for _ in range(actions))
    for at, name in zip(times, rng.choices(names, weights, k=actions), strict=True):
        action: Callable[[int], str | None] = getattr(runner, name)

        def play(action: Callable[[int], str | None] = action, at: int = at) -> None:
            kind = action(at)
            if kind:
                summary[kind] += 1

        builder.schedule(at, play)
    builder.run_events(day + DAY_MS)
    with store.transaction():
        builder.flush()
        for endpoint, record_id in runner.hard_deletes:
            store.delete_record(tenant, endpoint, record_id)
        for attachment_id in runner.attachment_deletes:
            store.db.execute("DELETE FROM attachments WHERE attachment_id=?", (attachment_id,))


def next_play_start(store: SandboxStore) -> int:
    """The first day `advance` plays: where the last generation/advance stopped, or the next day boundary."""
    now = store.now_ms()
    played = store.get_config("clock_played_until_ms")
    if played is not None and int(played) >= day_start(now):
        return int(played)
    return -(-now // DAY_MS) * DAY_MS


def advance(
    store: SandboxStore, *, days: int, seed: int | None = None, tenant_ids: Iterable[str] | None = None
) -> dict[str, dict[str, int]]:
    """Play `days` whole business days on every organisation (or `tenant_ids`), from the next day boundary;
    the business clock is left at the end of the last day. Deterministic under `seed` (default: the seed the
    sandbox was generated with). Returns per tenant {created, updated, voided, deleted, hard_deleted}."""
    if days < 0:
        raise ValueError("days must be >= 0")
    seed = int(store.get_config("seed", 0) if seed is None else seed)
    start = next_play_start(store)
    if tenant_ids is None:
        tenant_ids = [t for (t,) in store.query("SELECT tenant_id FROM orgs ORDER BY tenant_id")]
    result: dict[str, dict[str, int]] = {}
    damage_rules = store.get_config(damage.RULES_KEY, {}) or {}
    for tenant_id in tenant_ids:
        summary: Counter[str] = Counter()
        builder: OrgBuilder | None = None
        for index in range(days):
            day = start + index * DAY_MS
            rng = random.Random(f"churn:{seed}:{tenant_id}:{day}")
            if builder is None:
                builder = load_builder(store, tenant_id, rng)
            builder.rng = rng
            _play_day(builder, day, summary)
            if tenant_id in damage_rules:
                # A standing damage rule writes through the API path, which posts journals itself: resync the
                # builder's journal numbering afterwards.
                damage.play_day(store, tenant_id, day)
                builder.ledger = Ledger(
                    store,
                    tenant_id,
                    buffered=True,
                    accounts=list(builder.accounts.values()),
                    tax_names=builder.ledger.tax_names,
                )
        if builder is not None:
            store.set_config(
                f"org_state:{tenant_id}",
                {**(store.get_config(f"org_state:{tenant_id}", {}) or {}), "counters": builder.counters},
            )
        result[tenant_id] = {k: summary.get(k, 0) for k in ("created", "updated", "voided", "deleted", "hard_deleted")}
    end = start + days * DAY_MS
    with store.transaction():
        store.set_config("clock_played_until_ms", end)
        store.set_clock(end)
        store.log_event(None, "advance", {"days": days, "from_ms": start, "to_ms": end, "summary": result})
    return result

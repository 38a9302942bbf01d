"""The restore plan (PURE): preflight checks, the ordered steps, estimates, and what will not come back.

This module owns the restore's order of work and its rules before anything is written:

- `STEPS`: the steps in dependency order (issue 7: currencies, tax rates, chart of accounts, tracking, contact
  groups, contacts, items, invoices and bills, credit notes, purchase orders, quotes, repeating invoices, manual
  journals, bank transactions, bank transfers, prepayments and overpayments, payments and batch payments,
  allocations, voids, linked transactions, attachments, archiving last), each with its Xero write path, batch
  size (50 where Xero takes batches, 1 where it takes one element: Accounts, TaxRates, Currencies, tracking,
  research §4.1) and scope.
- `preflight`: the problems that make a restore go wrong (target is the source, target not empty, country or
  base currency differ, currencies missing, lock dates), as blockers or warnings.
- `build_plan`: counts per step, API calls, days under the target's day limit, bytes, and `NOT_RESTORED`: the
  item-by-item list of what Xero's API cannot take back, with the reason and source (research §3).

It must not do I/O: callers pass the point's records (as counts and small samples) and the target's state in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from appliance.restore.transform import day

Severity = Literal["blocker", "warning"]


@dataclass(frozen=True)
class Step:
    name: str
    endpoint: str
    """The mirror endpoint the step's source records come from."""
    path: str
    """Xero write path under `/api.xro/2.0/` (`{id}` is the target id of the element's parent)."""
    method: Literal["PUT", "POST"]
    collection: str
    """The body key of a batch (`{"Invoices": [...]}`) and of the answer."""
    batch: int
    """Elements per request: 50 (Xero's recommendation, research §4.1) or 1 where Xero takes one."""
    scope: str
    id_kind: str | None
    """Kind of the id map the step fills (`contact`, `invoice`, ...)."""
    id_field: str | None
    """The id field of the created record in Xero's answer."""
    summarize: bool = True
    """Whether the SPEC operation takes `summarizeErrors` (research §4.2)."""
    wrapped: bool = True
    """Whether the SPEC request body is the collection (`{"Invoices": [...]}`) rather than one object."""
    description: str = ""


STEPS: tuple[Step, ...] = (
    Step("currencies", "Currencies", "Currencies", "PUT", "Currencies", 1, "accounting.settings", None, "Code",
         summarize=False, wrapped=False, description="currencies other than the base currency"),
    Step("tax_rates", "TaxRates", "TaxRates", "PUT", "TaxRates", 1, "accounting.settings", "tax", "TaxType",
         summarize=False, description="custom tax rates (built-in rates are mapped by tax type)"),
    Step("accounts", "Accounts", "Accounts", "PUT", "Accounts", 1, "accounting.settings", "account", "AccountID",
         summarize=False, wrapped=False,
         description="chart of accounts (system accounts mapped by SystemAccount, others by code)"),
    Step("tracking_categories", "TrackingCategories", "TrackingCategories", "PUT", "TrackingCategories", 1,
         "accounting.settings", "tracking_category", "TrackingCategoryID", summarize=False, wrapped=False,
         description="tracking categories"),
    Step("tracking_options", "TrackingCategories", "TrackingCategories/{id}/Options", "PUT", "Options", 1,
         "accounting.settings", "tracking_option", "TrackingOptionID", summarize=False, wrapped=False,
         description="tracking options"),
    Step("contact_groups", "ContactGroups", "ContactGroups", "PUT", "ContactGroups", 1, "accounting.contacts",
         "contact_group", "ContactGroupID", summarize=False, description="contact groups"),
    Step("contacts", "Contacts", "Contacts", "PUT", "Contacts", 50, "accounting.contacts", "contact", "ContactID",
         description="contacts (archived ones archived again at the end)"),
    Step("contact_group_members", "ContactGroups", "ContactGroups/{id}/Contacts", "PUT", "Contacts", 1,
         "accounting.contacts", None, None, summarize=False, description="contact group members"),
    Step("items", "Items", "Items", "PUT", "Items", 50, "accounting.settings", "item", "ItemID",
         description="items"),
    Step("invoices", "Invoices", "Invoices", "PUT", "Invoices", 50, "accounting.invoices", "invoice", "InvoiceID",
         description="invoices and bills (created AUTHORISED; PAID comes from payments)"),
    Step("credit_notes", "CreditNotes", "CreditNotes", "PUT", "CreditNotes", 50, "accounting.invoices",
         "credit_note", "CreditNoteID", description="credit notes"),
    Step("purchase_orders", "PurchaseOrders", "PurchaseOrders", "PUT", "PurchaseOrders", 50, "accounting.invoices",
         "purchase_order", "PurchaseOrderID", description="purchase orders"),
    Step("quotes", "Quotes", "Quotes", "PUT", "Quotes", 50, "accounting.invoices", "quote", "QuoteID",
         description="quotes"),
    Step("repeating_invoices", "RepeatingInvoices", "RepeatingInvoices", "PUT", "RepeatingInvoices", 50,
         "accounting.invoices", "repeating_invoice", "RepeatingInvoiceID", description="repeating invoice templates"),
    Step("manual_journals", "ManualJournals", "ManualJournals", "PUT", "ManualJournals", 50,
         "accounting.manualjournals", "manual_journal", "ManualJournalID", description="manual journals"),
    Step("bank_transactions", "BankTransactions", "BankTransactions", "PUT", "BankTransactions", 50,
         "accounting.banktransactions", "bank_transaction", "BankTransactionID",
         description="spend and receive money, overpayments and prepayments (reconciled flag kept)"),
    Step("bank_transfers", "BankTransfers", "BankTransfers", "PUT", "BankTransfers", 50,
         "accounting.banktransactions", "bank_transfer", "BankTransferID", summarize=False,
         description="bank transfers"),
    Step("batch_payments", "BatchPayments", "BatchPayments", "PUT", "BatchPayments", 50, "accounting.payments",
         "batch_payment", "BatchPaymentID",
         description="batch payments (before payments: their payments come with them)"),
    Step("payments", "Payments", "Payments", "PUT", "Payments", 50, "accounting.payments", "payment", "PaymentID",
         description="payments and refunds (reconciled flag kept)"),
    Step("allocations", "CreditNotes", "{endpoint}/{id}/Allocations", "PUT", "Allocations", 1,
         "accounting.invoices", None, None, description="credit note, overpayment and prepayment allocations"),
    # POST /Invoices, /CreditNotes, /ManualJournals and /BankTransactions take many elements
    # (updateOrCreate*, with summarizeErrors: SPEC), so status changes go 50 a request, one endpoint per batch.
    Step("voids", "Invoices", "{endpoint}", "POST", "{endpoint}", 50, "accounting.invoices", None, None,
         description="voided and deleted documents voided or deleted again (50 a request per endpoint)"),
    Step("linked_transactions", "LinkedTransactions", "LinkedTransactions", "PUT", "LinkedTransactions", 1,
         "accounting.invoices", "linked_transaction", "LinkedTransactionID", summarize=False, wrapped=False,
         description="billable expenses (linked transactions)"),
    Step("attachments", "Attachments", "{endpoint}/{id}/Attachments/{name}", "PUT", "Attachments", 1,
         "accounting.attachments", None, None, summarize=False, description="attachments on their records"),
    Step("archive", "Accounts", "{endpoint}/{id}", "POST", "{endpoint}", 1, "accounting.settings", None, None,
         summarize=False, description="archived accounts, contacts and tracking options archived again"),
)  # fmt: skip
STEP_NAMES = tuple(step.name for step in STEPS)
STEPS_BY_NAME: Mapping[str, Step] = {step.name: step for step in STEPS}

# Endpoints a restore reads for cross-references or a later step, but that are not written as themselves.
VOIDABLE = ("Invoices", "CreditNotes", "ManualJournals", "BankTransactions")
ARCHIVABLE = ("Accounts", "Contacts", "TrackingCategories")


@dataclass(frozen=True)
class NotRestored:
    item: str
    reason: str
    source: str
    manual_step: str | None = None


# What Xero's API cannot take back, item by item (research §3; the sources are its keys).
NOT_RESTORED: tuple[NotRestored, ...] = (
    NotRestored(
        "Bank statement lines and reconciliation matches",
        "Xero: \"we will not be adding the ability to reconcile bank statement lines via the API\"; only the"
        " IsReconciled flag of payments, bank transactions and transfers is restored",
        "research §3 (UV-REC, BT)",
        "reconnect bank feeds; imported lines will duplicate restored reconciled items: mark them as duplicates",
    ),
    NotRestored(
        "Users and their permissions", "Users are GET-only; people are invited in Xero's UI", "research §3 (SPEC)",
        "re-invite every user with the same role",
    ),
    NotRestored(
        "Bank feeds", "the Bank Feeds API is closed to financial institutions", "research §3 (SPEC-BF, BF-DOC)",
        "reconnect each bank feed in Xero",
    ),
    NotRestored(
        "Connected apps", "connections are made by each app's own consent flow", "research §5.1",
        "reconnect each app from the integrations register",
    ),
    NotRestored(
        "Branding themes", "GET-only (SPEC); documents are mapped to a theme of the same name when it exists",
        "research §3 (SPEC)", "re-create branding themes, then re-apply them to contacts and templates",
    ),
    NotRestored("Budgets", "no write operation in the SPEC", "research §3 (SPEC)", "re-enter budgets"),
    NotRestored(
        "Payroll (employees, pay runs, leave)", "the accounting Employees endpoint was removed; payroll is a"
        " separate API and not backed up", "research §3 (SPEC v15.0.0)", "set payroll up again",
    ),
    NotRestored(
        "Invoice settings, reminders and organisation settings", "GET-only (SPEC)", "research §3 (SPEC)",
        "re-apply invoice settings, reminders, financial year and tax settings",
    ),
    NotRestored(
        "Lock dates", "organisation settings are GET-only; a lock date set before the restore blocks it",
        "research §3 (SPEC)", "set the period and end-of-year lock dates after the restore is verified",
    ),
    NotRestored(
        "History and notes", "one call per record to read, and a note written back shows as \"System Generated\""
        " with today's date; not in the backup", "research §3 (NOTE-2026)", None,
    ),
    NotRestored(
        "General ledger journals", "system-generated from the documents; they come back as the documents do",
        "research §3", None,
    ),
    NotRestored(
        "Expense claims and receipts", "classic expenses are open only to organisations that used them before"
        " July 2018", "research §3 (RECEIPTS)", "re-enter expense claims as bills if needed",
    ),
    NotRestored(
        "Fixed assets and Files-API documents", "separate APIs, not part of this backup", "research §3", None,
    ),
    NotRestored(
        "Tracked inventory quantities and cost pools", "read-only; they change only through transactions",
        "research §3 (NOTE-2026)", "check the inventory valuation report after the restore",
    ),
    NotRestored(
        "Original record ids, creation dates and 'sent' history", "a restore creates new records with new ids",
        "research §3", None,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    code: str
    severity: Severity
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class TargetState:
    """What the preflight needs to know about the target organisation (read through the API)."""

    tenant_id: str
    organisation: Mapping[str, Any]
    currencies: Sequence[str]
    counts: Mapping[str, int]
    """Records already in the target per endpoint (Contacts, Invoices, ...), for "is it empty"."""
    day_limit: int = 5000


@dataclass
class StepEstimate:
    name: str
    description: str
    records: int
    calls: int
    bytes: int


@dataclass
class Plan:
    org_id: str
    snapshot_id: str
    target_tenant_id: str
    problems: list[Problem]
    steps: list[StepEstimate]
    calls: int
    floor_calls: int
    days: float
    bytes: int
    not_restored: list[NotRestored] = field(default_factory=lambda: list(NOT_RESTORED))

    @property
    def blocked(self) -> bool:
        return any(problem.severity == "blocker" for problem in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "snapshot_id": self.snapshot_id,
            "target_tenant_id": self.target_tenant_id,
            "blocked": self.blocked,
            "problems": [asdict(problem) for problem in self.problems],
            "steps": [asdict(step) for step in self.steps],
            "calls": self.calls,
            "floor_calls": self.floor_calls,
            "days": self.days,
            "bytes": self.bytes,
            "not_restored": [asdict(item) for item in self.not_restored],
        }


# Endpoints whose presence in the target means it is not a new, empty organisation. A new organisation has a
# default chart, tax rates and currencies, so those do not count.
_CONTENT_ENDPOINTS = ("Contacts", "Invoices", "CreditNotes", "BankTransactions", "ManualJournals", "Payments", "Items")


def preflight(
    *,
    source_org_id: str,
    source_organisation: Mapping[str, Any],
    source_currencies: Iterable[str],
    earliest_document_day: str | None,
    target: TargetState,
    allow_non_empty: bool = False,
) -> list[Problem]:
    """What would make this restore go wrong, before a single write."""
    problems: list[Problem] = []
    target_org = target.organisation
    if target.tenant_id == source_org_id or target_org.get("OrganisationID") == source_org_id:
        problems.append(
            Problem(
                "target_is_source",
                "blocker",
                "the target is the organisation the backup was taken from",
                "restore into a new, empty Xero organisation: create it in Xero, then connect it",
            )
        )
    busy = {name: count for name in _CONTENT_ENDPOINTS if (count := int(target.counts.get(name, 0))) > 0}
    if busy:
        listed = ", ".join(f"{count} {name}" for name, count in sorted(busy.items()))
        problems.append(
            Problem(
                "target_not_empty",
                "warning" if allow_non_empty else "blocker",
                f"the target organisation is not empty ({listed})",
                None if allow_non_empty else "use a new organisation, or --allow-non-empty to add to this one",
            )
        )
    for field_name, code, label in (
        ("CountryCode", "country_mismatch", "country"),
        ("BaseCurrency", "base_currency_mismatch", "base currency"),
    ):
        source_value, target_value = source_organisation.get(field_name), target_org.get(field_name)
        if source_value and target_value and source_value != target_value:
            problems.append(
                Problem(
                    code,
                    "blocker",
                    f"the {label} differs: the point is {source_value}, the target is {target_value}",
                    f"create the new organisation with {label} {source_value} (it cannot be changed later in Xero)",
                )
            )
    for field_name in ("SalesTaxBasis", "SalesTaxPeriod"):
        source_value, target_value = source_organisation.get(field_name), target_org.get(field_name)
        if source_value and target_value and source_value != target_value:
            problems.append(
                Problem(
                    "tax_regime_mismatch",
                    "warning",
                    f"{field_name} differs: the point has {source_value}, the target {target_value}",
                    "set the same tax basis and period in the target's settings before the restore",
                )
            )
    base = str(source_organisation.get("BaseCurrency") or target_org.get("BaseCurrency") or "")
    missing = sorted(set(source_currencies) - set(target.currencies) - {base})
    if missing:
        problems.append(
            Problem(
                "currencies_missing",
                "warning",
                f"the target lacks currencies {', '.join(missing)}; the restore adds them",
                'adding a currency needs a plan with multicurrency ("Organisation is not subscribed to currency",'
                " research §3)",
            )
        )
    if earliest_document_day:
        for field_name in ("PeriodLockDate", "EndOfYearLockDate"):
            lock = day(target_org.get(field_name))
            if lock and lock >= earliest_document_day:
                problems.append(
                    Problem(
                        "lock_date",
                        "blocker",
                        f"the target's {field_name} {lock} is on or after the point's first document"
                        f" ({earliest_document_day}): Xero refuses writes before a lock date",
                        "remove the lock date in the target for the restore; set it again after verifying",
                    )
                )
    return problems


def build_plan(
    *,
    org_id: str,
    snapshot_id: str,
    target: TargetState,
    records_per_step: Mapping[str, int],
    bytes_per_step: Mapping[str, int],
    problems: list[Problem],
) -> Plan:
    """Counts, calls, days and bytes per step, in order.

    `records_per_step`: elements each step will write (attachments: one per file). The floor is the
    benchmark's: records / 50 per batchable step plus one per attachment and per unbatchable element."""
    estimates = []
    total_calls = 0
    total_bytes = 0
    for step in STEPS:
        records = int(records_per_step.get(step.name, 0))
        calls = math.ceil(records / step.batch) if records else 0
        size = int(bytes_per_step.get(step.name, 0))
        estimates.append(StepEstimate(step.name, step.description, records, calls, size))
        total_calls += calls
        total_bytes += size
    # Reads around the writes: the target's chart, tax rates, currencies, organisation; the verify reports.
    overhead = 12
    calls = total_calls + overhead
    limit = max(1, target.day_limit)
    return Plan(
        org_id=org_id,
        snapshot_id=snapshot_id,
        target_tenant_id=target.tenant_id,
        problems=problems,
        steps=estimates,
        calls=calls,
        floor_calls=total_calls,
        days=round(calls / limit, 2),
        bytes=total_bytes,
    )


def floor_calls(records_per_step: Mapping[str, int]) -> int:
    """The benchmark floor: ceil(records / 50) per batchable step, one per unbatchable element."""
    total = 0
    for step in STEPS:
        records = int(records_per_step.get(step.name, 0))
        total += math.ceil(records / 50) if step.batch > 1 else records
    return total

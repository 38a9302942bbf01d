"""The endpoint catalogue: what Strongroom reads from Xero's Accounting API, declared once.

This module owns the facts about each endpoint that a reader needs (where it lives, the JSON key of its
collection, its id field, how it pages, whether `If-Modified-Since` works, which extra parameters make the
read complete, whether its records can have attachments, which scopes reach it, whether Xero deletes its
records without a trace, and whether the app's tier restricts it). Every fact cites the research notes
(`shared/research/xero-api.md`, "§n"), which in turn cite Xero's docs and the official OpenAPI spec
(XeroAPI/Xero-OpenAPI v16.1.0, "SPEC").

It must not do I/O; the client and the backup read it, nothing writes it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from appliance.settings import XeroTier


class Paging(enum.StrEnum):
    PAGE = "page"
    """`page` + `pageSize` (max 1000) with a `pagination` object (§2.1, RR)."""
    PAGE_FIXED = "page_fixed"
    """`page` only; Xero fixes the page at 100 (Quotes, LinkedTransactions; SPEC, §2.1)."""
    OFFSET = "offset"
    """`offset` = the last JournalNumber seen; 100 per response (Journals; JRN, §2.2)."""
    NONE = "none"
    """One call returns everything (§2.1 "Not paged")."""


class Kind(enum.StrEnum):
    RECORDS = "records"
    SINGLETON = "singleton"
    REPORT = "report"


TIER_ORDER: tuple[XeroTier, ...] = ("starter", "core", "plus", "advanced", "enterprise")

# Granular read scopes per area (§5.2, GRAN-FAQ and APIDECK-SCOPES), and the broad legacy ones.
_SETTINGS = ("accounting.settings.read",)
_CONTACTS = ("accounting.contacts.read",)
_INVOICES = ("accounting.invoices.read",)
_PAYMENTS = ("accounting.payments.read",)
_BANK = ("accounting.banktransactions.read",)
_MANUAL = ("accounting.manualjournals.read",)
_TRANSACTIONS_BROAD = ("accounting.transactions.read",)
_REPORTS_BROAD = ("accounting.reports.read",)
ATTACHMENT_SCOPES = ("accounting.attachments.read",)

# Xero answers page sizes outside 1..1000 by clamping; 1000 is the maximum since 1 July 2024 (§2.1, RR).
MAX_PAGE_SIZE = 1000
FIXED_PAGE_SIZE = 100
JOURNALS_PER_RESPONSE = 100

# Every invoice status in the SPEC's enum: whether DELETED/VOIDED come back by default is unverified (§2.5),
# so ask for all of them explicitly (RR example 4 uses `Statuses=DELETED,VOIDED`).
_ALL_INVOICE_STATUSES = "DRAFT,SUBMITTED,AUTHORISED,PAID,VOIDED,DELETED"
# Unit amounts are rounded to 2 dp unless unitdp=4 (§2.4, §8.11; Xero-OpenAPI#141).
_UNITDP = (("unitdp", "4"),)


@dataclass(frozen=True)
class Endpoint:
    """One readable Accounting API resource."""

    name: str
    """Catalogue key and the mirror's directory name (Xero's collection name)."""
    path: str
    """Path under `/api.xro/2.0/`."""
    collection: str
    """The JSON key holding the records in a response."""
    id_field: str | None
    """The field that identifies a record (None for reports)."""
    paging: Paging = Paging.NONE
    if_modified_since: bool = False
    """Whether Xero honours `If-Modified-Since` here (SPEC parameter lists, §2.3)."""
    params: tuple[tuple[str, str], ...] = ()
    """Extra query parameters every read sends (unitdp, includeArchived, ...)."""
    attachments: str | None = None
    """Path segment of `/{segment}/{id}/Attachments`, if records can carry attachments (ATT, SPEC paths)."""
    has_attachments_flag: bool = False
    """Records carry `HasAttachments`, so attachment lists are fetched only where it is true (§1.3, §6)."""
    scopes: tuple[str, ...] = ()
    """Granular read scopes, any one of which grants the read (§5.2)."""
    broad_scopes: tuple[str, ...] = ()
    """The broad legacy scopes that grant it for apps made before 2 March 2026 (§5.2)."""
    hard_deletes: bool = False
    """Xero can remove records of this type without a tombstone: only a full id list detects it (§2.3)."""
    min_tier: XeroTier | None = None
    """The lowest app tier that may call it (Journals: Advanced since 2 March 2026, §1.3)."""
    kind: Kind = Kind.RECORDS
    updated_field: str | None = "UpdatedDateUTC"
    """The field Xero moves on change, if any (TaxRates and TrackingCategories have none, §2.3)."""
    date_field: str | None = None
    """The document date (for month shards), if the type is dated."""
    required_params: tuple[str, ...] = ()
    """Parameters a call cannot do without (AgedReceivablesByContact needs `contactId`, SPEC)."""
    note: str = ""

    @property
    def page_size(self) -> int | None:
        """Records per full page: what a short page is measured against."""
        if self.paging is Paging.PAGE:
            return MAX_PAGE_SIZE
        if self.paging is Paging.PAGE_FIXED:
            return FIXED_PAGE_SIZE
        if self.paging is Paging.OFFSET:
            return JOURNALS_PER_RESPONSE
        return None

    def query(self, *, page: int | None = None, page_size: int = MAX_PAGE_SIZE, offset: int | None = None) -> dict:
        """Query parameters for one read of this endpoint.

        Paged endpoints always send `page`, even for one page: without it Xero returns summaries without line
        items (RR; pyxero#288, §8.7).
        """
        params: dict[str, str] = dict(self.params)
        if self.paging is Paging.PAGE:
            params["page"] = str(page or 1)
            params["pageSize"] = str(max(1, min(MAX_PAGE_SIZE, page_size)))
        elif self.paging is Paging.PAGE_FIXED:
            params["page"] = str(page or 1)
        elif self.paging is Paging.OFFSET:
            params["offset"] = str(offset or 0)
        return params

    def allowed_for(self, tier: XeroTier) -> bool:
        return self.min_tier is None or TIER_ORDER.index(tier) >= TIER_ORDER.index(self.min_tier)

    def granted_by(self, granted: Iterable[str]) -> bool:
        """Whether a token with `granted` scopes may read this endpoint (a write scope also permits GET, §3)."""
        have = set(granted)
        return any(scope in have or scope.removesuffix(".read") in have for scope in (*self.scopes, *self.broad_scopes))

    def attachments_path(self, record_id: str) -> str:
        """The attachment list of one record."""
        if self.attachments is None:
            raise ValueError(f"{self.name} records have no attachments")
        return f"{self.attachments}/{quote(record_id, safe='')}/Attachments"

    def attachment_content_path(self, record_id: str, attachment_id: str) -> str:
        """One attachment's bytes, addressed by AttachmentID rather than file name: names may hold brackets
        that must be encoded and other characters that must not (ATT, §8.14)."""
        return f"{self.attachments_path(record_id)}/{quote(attachment_id, safe='')}"


def _records(
    name: str,
    id_field: str | None,
    scopes: tuple[str, ...],
    broad: tuple[str, ...],
    **kwargs: object,
) -> Endpoint:
    return Endpoint(
        name=name,
        path=name,
        collection=name,
        id_field=id_field,
        scopes=scopes,
        broad_scopes=broad,
        **kwargs,  # type: ignore[arg-type]
    )


_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        name="Organisation",
        path="Organisation",
        collection="Organisations",
        id_field="OrganisationID",
        kind=Kind.SINGLETON,
        updated_field=None,
        scopes=_SETTINGS,
        broad_scopes=_SETTINGS,
        note="Excluded from egress charges (§1.3). Settings, lock dates and FY end are read-only (§3).",
    ),
    _records(
        "Accounts",
        "AccountID",
        _SETTINGS,
        _SETTINGS,
        if_modified_since=True,
        attachments="Accounts",
        has_attachments_flag=True,
        hard_deletes=True,
        note="DELETE /Accounts/{id} exists (SPEC); whether ARCHIVED/DELETED are listed by default is "
        "unverified (§2.5).",
    ),
    _records(
        "Contacts",
        "ContactID",
        _CONTACTS,
        _CONTACTS,
        paging=Paging.PAGE,
        if_modified_since=True,
        params=(("includeArchived", "true"),),
        attachments="Contacts",
        has_attachments_flag=True,
        note="ARCHIVED excluded unless includeArchived=true (SPEC, §2.5). Balances/IsCustomer change without "
        "moving UpdatedDateUTC (RR caveat, §2.3): the periodic full read catches them.",
    ),
    _records(
        "ContactGroups",
        "ContactGroupID",
        _CONTACTS,
        _CONTACTS,
        updated_field=None,
        hard_deletes=True,
        note="No If-Modified-Since (§2.3); membership DELETE leaves no tombstone (SPEC, §2.3).",
    ),
    _records(
        "Invoices",
        "InvoiceID",
        _INVOICES,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        params=(*_UNITDP, ("Statuses", _ALL_INVOICE_STATUSES), ("includeArchived", "true")),
        attachments="Invoices",
        has_attachments_flag=True,
        date_field="Date",
    ),
    _records(
        "CreditNotes",
        "CreditNoteID",
        _INVOICES,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        params=_UNITDP,
        attachments="CreditNotes",
        has_attachments_flag=True,
        date_field="Date",
    ),
    _records(
        "Payments",
        "PaymentID",
        _PAYMENTS,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        date_field="Date",
        note="Deleting a payment is POST Status=DELETED: a soft delete (SPEC PaymentDelete, §2.5).",
    ),
    _records(
        "BatchPayments",
        "BatchPaymentID",
        _PAYMENTS,
        _TRANSACTIONS_BROAD,
        if_modified_since=True,
        date_field="Date",
    ),
    _records(
        "BankTransactions",
        "BankTransactionID",
        _BANK,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        params=_UNITDP,
        attachments="BankTransactions",
        has_attachments_flag=True,
        date_field="Date",
        note="Over 100k rows with un-optimised filters answers 400 (BT, §2.1): page in the default order.",
    ),
    _records(
        "BankTransfers",
        "BankTransferID",
        _BANK,
        _TRANSACTIONS_BROAD,
        if_modified_since=True,
        params=(("includeDeleted", "true"),),
        attachments="BankTransfers",
        has_attachments_flag=True,
        updated_field="CreatedDateUTC",
        date_field="Date",
        note="DELETED excluded unless includeDeleted=true (SPEC since July 2026, §2.5). The schema has "
        "CreatedDateUTC but no UpdatedDateUTC.",
    ),
    _records(
        "ManualJournals",
        "ManualJournalID",
        _MANUAL,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        attachments="ManualJournals",
        has_attachments_flag=True,
        date_field="Date",
        note="Never send `order`: Xero then ignored paging (singer-io/tap-xero#104, §8.3).",
    ),
    _records(
        "Journals",
        "JournalID",
        ("accounting.journals.read",),
        ("accounting.journals.read",),
        paging=Paging.OFFSET,
        if_modified_since=True,
        min_tier="advanced",
        updated_field="CreatedDateUTC",
        date_field="JournalDate",
        note="Premium from 2 March 2026 (Advanced tier plus approval, §1.3); `page` is ignored (pyxero#190). "
        "Journals are immutable: edits post reversals (CM-JRN, §2.2).",
    ),
    _records(
        "Items",
        "ItemID",
        (*_SETTINGS, *_INVOICES),
        _SETTINGS,
        if_modified_since=True,
        params=_UNITDP,
        hard_deletes=True,
        note="DELETE /Items/{id} leaves no tombstone (SPEC, §2.3).",
    ),
    _records(
        "TrackingCategories",
        "TrackingCategoryID",
        _SETTINGS,
        _SETTINGS,
        params=(("includeArchived", "true"),),
        updated_field=None,
        hard_deletes=True,
        note="ARCHIVED excluded unless includeArchived=true; categories and options can be DELETEd (SPEC, §2.5).",
    ),
    _records(
        "TaxRates",
        "TaxType",
        _SETTINGS,
        _SETTINGS,
        updated_field=None,
        note="Identified by TaxType; the schema has no UpdatedDateUTC (SPEC, §2.3).",
    ),
    _records("Currencies", "Code", _SETTINGS, _SETTINGS, updated_field=None),
    _records(
        "BrandingThemes",
        "BrandingThemeID",
        _SETTINGS,
        _SETTINGS,
        updated_field="CreatedDateUTC",
        hard_deletes=True,
        note="Read-only through the API; themes removed in Xero's UI simply vanish (inference).",
    ),
    _records(
        "PurchaseOrders",
        "PurchaseOrderID",
        _INVOICES,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        attachments="PurchaseOrders",
        has_attachments_flag=True,
        date_field="Date",
    ),
    _records(
        "Quotes",
        "QuoteID",
        _INVOICES,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE_FIXED,
        if_modified_since=True,
        attachments="Quotes",
        date_field="Date",
        note="`page` without `pageSize` (100 per page, SPEC). The Quote schema has no HasAttachments, so "
        "attachments need a list call per quote.",
    ),
    _records(
        "Overpayments",
        "OverpaymentID",
        _PAYMENTS,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        params=_UNITDP,
        date_field="Date",
        note="Allocations can be DELETEd (SPEC); the overpayment itself stays.",
    ),
    _records(
        "Prepayments",
        "PrepaymentID",
        _PAYMENTS,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE,
        if_modified_since=True,
        params=_UNITDP,
        date_field="Date",
    ),
    _records(
        "RepeatingInvoices",
        "RepeatingInvoiceID",
        _INVOICES,
        _TRANSACTIONS_BROAD,
        attachments="RepeatingInvoices",
        has_attachments_flag=True,
        updated_field=None,
        hard_deletes=True,
        note="No If-Modified-Since (§2.3); deleted templates disappear from the list (inference).",
    ),
    _records(
        "LinkedTransactions",
        "LinkedTransactionID",
        _INVOICES,
        _TRANSACTIONS_BROAD,
        paging=Paging.PAGE_FIXED,
        hard_deletes=True,
        note="`page` fixed at 100, no If-Modified-Since (SPEC); DELETE leaves no tombstone (§2.3).",
    ),
    _records(
        "Users",
        "UserID",
        _SETTINGS,
        _SETTINGS,
        if_modified_since=True,
        hard_deletes=True,
        note="Users removed from the organisation disappear from the list (inference).",
    ),
    _records(
        "Budgets",
        "BudgetID",
        ("accounting.budgets.read",),
        ("accounting.budgets.read",),
        hard_deletes=True,
        note="No If-Modified-Since; budget lines come only from GET /Budgets/{id} with DateFrom/DateTo (SPEC).",
    ),
)


def _report(name: str, scope: str, *, required: tuple[str, ...] = (), note: str = "") -> Endpoint:
    return Endpoint(
        name=name,
        path=f"Reports/{name}",
        collection="Reports",
        id_field=None,
        kind=Kind.REPORT,
        updated_field=None,
        scopes=(scope,),
        broad_scopes=_REPORTS_BROAD,
        required_params=required,
        note=note,
    )


# Reports a person checks after a restore, as Xero computes them (issue 3; §3 "verification oracle").
_REPORTS: tuple[Endpoint, ...] = (
    _report("TrialBalance", "accounting.reports.trialbalance.read"),
    _report("ProfitAndLoss", "accounting.reports.profitandloss.read"),
    _report("BalanceSheet", "accounting.reports.balancesheet.read"),
    _report(
        "AgedReceivablesByContact",
        "accounting.reports.aged.read",
        required=("contactId",),
        note="One call per contact (SPEC): expensive against a 1,000-call day (§3).",
    ),
    _report(
        "AgedPayablesByContact",
        "accounting.reports.aged.read",
        required=("contactId",),
        note="One call per contact (SPEC): expensive against a 1,000-call day (§3).",
    ),
    _report("BankSummary", "accounting.reports.banksummary.read"),
)

ENDPOINTS: Mapping[str, Endpoint] = {endpoint.name: endpoint for endpoint in _ENDPOINTS}
REPORTS: Mapping[str, Endpoint] = {endpoint.name: endpoint for endpoint in _REPORTS}


def endpoint(name: str) -> Endpoint:
    """The catalogue entry for `name` (an endpoint or a report); KeyError if unknown."""
    if name in ENDPOINTS:
        return ENDPOINTS[name]
    return REPORTS[name]


@dataclass(frozen=True)
class ReadPlan:
    """Which endpoints an app may read, given its tier and the scopes a grant holds."""

    readable: tuple[Endpoint, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    """Endpoint name -> why it is skipped (tier or scope)."""


def plan_reads(tier: XeroTier, granted: Iterable[str], *, include_reports: bool = True) -> ReadPlan:
    """Feature detection: never assume the full endpoint set exists (§8.17)."""
    have = list(granted)
    readable: list[Endpoint] = []
    skipped: dict[str, str] = {}
    candidates = [*_ENDPOINTS, *(_REPORTS if include_reports else ())]
    for entry in candidates:
        if not entry.allowed_for(tier):
            skipped[entry.name] = f"needs the {entry.min_tier} tier or above"
        elif not entry.granted_by(have):
            skipped[entry.name] = "scope not granted: " + " or ".join((*entry.scopes, *entry.broad_scopes))
        else:
            readable.append(entry)
    return ReadPlan(readable=tuple(readable), skipped=skipped)

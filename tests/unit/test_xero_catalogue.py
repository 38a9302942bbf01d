"""The endpoint catalogue agrees with the brief, the research notes and the official OpenAPI spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.settings import READ_SCOPES_BROAD, READ_SCOPES_GRANULAR
from appliance.xero.catalogue import ENDPOINTS, REPORTS, Kind, Paging, endpoint, plan_reads

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "xero-openapi" / "xero_accounting.yaml"

REQUIRED = [
    "Organisation",
    "Accounts",
    "Contacts",
    "ContactGroups",
    "Invoices",
    "CreditNotes",
    "Payments",
    "BatchPayments",
    "BankTransactions",
    "BankTransfers",
    "ManualJournals",
    "Journals",
    "Items",
    "TrackingCategories",
    "TaxRates",
    "Currencies",
    "BrandingThemes",
    "PurchaseOrders",
    "Quotes",
    "Overpayments",
    "Prepayments",
    "RepeatingInvoices",
    "LinkedTransactions",
    "Users",
    "Budgets",
]
REQUIRED_REPORTS = [
    "TrialBalance",
    "ProfitAndLoss",
    "BalanceSheet",
    "AgedReceivablesByContact",
    "AgedPayablesByContact",
    "BankSummary",
]


def test_covers_every_endpoint_and_report() -> None:
    assert set(ENDPOINTS) == set(REQUIRED)
    assert set(REPORTS) == set(REQUIRED_REPORTS)
    assert endpoint("Invoices").id_field == "InvoiceID"
    assert endpoint("TrialBalance").kind is Kind.REPORT


def test_paging_modes() -> None:
    paged = {name for name, e in ENDPOINTS.items() if e.paging is Paging.PAGE}
    # RR: "Paged results are available on the Invoices, Contacts, CreditNotes, BankTransactions, ManualJournals,
    # Payments, PurchaseOrders, Prepayments and Overpayments endpoints".
    assert paged == {
        "Invoices",
        "Contacts",
        "CreditNotes",
        "BankTransactions",
        "ManualJournals",
        "Payments",
        "PurchaseOrders",
        "Prepayments",
        "Overpayments",
    }
    assert {n for n, e in ENDPOINTS.items() if e.paging is Paging.PAGE_FIXED} == {"Quotes", "LinkedTransactions"}
    assert ENDPOINTS["Journals"].paging is Paging.OFFSET
    assert ENDPOINTS["Invoices"].query(page=3) == {
        "unitdp": "4",
        "Statuses": "DRAFT,SUBMITTED,AUTHORISED,PAID,VOIDED,DELETED",
        "includeArchived": "true",
        "page": "3",
        "pageSize": "1000",
    }
    assert ENDPOINTS["Contacts"].query(page_size=5000)["pageSize"] == "1000"
    assert ENDPOINTS["Quotes"].query(page=2) == {"page": "2"}
    assert ENDPOINTS["Journals"].query(offset=250) == {"offset": "250"}
    assert ENDPOINTS["Accounts"].query() == {}


def test_completeness_parameters() -> None:
    for name in ("Invoices", "CreditNotes", "BankTransactions", "Items", "Overpayments", "Prepayments"):
        assert ("unitdp", "4") in ENDPOINTS[name].params, name
    assert ("includeArchived", "true") in ENDPOINTS["Contacts"].params
    assert ("includeArchived", "true") in ENDPOINTS["TrackingCategories"].params
    assert ("includeDeleted", "true") in ENDPOINTS["BankTransfers"].params


def test_tier_and_scopes() -> None:
    journals = ENDPOINTS["Journals"]
    assert not journals.allowed_for("core")
    assert journals.allowed_for("advanced")
    assert ENDPOINTS["Invoices"].granted_by(READ_SCOPES_GRANULAR)
    assert ENDPOINTS["Invoices"].granted_by(READ_SCOPES_BROAD)
    assert ENDPOINTS["Invoices"].granted_by(["accounting.invoices"])  # a write scope also permits GET
    assert not ENDPOINTS["Invoices"].granted_by(["accounting.contacts.read"])
    plan = plan_reads("core", READ_SCOPES_GRANULAR)
    names = {e.name for e in plan.readable}
    assert "Journals" not in names
    assert "tier" in plan.skipped["Journals"]
    assert {"Invoices", "TrialBalance", "AgedPayablesByContact", "Budgets"} <= names
    broad = plan_reads("advanced", READ_SCOPES_BROAD)
    assert "scope" in broad.skipped["Journals"]
    assert "TrialBalance" in {e.name for e in broad.readable}


def test_attachment_paths_use_the_attachment_id() -> None:
    invoices = ENDPOINTS["Invoices"]
    assert invoices.attachment_content_path("abc", "def") == "Invoices/abc/Attachments/def"
    with pytest.raises(ValueError):
        ENDPOINTS["Payments"].attachments_path("x")


@pytest.mark.skipif(not SPEC.exists(), reason="the official OpenAPI spec is not next to the repository")
def test_agrees_with_the_official_spec() -> None:
    # The C loader when PyYAML has it: the spec is large and the pure-Python loader takes seconds.
    spec = yaml.load(SPEC.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    paths = spec["paths"]
    parameters = spec["components"]["parameters"]
    schemas = spec["components"]["schemas"]
    for entry in [*ENDPOINTS.values(), *REPORTS.values()]:
        get = paths["/" + entry.path]["get"]
        names = set()
        for parameter in get.get("parameters", []):
            if "$ref" in parameter:
                parameter = parameters[parameter["$ref"].rsplit("/", 1)[1]]
            names.add(parameter["name"])
        assert entry.if_modified_since == ("If-Modified-Since" in names), entry.name
        for key, _ in entry.params:
            assert key in names, (entry.name, key)
        if entry.paging is Paging.PAGE:
            assert {"page", "pageSize"} <= names, entry.name
        if entry.paging is Paging.PAGE_FIXED:
            assert "page" in names, entry.name
            assert "pageSize" not in names, entry.name
        for required in entry.required_params:
            assert required in names, entry.name
        assert (entry.attachments is not None) == (f"/{entry.path}/{{{entry.id_field}}}/Attachments" in paths), (
            entry.name
        )
        response = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert entry.collection in schemas[response]["properties"] or entry.kind is Kind.SINGLETON, entry.name

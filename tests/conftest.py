"""Shared pytest fixtures: a sandbox Xero server on 127.0.0.1:0 with real HTTP and a real state file.

- `sandbox_server`: a fresh sandbox per test over a tiny hand-made organisation (`build_tiny_org`),
  whose records the tests know exactly (dates, statuses, amounts). Starts in well under a second.
- `generated_sandbox`: one generated small organisation per test module (needs `sandbox.generate`).
- `tokens`: a token set for `sandbox_server` from the real authorisation-code + PKCE flow.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.store import Record, SandboxStore, canonical_json, ms_date
from sandbox.testing import SandboxServer, TokenSet

# 2026-03-02T10:00:00Z, and one second later, plus a day: If-Modified-Since boundaries are tested on these.
T0 = 1_772_445_600_000
DAY_MS = 86_400_000


def _guid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tiny-org:{name}"))


@dataclass(frozen=True)
class TinyOrg:
    tenant_id: str
    contact_active: str
    contact_archived: str
    invoice_ids: tuple[str, ...]  # in default order (UpdatedDateUTC ASC, id ASC)
    invoice_updated_ms: tuple[int, ...]
    attachment_id: str
    attachment_name: str
    attachment_bytes: bytes


def build_tiny_org(store: SandboxStore, *, invoices: int = 7) -> TinyOrg:
    """One NZ organisation with a few records of most kinds, written straight into the store."""
    tenant_id = _guid("tenant")
    account_sales, account_bank = _guid("acct-200"), _guid("acct-090")
    organisation = {
        "OrganisationID": tenant_id,
        "APIKey": "TINYORGKEY",
        "Name": "Tiny Test Ltd",
        "LegalName": "Tiny Test Limited",
        "PaysTax": True,
        "Version": "NZ",
        "OrganisationType": "COMPANY",
        "BaseCurrency": "NZD",
        "CountryCode": "NZ",
        "IsDemoCompany": False,
        "OrganisationStatus": "ACTIVE",
        "FinancialYearEndDay": 31,
        "FinancialYearEndMonth": 3,
        "SalesTaxBasis": "INVOICE",
        "SalesTaxPeriod": "TWOMONTHS",
        "CreatedDateUTC": ms_date(T0 - 400 * DAY_MS),
        "Timezone": "NEWZEALANDSTANDARDTIME",
        "OrganisationEntityType": "COMPANY",
        "ShortCode": "!TINY1",
        "Edition": "BUSINESS",
        "Class": "STANDARD",
        "Addresses": [],
        "Phones": [],
        "ExternalLinks": [],
        "PaymentTerms": {},
    }
    with store.transaction():
        store.query(
            "INSERT INTO orgs(tenant_id, name, country, base_currency, size, seed, created_ms, doc)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (tenant_id, "Tiny Test Ltd", "NZ", "NZD", "tiny", 0, T0, canonical_json(organisation)),
        )
        records: list[Record] = []
        for code, account_id, name, kind in (
            ("200", account_sales, "Sales", "REVENUE"),
            ("090", account_bank, "Business Bank Account", "BANK"),
        ):
            doc: dict[str, Any] = {
                "AccountID": account_id,
                "Code": code,
                "Name": name,
                "Type": kind,
                "Status": "ACTIVE",
                "TaxType": "OUTPUT2" if kind == "REVENUE" else "NONE",
                "Class": "REVENUE" if kind == "REVENUE" else "ASSET",
                "EnablePaymentsToAccount": False,
                "ShowInExpenseClaims": False,
                "ReportingCode": "REV" if kind == "REVENUE" else "ASS",
                "HasAttachments": False,
                "UpdatedDateUTC": ms_date(T0 - 300 * DAY_MS),
            }
            if kind == "BANK":
                doc["BankAccountNumber"] = "0102030405060708"
                doc["BankAccountType"] = "BANK"
                doc["CurrencyCode"] = "NZD"
            records.append(
                Record(tenant_id, "Accounts", account_id, doc, updated_ms=T0 - 300 * DAY_MS, status="ACTIVE", type=kind)
            )
        contact_active, contact_archived = _guid("contact-a"), _guid("contact-b")
        for contact_id, name, status, updated in (
            (contact_active, "Acme Widgets", "ACTIVE", T0),
            (contact_archived, "Old Supplier", "ARCHIVED", T0 + 1000),
        ):
            doc = {
                "ContactID": contact_id,
                "ContactStatus": status,
                "Name": name,
                "EmailAddress": "accounts@example.com",
                "IsSupplier": False,
                "IsCustomer": True,
                "Addresses": [],
                "Phones": [],
                "UpdatedDateUTC": ms_date(updated),
                "ContactGroups": [],
                "HasAttachments": False,
                "HasValidationErrors": False,
            }
            records.append(Record(tenant_id, "Contacts", contact_id, doc, updated_ms=updated, status=status))
        invoice_rows: list[tuple[int, str]] = []
        for index in range(invoices):
            invoice_id = _guid(f"invoice-{index}")
            # Two invoices share an update instant (id breaks the tie); one lands 500 ms into a second.
            updated = T0 + (index // 2) * 1000 + (500 if index == 5 else 0)
            date = T0 - (10 - index) * DAY_MS
            status = ("AUTHORISED", "PAID", "DRAFT", "VOIDED")[index % 4]
            kind = "ACCREC" if index % 3 else "ACCPAY"
            doc = {
                "Type": kind,
                "InvoiceID": invoice_id,
                "InvoiceNumber": f"INV-{index + 1:04d}",
                "Reference": f"Ref {index}",
                "Contact": {"ContactID": contact_active, "Name": "Acme Widgets"},
                "Date": ms_date(date),
                "DateString": "2026-02-20T00:00:00",
                "DueDate": ms_date(date + 20 * DAY_MS),
                "Status": status,
                "LineAmountTypes": "Exclusive",
                "LineItems": [
                    {
                        "LineItemID": _guid(f"line-{index}"),
                        "Description": "Widgets",
                        "Quantity": 3.0,
                        "UnitAmount": 12.3456,
                        "TaxType": "OUTPUT2",
                        "TaxAmount": 5.56,
                        "LineAmount": 37.04,
                        "AccountCode": "200",
                        "Tracking": [],
                    }
                ],
                "SubTotal": 37.04,
                "TotalTax": 5.56,
                "Total": 42.6,
                "CurrencyCode": "NZD",
                "CurrencyRate": 1.0,
                "AmountDue": 42.6,
                "AmountPaid": 0.0,
                "AmountCredited": 0.0,
                "HasAttachments": index == 0,
                "IsDiscounted": False,
                "UpdatedDateUTC": ms_date(updated),
            }
            records.append(
                Record(
                    tenant_id,
                    "Invoices",
                    invoice_id,
                    doc,
                    updated_ms=updated,
                    date_ms=date,
                    status=status,
                    type=kind,
                    contact_id=contact_active,
                    number=doc["InvoiceNumber"],
                    has_attachments=index == 0,
                )
            )
            invoice_rows.append((updated, invoice_id))
        for transfer, status in (("transfer-live", "AUTHORISED"), ("transfer-deleted", "DELETED")):
            transfer_id = _guid(transfer)
            doc = {
                "BankTransferID": transfer_id,
                "FromBankAccount": {"AccountID": account_bank, "Code": "090", "Name": "Business Bank Account"},
                "ToBankAccount": {"AccountID": account_bank, "Code": "090", "Name": "Business Bank Account"},
                "Amount": 10.0,
                "Date": ms_date(T0),
                "CurrencyRate": 1.0,
                "HasAttachments": False,
                "CreatedDateUTC": ms_date(T0),
                "Status": status,
            }
            records.append(
                Record(tenant_id, "BankTransfers", transfer_id, doc, updated_ms=T0, date_ms=T0, status=status)
            )
        records.append(
            Record(
                tenant_id,
                "TaxRates",
                "OUTPUT2",
                {
                    "Name": "15% GST on Income",
                    "TaxType": "OUTPUT2",
                    "ReportTaxType": "OUTPUT",
                    "CanApplyToAssets": True,
                    "CanApplyToEquity": True,
                    "CanApplyToExpenses": False,
                    "CanApplyToLiabilities": True,
                    "CanApplyToRevenue": True,
                    "DisplayTaxRate": 15.0,
                    "EffectiveRate": 15.0,
                    "Status": "ACTIVE",
                    "TaxComponents": [{"Name": "GST", "Rate": 15.0, "IsCompound": False, "IsNonRecoverable": False}],
                },
                status="ACTIVE",
                number="OUTPUT2",
            )
        )
        category_id = _guid("category")
        records.append(
            Record(
                tenant_id,
                "TrackingCategories",
                category_id,
                {
                    "TrackingCategoryID": category_id,
                    "Name": "Region",
                    "Status": "ACTIVE",
                    "Options": [
                        {"TrackingOptionID": _guid("opt-n"), "Name": "North", "Status": "ACTIVE"},
                        {"TrackingOptionID": _guid("opt-s"), "Name": "South", "Status": "ARCHIVED"},
                    ],
                },
                status="ACTIVE",
            )
        )
        store.put_records(records)
        store.query(
            "INSERT INTO history(tenant_id, endpoint, record_id, seq, date_ms, changes, user, details)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (tenant_id, "Invoices", _guid("invoice-0"), 1, T0, "Created", "Demo User", "INV-0001 created"),
        )
        attachment_id = _guid("attachment")
        attachment_name = "receipt (copy) [1].csv"
        content = b"date,amount\n2026-02-20,42.60\n"
        store.query(
            "INSERT INTO attachments(attachment_id, tenant_id, endpoint, record_id, file_name, mime_type,"
            " include_online, content, updated_ms) VALUES (?,?,?,?,?,?,?,?,?)",
            (attachment_id, tenant_id, "Invoices", _guid("invoice-0"), attachment_name, "text/csv", 1, content, T0),
        )
        for number in (1, 2):
            store.query(
                "INSERT INTO journals(tenant_id, journal_number, journal_id, journal_date_ms, created_ms, source_id,"
                " source_type, reference) VALUES (?,?,?,?,?,?,?,?)",
                (tenant_id, number, _guid(f"journal-{number}"), T0, T0, _guid("invoice-1"), "ACCREC", None),
            )
            for line_no, (account_id, code, kind, amount) in enumerate(
                ((account_bank, "090", "BANK", 42.6), (account_sales, "200", "REVENUE", -42.6))
            ):
                store.query(
                    "INSERT INTO journal_lines(tenant_id, journal_number, line_no, journal_line_id, account_id,"
                    " account_code, account_type, account_name, description, net_amount, gross_amount, tax_amount,"
                    " tax_type, tax_name, contact_id, date_ms, tracking) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        tenant_id,
                        number,
                        line_no,
                        _guid(f"jl-{number}-{line_no}"),
                        account_id,
                        code,
                        kind,
                        "Account " + code,
                        "",
                        amount,
                        amount,
                        0.0,
                        None,
                        None,
                        contact_active,
                        T0,
                        "[]",
                    ),
                )
    ordered = sorted(invoice_rows)
    return TinyOrg(
        tenant_id=tenant_id,
        contact_active=contact_active,
        contact_archived=contact_archived,
        invoice_ids=tuple(i for _, i in ordered),
        invoice_updated_ms=tuple(u for u, _ in ordered),
        attachment_id=attachment_id,
        attachment_name=attachment_name,
        attachment_bytes=content,
    )


@dataclass
class TinySandbox:
    server: SandboxServer
    org: TinyOrg

    @property
    def info(self) -> dict[str, Any]:
        return self.server.info

    @property
    def base_url(self) -> str:
        return self.server.base_url


@pytest.fixture
def sandbox_server(tmp_path: Path) -> Iterator[TinySandbox]:
    """A sandbox over the tiny organisation, auto-consent on; fresh for every test."""
    state = tmp_path / "sandbox.db"
    store = SandboxStore(state)
    org = build_tiny_org(store)
    store.close()
    with SandboxServer(state, orgs=0, auto_consent=True) as server:
        yield TinySandbox(server, org)


@pytest.fixture
def tokens(sandbox_server: TinySandbox) -> TokenSet:
    return sandbox_server.server.connect()


@pytest.fixture(scope="module")
def generated_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """One generated small organisation (the data side's generator), shared by a test module."""
    if importlib.util.find_spec("sandbox.generate") is None:
        pytest.skip("sandbox.generate is not available")
    state = tmp_path_factory.mktemp("generated") / "sandbox.db"
    with SandboxServer(state, seed=11, orgs=1, size="small", auto_consent=True, tier="advanced") as server:
        yield server

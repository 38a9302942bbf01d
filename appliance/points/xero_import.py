"""Export a point as Xero's own import templates, so data can go back into Xero by hand (no API needed).

Xero's import screens take CSV files with fixed headers (Xero Central: "Import contacts", "Import your chart of
accounts", "Import items", "Import invoices" / "Import bills", "Import manual journals"; the templates are
downloadable from each screen). This module writes one file per template from a point's raw records, streaming
rows (bounded memory): `Contacts.csv`, `ChartOfAccounts.csv`, `Items.csv`, `SalesInvoices.csv`, `Bills.csv`,
`ManualJournals.csv`. Required columns are the ones Xero marks with `*`.

What Xero's import cannot take is left out and said in `export.json`: archived contacts and accounts (import
creates active ones), system accounts (they exist in every organisation), voided and deleted documents, and
payments (imported invoices arrive unpaid; payments are entered or reconciled afterwards).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from appliance.points.index import PointIndex, ProgressCallback
from appliance.xero.dates import is_ms_date, parse_ms_day

CONTACT_COLUMNS = (
    "*ContactName", "AccountNumber", "EmailAddress", "FirstName", "LastName",
    "POAttentionTo", "POAddressLine1", "POAddressLine2", "POAddressLine3", "POAddressLine4",
    "POCity", "PORegion", "POPostalCode", "POCountry",
    "SAAttentionTo", "SAAddressLine1", "SAAddressLine2", "SAAddressLine3", "SAAddressLine4",
    "SACity", "SARegion", "SAPostalCode", "SACountry",
    "PhoneNumber", "FaxNumber", "MobileNumber", "DDINumber", "SkypeName",
    "BankAccountName", "BankAccountNumber", "BankAccountParticulars", "TaxNumber",
    "AccountsReceivableTaxCodeName", "AccountsPayableTaxCodeName", "Website", "LegalName",
    "Discount", "CompanyNumber", "DueDateBillDay", "DueDateBillTerm", "DueDateSalesDay", "DueDateSalesTerm",
    "SalesAccount", "PurchasesAccount", "Currency",
)  # fmt: skip
ACCOUNT_COLUMNS = (
    "*Code", "*Name", "*Type", "*Tax Code", "Description", "Dashboard", "Expense Claims", "Enable Payments",
)  # fmt: skip
ITEM_COLUMNS = (
    "*ItemCode", "ItemName", "PurchasesDescription", "PurchasesUnitPrice", "PurchasesAccount", "PurchasesTaxRate",
    "SalesDescription", "SalesUnitPrice", "SalesAccount", "SalesTaxRate",
)  # fmt: skip
_DOCUMENT_HEAD = (
    "*ContactName", "EmailAddress", "POAddressLine1", "POAddressLine2", "POAddressLine3", "POAddressLine4",
    "POCity", "PORegion", "POPostalCode", "POCountry", "*InvoiceNumber",
)  # fmt: skip
_DOCUMENT_LINE = (
    "*InvoiceDate", "*DueDate", "Total", "InventoryItemCode", "*Description", "*Quantity", "*UnitAmount",
    "Discount", "*AccountCode", "*TaxType", "TaxAmount", "TrackingName1", "TrackingOption1", "TrackingName2",
    "TrackingOption2", "Currency",
)  # fmt: skip
SALES_COLUMNS = (*_DOCUMENT_HEAD, "Reference", *_DOCUMENT_LINE, "BrandingTheme")
BILL_COLUMNS = (*_DOCUMENT_HEAD, *_DOCUMENT_LINE)
JOURNAL_COLUMNS = (
    "*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
    "TrackingName1", "TrackingOption1", "TrackingName2", "TrackingOption2",
)  # fmt: skip

# Xero's account types as its import screen names them (the API's enum on the left).
_ACCOUNT_TYPES = {
    "BANK": "Bank", "CURRENT": "Current Asset", "CURRLIAB": "Current Liability", "DEPRECIATN": "Depreciation",
    "DIRECTCOSTS": "Direct Costs", "EQUITY": "Equity", "EXPENSE": "Expense", "FIXED": "Fixed Asset",
    "INVENTORY": "Inventory", "LIABILITY": "Liability", "NONCURRENT": "Non-current Asset",
    "OTHERINCOME": "Other Income", "OVERHEADS": "Overhead", "PREPAYMENT": "Prepayment", "REVENUE": "Revenue",
    "SALES": "Sales", "TERMLIAB": "Non-current Liability", "PAYGLIABILITY": "PAYG Liability",
    "SUPERANNUATIONEXPENSE": "Superannuation Expense", "SUPERANNUATIONLIABILITY": "Superannuation Liability",
    "WAGESEXPENSE": "Wages Expense",
}  # fmt: skip
FILES = ("Contacts", "ChartOfAccounts", "Items", "SalesInvoices", "Bills", "ManualJournals")


def _day(value: Any) -> str:
    """Xero's import screens read dates as the organisation's locale writes them; day/month/year is what the
    templates show for AU, NZ and UK organisations (US organisations: set the import screen's date format)."""
    if not value or not is_ms_date(value):
        return str(value or "")[:10]
    return parse_ms_day(str(value)).strftime("%d/%m/%Y")


def _address(contact: Mapping[str, Any], kind: str) -> dict[str, str]:
    for address in contact.get("Addresses") or []:
        if address.get("AddressType") == kind:
            return address
    return {}


def _phone(contact: Mapping[str, Any], kind: str) -> str:
    for phone in contact.get("Phones") or []:
        if phone.get("PhoneType") == kind and phone.get("PhoneNumber"):
            return " ".join(p for p in (phone.get("PhoneAreaCode"), phone.get("PhoneNumber")) if p)
    return ""


def _write(path: Path, columns: Iterable[str], rows: Iterator[list[Any]]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        for row in rows:
            writer.writerow(["" if value is None else value for value in row])
            count += 1
    return count


def _contacts(index: PointIndex, skipped: dict[str, int]) -> Iterator[list[Any]]:
    for contact in index.records("Contacts"):
        if contact.get("ContactStatus") != "ACTIVE":
            skipped["archived contacts"] = skipped.get("archived contacts", 0) + 1
            continue
        post, street = _address(contact, "POBOX"), _address(contact, "STREET")
        yield [
            contact.get("Name"), contact.get("AccountNumber"), contact.get("EmailAddress"),
            contact.get("FirstName"), contact.get("LastName"),
            post.get("AttentionTo"), post.get("AddressLine1"), post.get("AddressLine2"), post.get("AddressLine3"),
            post.get("AddressLine4"), post.get("City"), post.get("Region"), post.get("PostalCode"), post.get("Country"),
            street.get("AttentionTo"), street.get("AddressLine1"), street.get("AddressLine2"),
            street.get("AddressLine3"), street.get("AddressLine4"), street.get("City"), street.get("Region"),
            street.get("PostalCode"), street.get("Country"),
            _phone(contact, "DEFAULT"), _phone(contact, "FAX"), _phone(contact, "MOBILE"), _phone(contact, "DDI"),
            contact.get("SkypeUserName"), None, contact.get("BankAccountDetails"), None, contact.get("TaxNumber"),
            contact.get("AccountsReceivableTaxType"), contact.get("AccountsPayableTaxType"), contact.get("Website"),
            contact.get("CompanyNumber") and contact.get("Name"), contact.get("Discount"), contact.get("CompanyNumber"),
            None, None, None, None, None, None, contact.get("DefaultCurrency"),
        ]  # fmt: skip


def _accounts(index: PointIndex, skipped: dict[str, int]) -> Iterator[list[Any]]:
    for account in index.records("Accounts"):
        if account.get("Status") != "ACTIVE" or account.get("SystemAccount"):
            key = "system accounts" if account.get("SystemAccount") else "archived accounts"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        yield [
            account.get("Code"),
            account.get("Name"),
            _ACCOUNT_TYPES.get(str(account.get("Type")), account.get("Type")),
            account.get("TaxType"),
            account.get("Description"),
            "Yes" if account.get("ShowInExpenseClaims") is not None and account.get("AddToWatchlist") else "No",
            "Yes" if account.get("ShowInExpenseClaims") else "No",
            "Yes" if account.get("EnablePaymentsToAccount") else "No",
        ]


def _items(index: PointIndex) -> Iterator[list[Any]]:
    for item in index.records("Items"):
        purchase, sale = item.get("PurchaseDetails") or {}, item.get("SalesDetails") or {}
        yield [
            item.get("Code"), item.get("Name"), item.get("PurchaseDescription"), purchase.get("UnitPrice"),
            purchase.get("AccountCode"), purchase.get("TaxType"), item.get("Description"), sale.get("UnitPrice"),
            sale.get("AccountCode"), sale.get("TaxType"),
        ]  # fmt: skip


def _tracking(line: Mapping[str, Any]) -> list[Any]:
    cells: list[Any] = []
    for entry in (line.get("Tracking") or [])[:2]:
        cells.extend([entry.get("Name"), entry.get("Option")])
    return cells + [None] * (4 - len(cells))


def _documents(index: PointIndex, kind: str, skipped: dict[str, int]) -> Iterator[list[Any]]:
    for invoice in index.records("Invoices"):
        if invoice.get("Type") != kind:
            continue
        if invoice.get("Status") in ("VOIDED", "DELETED"):
            skipped["voided or deleted documents"] = skipped.get("voided or deleted documents", 0) + 1
            continue
        contact = invoice.get("Contact") or {}
        head = [contact.get("Name"), None, None, None, None, None, None, None, None, None, invoice.get("InvoiceNumber")]
        if kind == "ACCREC":
            head.append(invoice.get("Reference"))
        for line in invoice.get("LineItems") or []:
            row = [
                *head, _day(invoice.get("Date")), _day(invoice.get("DueDate")), invoice.get("Total"),
                line.get("ItemCode"), line.get("Description") or "-", line.get("Quantity", 1), line.get("UnitAmount"),
                line.get("DiscountRate"), line.get("AccountCode"), line.get("TaxType"), line.get("TaxAmount"),
                *_tracking(line), invoice.get("CurrencyCode"),
            ]  # fmt: skip
            if kind == "ACCREC":
                row.append(None)
            yield row


def _journals(index: PointIndex, skipped: dict[str, int]) -> Iterator[list[Any]]:
    for journal in index.records("ManualJournals"):
        if journal.get("Status") not in ("POSTED", "DRAFT"):
            skipped["voided or deleted documents"] = skipped.get("voided or deleted documents", 0) + 1
            continue
        for line in journal.get("JournalLines") or []:
            yield [
                journal.get("Narration"), _day(journal.get("Date")), line.get("Description"), line.get("AccountCode"),
                line.get("TaxType"), line.get("LineAmount"), *_tracking(line),
            ]  # fmt: skip


def export_xero_import(index: PointIndex, out: Path, *, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Write the six import templates into the directory `out`; returns the `export.json` summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    present = set(index.endpoints())
    skipped: dict[str, int] = {}
    files: dict[str, Any] = {}
    plan = [
        ("Contacts", "Contacts", CONTACT_COLUMNS, lambda: _contacts(index, skipped)),
        ("ChartOfAccounts", "Accounts", ACCOUNT_COLUMNS, lambda: _accounts(index, skipped)),
        ("Items", "Items", ITEM_COLUMNS, lambda: _items(index)),
        ("SalesInvoices", "Invoices", SALES_COLUMNS, lambda: _documents(index, "ACCREC", skipped)),
        ("Bills", "Invoices", BILL_COLUMNS, lambda: _documents(index, "ACCPAY", skipped)),
        ("ManualJournals", "ManualJournals", JOURNAL_COLUMNS, lambda: _journals(index, skipped)),
    ]
    for number, (name, endpoint, columns, rows) in enumerate(plan, start=1):
        if endpoint in present:
            files[f"{name}.csv"] = {"rows": _write(out / f"{name}.csv", columns, rows())}
        if progress:
            progress("export", number, len(plan))
    summary = {
        "schema_version": 1,
        "format": "xero-import",
        "org_id": index.org_id,
        "point": index.snapshot_id,
        "files": files,
        "left_out": skipped
        | {"payments": "imported invoices arrive unpaid: enter or reconcile payments after the import"},
    }
    (out / "export.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return summary

"""Helpers for the restore tests: a sandbox installation with write scopes, new empty target organisations
connected through the real consent flow, and a small source organisation written through the API (so its
every document obeys Xero's write rules, and its reports are the sandbox's own).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.service import Appliance
from appliance.xero import catalogue
from appliance.xero.client import XeroClient
from sandbox.demo import connect_through_browserless_consent
from sandbox.writes import WRITE_EVERYTHING_SCOPE
from tests.integration.test_backup import Installation, make_installation


@contextlib.contextmanager
def restore_installation(root: Path, *, seed: int = 7, **overrides: Any) -> Iterator[Installation]:
    with make_installation(root, seed=seed, **overrides) as inst:
        inst.settings.apps[0].scopes = WRITE_EVERYTHING_SCOPE.split()
        text = inst.config_path.read_text(encoding="utf-8")
        scopes = "[" + ", ".join(f'"{scope}"' for scope in WRITE_EVERYTHING_SCOPE.split()) + "]"
        lines = [f"scopes = {scopes}" if line.startswith("scopes = ") else line for line in text.splitlines()]
        inst.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Re-consent with the write scopes (Xero adds scopes on a new consent, research §5.1).
        asyncio.run(connect_through_browserless_consent(inst.appliance))
        yield inst


def new_target(inst: Installation, country: str, name: str = "Restored organisation") -> str:
    """A new, empty organisation (as a person creates one in Xero), connected to the appliance."""
    created = inst.sandbox._admin("POST", "orgs", {"country": country, "name": name})
    tenant_id = str(created["created"][0]["tenant_id"])
    asyncio.run(connect_through_browserless_consent(inst.appliance))
    return tenant_id


def client_for(appliance: Appliance) -> XeroClient:
    return appliance._clients()["sandbox"]


async def list_records(appliance: Appliance, tenant_id: str, endpoint: str) -> list[dict[str, Any]]:
    organisation = appliance.organisation(tenant_id)
    client = client_for(appliance)
    records: list[dict[str, Any]] = []
    try:
        async for page in client.iter_records(organisation.grant_id, tenant_id, catalogue.endpoint(endpoint)):
            records.extend(page)
    finally:
        await client.aclose()
    return records


async def report(appliance: Appliance, tenant_id: str, name: str, params: dict[str, str]) -> dict[str, Any]:
    organisation = appliance.organisation(tenant_id)
    client = client_for(appliance)
    try:
        return await client.get_json(organisation.grant_id, tenant_id, f"Reports/{name}", params=params)
    finally:
        await client.aclose()


class _Writer:
    def __init__(self, client: XeroClient, grant_id: str, tenant_id: str) -> None:
        self.client, self.grant_id, self.tenant_id = client, grant_id, tenant_id
        self.count = 0

    async def put(self, path: str, body: dict[str, Any], *, summarize: bool | None = False) -> list[dict[str, Any]]:
        self.count += 1
        answer = await self.client.write_json(
            self.grant_id,
            self.tenant_id,
            "PUT",
            path,
            body,
            idempotency_key=f"fixture-{self.tenant_id}-{self.count}",
            summarize_errors=summarize,
        )
        key = path.split("/")[-1] if "/" in path else path
        elements = answer.get(key) or next(v for v in answer.values() if isinstance(v, list))
        for element in elements:
            assert element.get("StatusAttributeString", "OK") != "ERROR", (path, element)
        return list(elements)

    async def post(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.count += 1
        answer = await self.client.write_json(
            self.grant_id,
            self.tenant_id,
            "POST",
            path,
            body,
            idempotency_key=f"fixture-{self.tenant_id}-{self.count}",
            summarize_errors=None,
        )
        return list(next(v for v in answer.values() if isinstance(v, list)))


async def build_source(appliance: Appliance, tenant_id: str, *, foreign: str | None) -> dict[str, int]:
    """Write a small organisation through the API: contacts, invoices and bills (one foreign-currency), payments
    (one reconciled), a credit note and its allocation, a prepayment and its allocation, spend and receive
    money, a transfer, a manual journal, a voided invoice, a deleted draft, an attachment, an archived contact.
    Returns the number of documents per endpoint."""
    organisation = appliance.organisation(tenant_id)
    client = client_for(appliance)
    w = _Writer(client, organisation.grant_id, tenant_id)
    try:
        accounts = (await client.get_json(w.grant_id, tenant_id, "Accounts"))["Accounts"]
        bank = next(a for a in accounts if a.get("Type") == "BANK")
        revenue = next(a for a in accounts if a.get("Type") == "REVENUE" and a.get("Code"))
        expense = next(a for a in accounts if a.get("Type") == "EXPENSE" and a.get("Code"))
        equity = next(a for a in accounts if a.get("Type") == "EQUITY" and a.get("Code") and not a.get("SystemAccount"))
        savings = (
            await w.put(
                "Accounts",
                {"Code": "095", "Name": "Reserve Account", "Type": "BANK", "BankAccountNumber": "12-3456-7890123-00"},
                summarize=None,
            )
        )[0]
        if foreign:
            await w.put("Currencies", {"Code": foreign}, summarize=None)
        contacts = await w.put(
            "Contacts",
            {"Contacts": [{"Name": f"Fixture Customer {i}"} for i in range(4)] + [{"Name": "Fixture Supplier"}]},
        )
        customer = [c["ContactID"] for c in contacts[:4]]
        supplier = contacts[4]["ContactID"]

        def line(amount: float, account: dict[str, Any]) -> dict[str, Any]:
            return {"Description": "Work", "Quantity": 1, "UnitAmount": amount, "AccountCode": account["Code"]}

        invoices: list[dict[str, Any]] = [
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": customer[i % 3]},
                "Date": f"2026-0{1 + i % 6}-1{i}",
                "DueDate": f"2026-0{1 + i % 6}-2{i}",
                "InvoiceNumber": f"FX-{i:03d}",
                "Status": "AUTHORISED",
                "LineAmountTypes": "Exclusive",
                "LineItems": [line(100.0 + 17.35 * i, revenue)],
            }
            for i in range(8)
        ]
        invoices.append(
            {
                "Type": "ACCPAY",
                "Contact": {"ContactID": supplier},
                "Date": "2026-02-03",
                "DueDate": "2026-03-03",
                "InvoiceNumber": "BILL-1",
                "Status": "AUTHORISED",
                "LineAmountTypes": "Inclusive",
                "LineItems": [line(460.0, expense)],
            }
        )
        invoices.append(
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": customer[0]},
                "Date": "2026-03-05",
                "InvoiceNumber": "FX-VOID",
                "Status": "AUTHORISED",
                "DueDate": "2026-04-05",
                "LineAmountTypes": "Exclusive",
                "LineItems": [line(999.0, revenue)],
            }
        )
        invoices.append(
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": customer[1]},
                "Date": "2026-03-06",
                "InvoiceNumber": "FX-DRAFT",
                "Status": "DRAFT",
                "LineAmountTypes": "Exclusive",
                "LineItems": [line(50.0, revenue)],
            }
        )
        if foreign:
            invoices.append(
                {
                    "Type": "ACCREC",
                    "Contact": {"ContactID": customer[2]},
                    "Date": "2026-04-01",
                    "DueDate": "2026-05-01",
                    "InvoiceNumber": "FX-USD",
                    "Status": "AUTHORISED",
                    "CurrencyCode": foreign,
                    "CurrencyRate": 0.6,
                    "LineAmountTypes": "NoTax",
                    "LineItems": [line(300.0, revenue)],
                }
            )
        created = await w.put("Invoices", {"Invoices": invoices})
        by_number = {i["InvoiceNumber"]: i for i in created}
        await w.put(
            "Payments",
            {
                "Payments": [
                    {
                        "Invoice": {"InvoiceID": by_number[f"FX-{i:03d}"]["InvoiceID"]},
                        "Account": {"AccountID": bank["AccountID"]},
                        "Date": f"2026-0{2 + i % 6}-01",
                        "Amount": by_number[f"FX-{i:03d}"]["Total"],
                        "IsReconciled": i == 0,
                    }
                    for i in range(4)
                ]
                + [
                    {
                        "Invoice": {"InvoiceID": by_number["BILL-1"]["InvoiceID"]},
                        "Account": {"AccountID": bank["AccountID"]},
                        "Date": "2026-02-20",
                        "Amount": 200.0,
                    }
                ]
                + (
                    [
                        {
                            "Invoice": {"InvoiceID": by_number["FX-USD"]["InvoiceID"]},
                            "Account": {"AccountID": bank["AccountID"]},
                            "Date": "2026-04-20",
                            "Amount": 300.0,
                            "CurrencyRate": 0.62,
                        }
                    ]
                    if foreign
                    else []
                )
            },
        )
        credit = (
            await w.put(
                "CreditNotes",
                {
                    "CreditNotes": [
                        {
                            "Type": "ACCRECCREDIT",
                            "Contact": {"ContactID": customer[1]},
                            "Date": "2026-03-01",
                            "CreditNoteNumber": "CN-FX-1",
                            "Status": "AUTHORISED",
                            "LineAmountTypes": "Exclusive",
                            "LineItems": [line(40.0, revenue)],
                        }
                    ]
                },
            )
        )[0]
        await w.put(
            f"CreditNotes/{credit['CreditNoteID']}/Allocations",
            {
                "Allocations": [
                    {
                        "Invoice": {"InvoiceID": by_number["FX-004"]["InvoiceID"]},
                        "Amount": credit["Total"],
                        "Date": "2026-03-02",
                    }
                ]
            },
        )
        transactions = await w.put(
            "BankTransactions",
            {
                "BankTransactions": [
                    {
                        "Type": "RECEIVE",
                        "Contact": {"ContactID": customer[3]},
                        "BankAccount": {"AccountID": bank["AccountID"]},
                        "Date": "2026-01-02",
                        "LineAmountTypes": "NoTax",
                        "Reference": "Capital",
                        "LineItems": [line(5000.0, equity)],
                        "IsReconciled": True,
                    },
                    {
                        "Type": "SPEND",
                        "Contact": {"ContactID": supplier},
                        "BankAccount": {"AccountID": bank["AccountID"]},
                        "Date": "2026-02-14",
                        "LineAmountTypes": "Inclusive",
                        "Reference": "Supplies",
                        "LineItems": [line(123.45, expense)],
                    },
                    {
                        "Type": "RECEIVE-PREPAYMENT",
                        "Contact": {"ContactID": customer[2]},
                        "BankAccount": {"AccountID": bank["AccountID"]},
                        "Date": "2026-02-01",
                        "LineAmountTypes": "NoTax",
                        "Reference": "Deposit",
                        "LineItems": [line(80.0, revenue)],
                    },
                ]
            },
        )
        prepayment_id = next(t["PrepaymentID"] for t in transactions if t.get("PrepaymentID"))
        await w.put(
            f"Prepayments/{prepayment_id}/Allocations",
            {
                "Allocations": [
                    {"Invoice": {"InvoiceID": by_number["FX-005"]["InvoiceID"]}, "Amount": 80.0, "Date": "2026-02-25"}
                ]
            },
        )
        await w.put(
            "BankTransfers",
            {
                "BankTransfers": [
                    {
                        "FromBankAccount": {"AccountID": bank["AccountID"]},
                        "ToBankAccount": {"AccountID": savings["AccountID"]},
                        "Amount": 750.0,
                        "Date": "2026-03-10",
                        "FromIsReconciled": True,
                    }
                ]
            },
            summarize=None,
        )
        await w.put(
            "ManualJournals",
            {
                "ManualJournals": [
                    {
                        "Narration": "Accrual",
                        "Date": "2026-03-31",
                        "Status": "POSTED",
                        "LineAmountTypes": "NoTax",
                        "JournalLines": [
                            {"LineAmount": 210.0, "AccountCode": expense["Code"]},
                            {"LineAmount": -210.0, "AccountCode": equity["Code"]},
                        ],
                    }
                ]
            },
        )
        await w.post(
            f"Invoices/{by_number['FX-VOID']['InvoiceID']}",
            {"Invoices": [{"InvoiceID": by_number["FX-VOID"]["InvoiceID"], "Status": "VOIDED"}]},
        )
        await w.post(
            f"Invoices/{by_number['FX-DRAFT']['InvoiceID']}",
            {"Invoices": [{"InvoiceID": by_number["FX-DRAFT"]["InvoiceID"], "Status": "DELETED"}]},
        )
        w.count += 1
        await client.upload(
            w.grant_id,
            tenant_id,
            f"Invoices/{by_number['FX-001']['InvoiceID']}/Attachments/scan.pdf",
            b"%PDF-1.4 fixture\n" * 50,
            content_type="application/pdf",
            idempotency_key=f"fixture-{tenant_id}-{w.count}",
        )
        await w.post(f"Contacts/{customer[3]}", {"Contacts": [{"ContactID": customer[3], "ContactStatus": "ARCHIVED"}]})
    finally:
        await client.aclose()
    return {"Invoices": len(invoices), "Contacts": 5, "CreditNotes": 1, "BankTransactions": 3}

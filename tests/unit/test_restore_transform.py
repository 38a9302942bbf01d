"""Source record -> write payload (pure): read-only fields dropped, references remapped, statuses by Xero's rules."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.restore import transform
from appliance.restore.transform import Skip, Unresolved

ID_MAP = {
    "contact": {"c-old": "c-new"},
    "account": {"bank-old": "bank-new", "sales-old": "sales-new"},
    "account_code": {"200": "200", "090": "091"},
    "account_code_by_id": {"sales-old": "200", "bank-old": "091"},
    "tax": {"OUTPUT2": "OUTPUT2", "TAX001": "TAX007"},
    "tracking_category": {"cat-old": "cat-new"},
    "tracking_option": {"opt-old": "opt-new"},
    "invoice": {"inv-old": "inv-new"},
    "credit_note": {"cn-old": "cn-new"},
    "branding_theme": {"theme-old": "theme-new"},
}

INVOICE: dict[str, Any] = {
    "InvoiceID": "inv-old",
    "Type": "ACCREC",
    "InvoiceNumber": "INV-0042",
    "Reference": "Job 7",
    "Contact": {"ContactID": "c-old", "Name": "Olivia", "Addresses": []},
    "Date": "/Date(1758585600000+0000)/",
    "DueDate": "/Date(1759795200000+0000)/",
    "Status": "PAID",
    "LineAmountTypes": "Exclusive",
    "CurrencyCode": "USD",
    "CurrencyRate": 0.6123,
    "BrandingThemeID": "theme-old",
    "AmountDue": 0.0,
    "AmountPaid": 115.0,
    "Total": 115.0,
    "UpdatedDateUTC": "/Date(1758885600000+0000)/",
    "HasAttachments": True,
    "Payments": [{"PaymentID": "p"}],
    "LineItems": [
        {
            "LineItemID": "line-old",
            "Description": "Work",
            "Quantity": 1.0,
            "UnitAmount": 100.0,
            "LineAmount": 100.0,
            "TaxAmount": 15.0,
            "AccountCode": "200",
            "AccountID": "sales-old",
            "TaxType": "OUTPUT2",
            "Tracking": [
                {"Name": "Region", "Option": "North", "TrackingCategoryID": "cat-old", "TrackingOptionID": "opt-old"}
            ],
        }
    ],
}


def test_day_is_the_utc_calendar_date() -> None:
    assert transform.day("/Date(1758585600000+0000)/") == "2025-09-23"
    assert transform.day("/Date(1758671999999+1300)/") == "2025-09-23"  # the instant, offset not applied twice
    assert transform.day("2025-09-23T00:00:00") == "2025-09-23"
    assert transform.day(None) is None


def test_invoice_payload_remaps_everything_and_drops_read_only_fields() -> None:
    payload = transform.invoice(INVOICE, ID_MAP)
    assert payload["Contact"] == {"ContactID": "c-new"}
    assert payload["Status"] == "AUTHORISED"  # PAID comes from the payments
    assert payload["Date"] == "2025-09-23"
    assert payload["DueDate"] == "2025-10-07"
    assert payload["InvoiceNumber"] == "INV-0042"
    assert payload["Reference"] == "Job 7"
    assert payload["CurrencyCode"] == "USD"
    assert payload["CurrencyRate"] == 0.6123
    assert payload["BrandingThemeID"] == "theme-new"
    (line,) = payload["LineItems"]
    assert line["AccountCode"] == "200"
    assert "AccountID" not in line
    assert "LineItemID" not in line
    assert line["TaxType"] == "OUTPUT2"
    assert line["TaxAmount"] == 15.0
    assert line["Tracking"] == [
        {"Name": "Region", "Option": "North", "TrackingCategoryID": "cat-new", "TrackingOptionID": "opt-new"}
    ]
    for read_only in ("InvoiceID", "AmountDue", "AmountPaid", "Total", "UpdatedDateUTC", "HasAttachments", "Payments"):
        assert read_only not in payload


@pytest.mark.parametrize(
    ("status", "created"),
    [("VOIDED", "AUTHORISED"), ("DELETED", "DRAFT"), ("SUBMITTED", "SUBMITTED"), ("DRAFT", "DRAFT")],
)
def test_statuses_follow_xero_rules(status: str, created: str) -> None:
    assert transform.invoice({**INVOICE, "Status": status}, ID_MAP)["Status"] == created


def test_unresolved_references_refuse_instead_of_misfiling() -> None:
    with pytest.raises(Unresolved, match="contact"):
        transform.invoice({**INVOICE, "Contact": {"ContactID": "someone-else"}}, ID_MAP)
    line = {**INVOICE["LineItems"][0], "AccountCode": "999", "AccountID": "unknown"}
    with pytest.raises(Unresolved, match="account"):
        transform.invoice({**INVOICE, "LineItems": [line]}, ID_MAP)


def test_tracking_of_a_category_the_target_lacks_is_left_off() -> None:
    tracking = [{"Name": "Project", "Option": "Old", "TrackingCategoryID": "archived", "TrackingOptionID": "x"}]
    line = {**INVOICE["LineItems"][0], "Tracking": tracking}
    payload = transform.invoice({**INVOICE, "LineItems": [line]}, ID_MAP)
    assert "Tracking" not in payload["LineItems"][0]
    assert payload["LineItems"][0]["AccountCode"] == "200"  # the document and its amounts still come back


def test_system_accounts_are_mapped_not_created() -> None:
    with pytest.raises(Skip):
        transform.account({"AccountID": "a", "Code": "610", "Type": "CURRENT", "SystemAccount": "DEBTORS"}, ID_MAP)
    payload = transform.account(
        {
            "AccountID": "a",
            "Code": "095",
            "Name": "Reserve",
            "Type": "BANK",
            "Class": "ASSET",
            "Status": "ACTIVE",
            "BankAccountNumber": "12-34",
            "CurrencyCode": "NZD",
            "TaxType": "TAX001",
            "UpdatedDateUTC": "x",
        },
        ID_MAP,
    )
    assert payload == {
        "Code": "095",
        "Name": "Reserve",
        "Type": "BANK",
        "BankAccountNumber": "12-34",
        "CurrencyCode": "NZD",
        "TaxType": "TAX007",
    }


def test_payment_remaps_document_and_account_and_keeps_reconciled() -> None:
    payment = {
        "PaymentID": "p",
        "Invoice": {"InvoiceID": "inv-old", "InvoiceNumber": "INV-0042"},
        "Account": {"AccountID": "bank-old", "Code": "090"},
        "Date": "/Date(1758844800000+0000)/",
        "Amount": 115.0,
        "CurrencyRate": 0.62,
        "IsReconciled": True,
        "Status": "AUTHORISED",
        "PaymentType": "ACCRECPAYMENT",
        "BankAmount": 70.0,
    }
    payload = transform.payment(payment, ID_MAP)
    assert payload == {
        "Invoice": {"InvoiceID": "inv-new"},
        "Account": {"AccountID": "bank-new"},
        "Date": "2025-09-26",
        "Amount": 115.0,
        "CurrencyRate": 0.62,
        "IsReconciled": True,
    }
    with pytest.raises(Skip):
        transform.payment({**payment, "Status": "DELETED"}, ID_MAP)
    credit = {**payment, "Invoice": None, "CreditNote": {"CreditNoteID": "cn-old"}}
    assert transform.payment(credit, ID_MAP)["CreditNote"] == {"CreditNoteID": "cn-new"}


def test_bank_transactions_skip_transfer_sides_and_unreconcile_what_is_deleted_again() -> None:
    spend = {
        "BankTransactionID": "b",
        "Type": "SPEND",
        "BankAccount": {"AccountID": "bank-old"},
        "Date": "/Date(1758585600000+0000)/",
        "LineAmountTypes": "NoTax",
        "IsReconciled": True,
        "Status": "AUTHORISED",
        "LineItems": [{"LineAmount": 5.0, "AccountCode": "200"}],
    }
    assert transform.bank_transaction(spend, ID_MAP)["IsReconciled"] is True
    assert "IsReconciled" not in transform.bank_transaction({**spend, "Status": "DELETED"}, ID_MAP)
    with pytest.raises(Skip, match="transfer"):
        transform.bank_transaction({**spend, "Type": "SPEND-TRANSFER"}, ID_MAP)


def test_allocations_skip_deleted_ones() -> None:
    record = {
        "Allocations": [
            {"Invoice": {"InvoiceID": "inv-old"}, "Amount": 10.0, "Date": "/Date(1758585600000+0000)/"},
            {"Invoice": {"InvoiceID": "inv-old"}, "Amount": 99.0, "IsDeleted": True},
        ]
    }
    assert transform.allocations(record, ID_MAP) == [
        {"Invoice": {"InvoiceID": "inv-new"}, "Amount": 10.0, "Date": "2025-09-23"}
    ]


def test_contact_keeps_at_most_five_persons_and_drops_derived_fields() -> None:
    contact = {
        "ContactID": "c",
        "Name": "Acme",
        "ContactStatus": "ARCHIVED",
        "IsSupplier": True,
        "Balances": {"AccountsReceivable": {"Outstanding": 5}},
        "HasValidationErrors": False,
        "ContactPersons": [{"FirstName": str(i)} for i in range(7)],
        "SalesDefaultAccountCode": "missing",
        "Phones": [{"PhoneType": "MOBILE", "PhoneNumber": ""}, {"PhoneType": "DEFAULT", "PhoneNumber": "1"}],
    }
    payload = transform.contact(contact, ID_MAP)
    assert payload["Name"] == "Acme"
    assert len(payload["ContactPersons"]) == 5
    assert payload["Phones"] == [{"PhoneType": "DEFAULT", "PhoneNumber": "1"}]
    for derived in ("ContactID", "ContactStatus", "IsSupplier", "Balances", "SalesDefaultAccountCode"):
        assert derived not in payload


def test_fingerprint_is_the_same_from_payload_and_from_the_record_read_back() -> None:
    payload = transform.invoice(INVOICE, ID_MAP)
    read_back = {
        **payload,
        "InvoiceID": "inv-new",
        "Date": "/Date(1758585600000+0000)/",
        "Contact": {"ContactID": "c-new", "Name": "Olivia"},
        "Status": "PAID",
    }
    assert transform.fingerprint("invoices", payload) == transform.fingerprint("invoices", read_back)
    other = {**read_back, "InvoiceNumber": "INV-0043"}
    assert transform.fingerprint("invoices", payload) != transform.fingerprint("invoices", other)
    payment = transform.payment(
        {
            "Invoice": {"InvoiceID": "inv-old"},
            "Account": {"AccountID": "bank-old"},
            "Date": "2025-09-26",
            "Amount": 115.0,
        },
        ID_MAP,
    )
    assert transform.fingerprint("payments", payment) == transform.fingerprint(
        "payments",
        {
            "Invoice": {"InvoiceID": "inv-new", "InvoiceNumber": "X"},
            "Amount": 115.0,
            "Date": "/Date(1758844800000+0000)/",
        },
    )

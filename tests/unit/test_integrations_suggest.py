"""Pre-filling the integrations register from a point's traces (pure)."""

from __future__ import annotations

from appliance.restore.integrations import Trace, suggest, traces_from_records


def test_accounts_contacts_payouts_and_payroll_journals_name_apps() -> None:
    traces = [
        *traces_from_records("Accounts", [{"AccountID": "a1", "Name": "Stripe GBP", "Description": ""}]),
        *traces_from_records("Contacts", [{"ContactID": "c1", "Name": "Dext Software Ltd"}]),
        *traces_from_records(
            "BankTransactions",
            [{"BankTransactionID": "b1", "Contact": {"Name": "Stripe"}, "Reference": "Payout po_123"}],
        ),
        *traces_from_records("ManualJournals", [{"ManualJournalID": "m1", "Narration": "Pay run 14 Nov"}]),
        Trace("contact", "Squarely Plumbing", "c2"),  # a word boundary keeps "Square" out
    ]
    suggestions = suggest(traces)
    assert [s.name for s in suggestions] == ["Stripe", "Payroll", "Dext"]
    stripe = suggestions[0]
    assert stripe.score == 5
    assert {e["record_id"] for e in stripe.evidence} == {"a1", "b1"}
    assert stripe.as_entry()["kind"] == "payments"


def test_apps_already_in_the_register_and_archived_contacts_are_left_out() -> None:
    traces = [
        *traces_from_records("Contacts", [{"ContactID": "c1", "Name": "Hubdoc", "ContactStatus": "ARCHIVED"}]),
        *traces_from_records("Accounts", [{"AccountID": "a1", "Name": "PayPal clearing"}]),
    ]
    assert suggest(traces, known=[{"name": "paypal"}]) == []


def test_evidence_is_capped() -> None:
    traces = [Trace("bank-transaction", f"Shopify payout {n}", f"b{n}") for n in range(20)]
    (shopify,) = suggest(traces, evidence_cap=3)
    assert shopify.score == 40
    assert len(shopify.evidence) == 3

"""The sandbox ledger's double entry, on a real SQLite store; and the attachment files it ships."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from sandbox.assets import FORBIDDEN_IN_FILE_NAMES, make_attachment, pdf_bytes, png_bytes
from sandbox.ledger import Ledger, LedgerError, Line, balances, parse_ms_date, stable_id, to_base
from sandbox.store import SandboxStore, ms_date

TENANT = "00000000-0000-4000-8000-000000000001"
DAY = 86_400_000
D1 = 1_767_225_600_000  # 2026-01-01


def _account(account_id: str, code: str, kind: str, name: str, system: str | None = None) -> dict[str, Any]:
    doc = {"AccountID": account_id, "Code": code, "Type": kind, "Name": name}
    if system:
        doc["SystemAccount"] = system
    return doc


ACCOUNTS = [
    _account("acc-bank", "090", "BANK", "Bank"),
    _account("acc-ar", "610", "CURRENT", "Accounts Receivable", "DEBTORS"),
    _account("acc-ap", "800", "CURRLIAB", "Accounts Payable", "CREDITORS"),
    _account("acc-gst", "820", "CURRLIAB", "GST", "GST"),
    _account("acc-fx", "499", "OVERHEADS", "Realised Currency Gains", "REALISEDCURRENCYGAIN"),
    _account("acc-sales", "200", "REVENUE", "Sales"),
    _account("acc-rent", "469", "OVERHEADS", "Rent"),
]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    store = SandboxStore(tmp_path / "sandbox.db")
    return Ledger(store, TENANT, accounts=ACCOUNTS, tax_names={"OUTPUT": "GST on Income", "INPUT": "GST on Expenses"})


def _invoice(
    kind: str, amounts: list[tuple[float, float, str]], *, lat: str = "Exclusive", rate: float = 1.0
) -> dict[str, Any]:
    return {
        "InvoiceID": f"inv-{kind}-{len(amounts)}-{lat}-{rate}",
        "Type": kind,
        "Date": ms_date(D1),
        "CurrencyRate": rate,
        "LineAmountTypes": lat,
        "Contact": {"ContactID": "contact-1", "Name": "Acme"},
        "LineItems": [
            {
                "AccountCode": code,
                "LineAmount": amount,
                "TaxAmount": tax,
                "TaxType": "OUTPUT" if kind == "ACCREC" else "INPUT",
            }
            for amount, tax, code in amounts
        ],
    }


def _by_code(ledger: Ledger) -> dict[str, int]:
    cents = balances(ledger.store, TENANT)
    return {ledger.by_id[k].code: v for k, v in cents.items()}


def test_post_numbers_journals_in_order_and_stores_lines(ledger: Ledger) -> None:
    bank, sales = ledger.account("090"), ledger.account("200")
    first = ledger.post(source_type="CASHREC", source_id="s1", date_ms=D1, lines=[Line(bank, 1000), Line(sales, -1000)])
    second = ledger.post(source_type="CASHREC", source_id="s2", date_ms=D1, lines=[Line(bank, 250), Line(sales, -250)])
    assert (first, second) == (1, 2)
    rows = list(
        ledger.store.query("SELECT journal_number, line_no, account_code, net_amount FROM journal_lines ORDER BY 1, 2")
    )
    assert rows == [(1, 1, "090", 10.0), (1, 2, "200", -10.0), (2, 1, "090", 2.5), (2, 2, "200", -2.5)]
    created = [c for (c,) in ledger.store.query("SELECT created_ms FROM journals ORDER BY journal_number")]
    assert created == sorted(created)
    assert created[0] < created[1]


def test_unbalanced_journal_is_refused_and_nothing_is_written(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="does not balance"):
        ledger.post(
            source_type="MANJOURNAL",
            source_id="m1",
            date_ms=D1,
            lines=[Line(ledger.account("090"), 1000), Line(ledger.account("200"), -999)],
        )
    assert ledger.store.scalar("SELECT count(*) FROM journals") == 0


def test_unknown_account_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="unknown account"):
        ledger.account("999")


def test_exclusive_sales_invoice_posts_receivable_revenue_and_tax(ledger: Ledger) -> None:
    ledger.post_invoice(_invoice("ACCREC", [(100.0, 10.0, "200"), (50.0, 5.0, "200")]))
    assert _by_code(ledger) == {"610": 16500, "200": -15000, "820": -1500}


def test_inclusive_bill_posts_net_expense_and_recoverable_tax(ledger: Ledger) -> None:
    # Inclusive: LineAmount 110 carries 10 of tax, so 100 goes to the expense.
    ledger.post_invoice(_invoice("ACCPAY", [(110.0, 10.0, "469")], lat="Inclusive"))
    assert _by_code(ledger) == {"469": 10000, "820": 1000, "800": -11000}


def test_credit_note_reverses_the_direction_of_an_invoice(ledger: Ledger) -> None:
    doc = _invoice("ACCRECCREDIT", [(20.0, 2.0, "200")])
    doc["CreditNoteID"] = doc.pop("InvoiceID")
    ledger.post_invoice(doc)
    assert _by_code(ledger) == {"610": -2200, "200": 2000, "820": 200}


def test_foreign_invoice_paid_at_a_better_rate_posts_a_realised_gain(ledger: Ledger) -> None:
    # 100 USD at 0.50 USD per base unit is 200 base; paid when the rate is 0.40: 250 base arrives.
    invoice = _invoice("ACCREC", [(100.0, 0.0, "200")], rate=0.5)
    ledger.post_invoice(invoice)
    payment = {
        "PaymentID": "pay-1",
        "PaymentType": "ACCRECPAYMENT",
        "Date": ms_date(D1 + 30 * DAY),
        "Amount": 100.0,
        "CurrencyRate": 0.4,
        "Account": {"AccountID": "acc-bank"},
        "Invoice": {"InvoiceID": invoice["InvoiceID"], "Contact": {"ContactID": "contact-1"}},
    }
    ledger.post_payment(payment, document_rate=0.5)
    assert _by_code(ledger) == {"200": -20000, "090": 25000, "499": -5000}  # receivable cleared
    assert sum(balances(ledger.store, TENANT).values()) == 0


def test_bill_payment_moves_money_out_of_the_bank(ledger: Ledger) -> None:
    bill = _invoice("ACCPAY", [(100.0, 0.0, "469")])
    ledger.post_invoice(bill)
    ledger.post_payment(
        {
            "PaymentID": "pay-2",
            "PaymentType": "ACCPAYPAYMENT",
            "Date": ms_date(D1 + DAY),
            "Amount": 100.0,
            "Account": {"AccountID": "acc-bank"},
            "Invoice": {"InvoiceID": bill["InvoiceID"]},
        },
        document_rate=1.0,
    )
    assert _by_code(ledger) == {"469": 10000, "090": -10000}


def test_reverse_undoes_everything_posted_for_a_source_and_drafts_post_nothing(ledger: Ledger) -> None:
    invoice = _invoice("ACCREC", [(100.0, 10.0, "200")])
    ledger.post_invoice(invoice)
    number = ledger.reverse(invoice["InvoiceID"], source_type="ACCREC", date_ms=D1 + DAY)
    assert number == 2
    assert balances(ledger.store, TENANT) == {}
    assert ledger.reverse("a-draft-never-posted", source_type="ACCREC", date_ms=D1) == 0


def test_buffered_ledger_writes_on_flush_and_reverses_from_its_buffer(ledger: Ledger) -> None:
    buffered = Ledger(ledger.store, TENANT, buffered=True, accounts=ACCOUNTS, tax_names={})
    invoice = _invoice("ACCREC", [(40.0, 4.0, "200")])
    buffered.post_invoice(invoice)
    assert ledger.store.scalar("SELECT count(*) FROM journals") == 0
    buffered.reverse(invoice["InvoiceID"], source_type="ACCREC", date_ms=D1)
    buffered.flush()
    assert ledger.store.scalar("SELECT count(*) FROM journals") == 2
    assert balances(ledger.store, TENANT) == {}


def test_bank_transaction_spend_and_transfer(ledger: Ledger) -> None:
    ledger.add_account(_account("acc-savings", "091", "BANK", "Savings"))
    ledger.post_bank_transaction(
        {
            "BankTransactionID": "bt-1",
            "Type": "SPEND",
            "Date": ms_date(D1),
            "BankAccount": {"AccountID": "acc-bank"},
            "LineAmountTypes": "Inclusive",
            "LineItems": [{"AccountCode": "469", "LineAmount": 55.0, "TaxAmount": 5.0, "TaxType": "INPUT"}],
        }
    )
    ledger.post_bank_transfer(
        {
            "BankTransferID": "tr-1",
            "Date": ms_date(D1),
            "Amount": 20.0,
            "FromBankAccount": {"AccountID": "acc-bank"},
            "ToBankAccount": {"AccountID": "acc-savings"},
        }
    )
    assert _by_code(ledger) == {"469": 5000, "820": 500, "090": -7500, "091": 2000}


def test_to_base_and_date_parsing() -> None:
    assert to_base(100.0, 0.66) == 15152  # 151.515... rounds to the cent
    assert to_base(12.34, None) == 1234
    assert parse_ms_date("/Date(1539993600000+0000)/") == 1539993600000
    assert parse_ms_date("/Date(1451988985943+1300)/") == 1451988985943
    assert parse_ms_date("/Date(1439434356790)/") == 1439434356790


def test_stable_id_is_a_deterministic_guid() -> None:
    value = stable_id("tenant/12/3")
    assert value == stable_id("tenant/12/3") != stable_id("tenant/12/4")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)


# -- attachment files -------------------------------------------------------------------------
def test_pdf_has_a_correct_cross_reference_table() -> None:
    data = pdf_bytes("Invoice (final) \\ März")
    assert data.startswith(b"%PDF-1.4")
    assert data.rstrip().endswith(b"%%EOF")
    startxref = int(data[data.rindex(b"startxref") + 9 :].split()[0])
    assert data[startxref:].startswith(b"xref")
    offsets = re.findall(rb"(\d{10}) 00000 n ", data)
    for number, offset in enumerate(offsets, start=1):
        assert data[int(offset) :].startswith(f"{number} 0 obj".encode())


def test_png_chunks_have_valid_crcs_and_pixels_decompress() -> None:
    data = png_bytes(7, size=16)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        chunks[kind] = body
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    assert (width, height) == (16, 16)
    assert len(zlib.decompress(chunks[b"IDAT"])) == 16 * (1 + 16 * 3)


def test_attachment_names_are_awkward_but_legal_for_xero() -> None:
    names = {make_attachment(n, "Doc").file_name for n in range(40)}
    assert any("#" in n for n in names)
    assert any("[" in n for n in names)
    assert any(";" in n for n in names)
    assert any(not n.isascii() for n in names)
    assert all(not FORBIDDEN_IN_FILE_NAMES & set(n) for n in names)
    csv = make_attachment(2, "Smith, Jones").content.decode("utf-8-sig")
    assert csv.splitlines()[0] == "Date,Description,Quantity,Amount"
    assert '"Smith, Jones, line 1"' in csv

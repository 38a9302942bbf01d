"""The sandbox's generated data, ledger, reports and time passing, against real SQLite state files.

Direct calls, no HTTP: the server's tests cover the wire. Sizes are "small" (about 2,000 records per org).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30ReadValidator

from sandbox import churn, generate, reports
from sandbox.generate import SIZES, create_empty_org, seed_sandbox
from sandbox.ledger import DAY_MS, balances, to_base, to_cents
from sandbox.store import SandboxStore, doc_hash

# The official spec lives next to the repository (`../shared`), as for the other spec-checking tests.
SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "xero-openapi" / "xero_accounting.yaml"
ANCHOR = 1_780_012_800_000  # 2026-05-29 00:00 UTC, a Friday
SEED = 42

SCHEMA_OF = {
    "Accounts": "Account",
    "Contacts": "Contact",
    "ContactGroups": "ContactGroup",
    "Invoices": "Invoice",
    "CreditNotes": "CreditNote",
    "Payments": "Payment",
    "BatchPayments": "BatchPayment",
    "BankTransactions": "BankTransaction",
    "BankTransfers": "BankTransfer",
    "ManualJournals": "ManualJournal",
    "Items": "Item",
    "TrackingCategories": "TrackingCategory",
    "TaxRates": "TaxRate",
    "Currencies": "Currency",
    "BrandingThemes": "BrandingTheme",
    "PurchaseOrders": "PurchaseOrder",
    "Quotes": "Quote",
    "Overpayments": "Overpayment",
    "Prepayments": "Prepayment",
    "RepeatingInvoices": "RepeatingInvoice",
    "LinkedTransactions": "LinkedTransaction",
    "Users": "User",
    "Budgets": "Budget",
}

# Fields whose string values are enums: a document with a new value there is a new shape to validate.
ENUM_KEYS = frozenset(
    [
        "Status",
        "ContactStatus",
        "Type",
        "PaymentType",
        "LineAmountTypes",
        "AddressType",
        "PhoneType",
        "BankAccountType",
        "Class",
        "SystemAccount",
        "ReportTaxType",
        "OrganisationRole",
        "Unit",
        "DueDateType",
        "SourceTransactionTypeCode",
        "CurrencyCode",
        "DefaultCurrency",
        "TaxNumberType",
        "Version",
        "Timezone",
        "SalesTaxBasis",
        "SalesTaxPeriod",
        "RowType",
    ]
)


@cache
def _components() -> dict[str, Any]:
    return yaml.load(SPEC.read_text(), Loader=yaml.CSafeLoader)["components"]


@cache
def validator(schema_name: str) -> OAS30ReadValidator:
    # Validate against components/schemas with the spec check off: the official spec fails strict spec
    # validation (string defaults on booleans), but its schemas are what clients generate code from.
    return OAS30ReadValidator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": _components()},
        format_checker=OAS30ReadValidator.FORMAT_CHECKER,
    )


def shape(value: Any, path: str = "") -> Iterator[str]:
    """Key paths with value types (and enum values): two documents with the same shape validate alike."""
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}"
            yield f"{child}:{type(item).__name__}"
            if key in ENUM_KEYS and isinstance(item, str):
                yield f"{child}={item}"
            yield from shape(item, child)
    elif isinstance(value, list):
        for item in value:
            yield from shape(item, path + "[]")


def schema_errors(schema_name: str, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(schema_name).iter_errors(doc)]


def all_docs(store: SandboxStore, tenant_id: str) -> dict[tuple[str, str], str]:
    return {
        (endpoint, record_id): doc_hash(json.loads(doc))
        for endpoint, record_id, doc in store.query(
            "SELECT endpoint, record_id, doc FROM records WHERE tenant_id=?", (tenant_id,)
        )
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[SandboxStore, list[str]]:
    """Five small organisations, one per country; AU, GB and CA are multi-currency."""
    store = SandboxStore(tmp_path_factory.mktemp("data") / "sandbox.db")
    return store, seed_sandbox(store, seed=SEED, orgs=5, size="small", anchor_ms=ANCHOR)


@pytest.fixture(scope="module")
def advanced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two small organisations (AU multi-currency, NZ), generated twice with one seed; each copy then advanced
    one day, and three more. Snapshots are taken around each step."""
    result: dict[str, Any] = {}
    for copy in ("a", "b"):
        store = SandboxStore(tmp_path_factory.mktemp(f"advance-{copy}") / "sandbox.db")
        tenants = seed_sandbox(store, seed=SEED + 1, orgs=2, size="small", anchor_ms=ANCHOR)
        generated_truth = {t: store.truth(t) for t in tenants}
        before = {t: all_docs(store, t) for t in tenants}
        items_before = {t: {i["ItemID"] for i in store.iter_records(t, "Items")} for t in tenants}
        attachments_before = {t: _attachment_ids(store, t) for t in tenants}
        clock_after_generation = store.now_ms()
        first_day = churn.advance(store, days=1)
        after_one = {t: all_docs(store, t) for t in tenants}
        clock_after_one = store.now_ms()
        more = churn.advance(store, days=3)
        result[copy] = {
            "store": store,
            "tenants": tenants,
            "generated_truth": generated_truth,
            "before": before,
            "after_one": after_one,
            "first_day": first_day,
            "more": more,
            "items_before": items_before,
            "attachments_before": attachments_before,
            "clock_after_generation": clock_after_generation,
            "clock_after_one": clock_after_one,
            "truth": {t: store.truth(t) for t in tenants},
        }
    return result


def _attachment_ids(store: SandboxStore, tenant_id: str) -> set[str]:
    return {a for (a,) in store.query("SELECT attachment_id FROM attachments WHERE tenant_id=?", (tenant_id,))}


# -- generation ---------------------------------------------------------------------------------
def test_organisations_cycle_countries_with_their_base_currency_and_a_demo_user(generated: Any) -> None:
    store, tenants = generated
    rows = {t: (c, b) for t, c, b in store.query("SELECT tenant_id, country, base_currency FROM orgs")}
    assert [rows[t] for t in tenants] == [("AU", "AUD"), ("NZ", "NZD"), ("GB", "GBP"), ("US", "USD"), ("CA", "CAD")]
    members = {t for (t,) in store.query("SELECT tenant_id FROM user_orgs WHERE user_id=?", (generate.DEMO_USER_ID,))}
    assert members == set(tenants)
    currencies = {t: store.count(t, "Currencies") for t in tenants}
    assert currencies[tenants[0]] == 3  # multi-currency
    assert currencies[tenants[1]] == 1


def test_small_organisations_have_about_two_thousand_records_across_every_endpoint(generated: Any) -> None:
    store, tenants = generated
    for tenant_id in tenants:
        truth = store.truth(tenant_id)
        assert set(SCHEMA_OF) <= set(truth), f"missing endpoints: {set(SCHEMA_OF) - set(truth)}"
        total = sum(v["count"] for k, v in truth.items() if k != "Attachments")
        assert 0.8 * SIZES["small"].approx_records <= total <= 1.2 * SIZES["small"].approx_records
        assert truth["Attachments"]["count"] > 0


def test_every_generated_element_validates_against_the_openapi_schema(generated: Any) -> None:
    store, _ = generated
    seen: set[tuple[str, frozenset[str]]] = set()
    failures: list[str] = []
    validated = 0
    for endpoint, record_id, doc_text in store.query("SELECT endpoint, record_id, doc FROM records ORDER BY endpoint"):
        doc = json.loads(doc_text)
        signature = (endpoint, frozenset(shape(doc)))
        if signature in seen:
            continue
        seen.add(signature)
        validated += 1
        failures += [f"{endpoint} {record_id}: {e}" for e in schema_errors(SCHEMA_OF[endpoint], doc)]
    for (doc_text,) in store.query("SELECT doc FROM orgs"):
        failures += [f"Organisation: {e}" for e in schema_errors("Organisation", json.loads(doc_text))]
    assert not failures, "\n".join(failures[:20])
    assert validated > 500  # many distinct shapes were really checked


def test_indexed_columns_match_the_documents(generated: Any) -> None:
    store, tenants = generated
    rows = store.query(
        "SELECT endpoint, record_id, updated_ms, status, type, contact_id, number, has_attachments, doc FROM records"
        " WHERE tenant_id=? AND endpoint IN ('Invoices','Contacts','BankTransactions','Payments')",
        (tenants[0],),
    )
    for endpoint, record_id, updated_ms, status, kind, contact_id, number, has_attachments, doc_text in rows:
        doc = json.loads(doc_text)
        assert updated_ms == int(doc["UpdatedDateUTC"][6:19])
        assert status == (doc.get("Status") or doc.get("ContactStatus"))
        assert bool(has_attachments) == bool(doc.get("HasAttachments"))
        if endpoint == "Invoices":
            assert (record_id, kind, contact_id, number) == (
                doc["InvoiceID"],
                doc["Type"],
                doc["Contact"]["ContactID"],
                doc["InvoiceNumber"],
            )
    flagged = store.scalar("SELECT count(*) FROM records WHERE tenant_id=? AND has_attachments=1", (tenants[0],))
    owners = store.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT endpoint, record_id FROM attachments WHERE tenant_id=?)", (tenants[0],)
    )
    assert flagged == owners > 0


def test_history_is_before_the_anchor_and_the_clock_starts_there(generated: Any) -> None:
    store, tenants = generated
    latest = store.scalar("SELECT max(updated_ms) FROM records WHERE tenant_id IN (?,?,?,?,?)", tuple(tenants))
    earliest = store.scalar("SELECT min(date_ms) FROM records WHERE tenant_id=? AND endpoint='Invoices'", (tenants[0],))
    assert latest < ANCHOR
    assert ANCHOR - earliest >= 360 * DAY_MS
    assert ANCHOR <= store.now_ms() < ANCHOR + DAY_MS


def test_journal_numbers_follow_creation_time(generated: Any) -> None:
    store, tenants = generated
    created = [c for (c,) in store.query("SELECT created_ms FROM journals WHERE tenant_id=? ORDER BY 1", (tenants[2],))]
    by_number = [
        c
        for (c,) in store.query(
            "SELECT created_ms FROM journals WHERE tenant_id=? ORDER BY journal_number", (tenants[2],)
        )
    ]
    assert by_number == created
    assert len(created) > 1000


# -- the ledger --------------------------------------------------------------------------------
def test_trial_balance_sums_to_zero_to_the_cent_for_every_organisation(generated: Any) -> None:
    store, tenants = generated
    for tenant_id in tenants:
        tb = reports.trial_balance(store, tenant_id)
        assert len(tb) > 20
        assert sum(to_cents(v) for v in tb.values()) == 0
        mid_year = reports.trial_balance(store, tenant_id, ANCHOR - 180 * DAY_MS)
        assert sum(to_cents(v) for v in mid_year.values()) == 0
        unbalanced = store.scalar(
            "SELECT count(*) FROM (SELECT journal_number FROM journal_lines WHERE tenant_id=? GROUP BY journal_number"
            " HAVING sum(CAST(round(net_amount * 100) AS INTEGER)) != 0)",
            (tenant_id,),
        )
        assert unbalanced == 0


def _control_expected(store: SandboxStore, tenant_id: str, receivable: bool) -> tuple[int, int]:
    """What the documents say AR (or AP) should hold, in base cents, and a rounding allowance (one cent per
    foreign-currency document, as each payment is converted separately)."""
    invoice_type, credit_type, over_type = (
        ("ACCREC", "ACCRECCREDIT", "RECEIVE-OVERPAYMENT")
        if receivable
        else (
            "ACCPAY",
            "ACCPAYCREDIT",
            "SPEND-OVERPAYMENT",
        )
    )
    expected = slack = 0
    for doc in store.iter_records(tenant_id, "Invoices"):
        if doc["Type"] == invoice_type and doc["Status"] == "AUTHORISED":
            expected += to_base(doc["AmountDue"], doc["CurrencyRate"])
            slack += doc["CurrencyRate"] != 1.0
    for doc in store.iter_records(tenant_id, "CreditNotes"):
        if doc["Type"] == credit_type and doc["Status"] == "AUTHORISED":
            expected -= to_base(doc["RemainingCredit"], doc["CurrencyRate"])
            slack += doc["CurrencyRate"] != 1.0
    for doc in store.iter_records(tenant_id, "Overpayments"):
        if doc["Type"] == over_type and doc["Status"] == "AUTHORISED":
            expected -= to_cents(doc["RemainingCredit"])
    sign = 1 if receivable else -1
    return sign * expected, slack


def test_receivables_and_payables_in_the_ledger_equal_what_the_documents_say_is_owed(generated: Any) -> None:
    store, tenants = generated
    for tenant_id in tenants:
        accounts = {a.get("SystemAccount"): a["AccountID"] for a in store.iter_records(tenant_id, "Accounts")}
        ledger = balances(store, tenant_id)
        for receivable, system in ((True, "DEBTORS"), (False, "CREDITORS")):
            expected, slack = _control_expected(store, tenant_id, receivable)
            assert abs(ledger.get(accounts[system], 0) - expected) <= slack, (tenant_id, system)


def test_every_posted_document_has_a_journal_and_drafts_and_deleted_ones_have_none(generated: Any) -> None:
    store, tenants = generated
    tenant_id = tenants[1]
    sources = {s for (s,) in store.query("SELECT DISTINCT source_id FROM journals WHERE tenant_id=?", (tenant_id,))}
    for doc in store.iter_records(tenant_id, "Invoices"):
        posted = doc["InvoiceID"] in sources
        assert posted == (doc["Status"] in ("AUTHORISED", "PAID", "VOIDED")), doc["Status"]
    voided = [d["InvoiceID"] for d in store.iter_records(tenant_id, "Invoices") if d["Status"] == "VOIDED"]
    assert voided
    for invoice_id in voided:
        net = store.scalar(
            "SELECT count(*) FROM (SELECT account_id FROM journal_lines l"
            " JOIN journals j USING (tenant_id, journal_number) WHERE j.tenant_id=? AND j.source_id=?"
            " GROUP BY account_id HAVING sum(round(net_amount*100)) != 0)",
            (tenant_id, invoice_id),
        )
        assert net == 0  # the reversal undid every line


# -- reports ------------------------------------------------------------------------------------
def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in report["Reports"][0]["Rows"]:
        out.append(row)
        out.extend(row.get("Rows", []))
    return out


def _value(report: dict[str, Any], label: str, column: int = 1) -> float:
    for row in _rows(report):
        cells = row.get("Cells", [])
        if cells and cells[0]["Value"] == label:
            return float(cells[column]["Value"])
    raise AssertionError(f"no row {label!r}")


def test_reports_validate_against_the_spec_and_agree_with_each_other(generated: Any) -> None:
    store, tenants = generated
    day = ANCHOR - DAY_MS
    iso = "2026-05-28"
    for tenant_id in tenants:
        view = reports.LedgerView(store, tenant_id)
        fy_start = reports.financial_year_start(day, *view.fy_end)
        fy_iso = reports._day(fy_start).isoformat()
        tb = reports.report(store, tenant_id, "TrialBalance", {"date": iso})
        pl = reports.report(store, tenant_id, "ProfitAndLoss", {"fromDate": fy_iso, "toDate": iso})
        bs = reports.report(store, tenant_id, "BalanceSheet", {"date": iso})
        bank = reports.report(store, tenant_id, "BankSummary", {"fromDate": "2026-01-01", "toDate": iso})
        for body in (tb, pl, bs, bank):
            assert schema_errors("ReportWithRows", body) == []
        # Trial balance: debits equal credits, and YTD balances equal the ledger's (P&L since the year start).
        assert _value(tb, "Total", 3) == _value(tb, "Total", 4) > 0
        assert _value(tb, "Total", 1) == _value(tb, "Total", 2)
        # P&L for the year to date is the balance sheet's current year earnings; net assets are equity.
        assert _value(pl, "Net Profit") == _value(bs, "Current Year Earnings")
        assert round(_value(bs, "Total Assets") - _value(bs, "Total Liabilities"), 2) == _value(bs, "Total Equity")
        assert _value(bs, "Net Assets") == _value(bs, "Total Equity")
        # P&L over any period is the movement of the P&L accounts between two trial balances.
        start = reports.parse_date("2026-02-01", default_ms=0)
        end_tb = reports.trial_balance(store, tenant_id, day)
        start_tb = reports.trial_balance(store, tenant_id, start - DAY_MS)
        pl_accounts = {a["AccountID"] for a in view.accounts if reports._is_pl(a)}
        movement = sum(to_cents(end_tb.get(a, 0.0)) - to_cents(start_tb.get(a, 0.0)) for a in pl_accounts)
        feb = reports.report(store, tenant_id, "ProfitAndLoss", {"fromDate": "2026-02-01", "toDate": iso})
        assert to_cents(_value(feb, "Net Profit")) == -movement
        # Bank summary closing balances are the bank accounts' ledger balances.
        for account in view.accounts:
            if account["Type"] == "BANK":
                closing = _value(bank, account["Name"], 4)
                assert to_cents(closing) == to_cents(end_tb.get(account["AccountID"], 0.0))


def test_aged_receivables_and_payables_match_the_open_documents(generated: Any) -> None:
    store, tenants = generated
    tenant_id = tenants[1]  # single currency: Due equals AmountDue exactly
    for kind, name in (("ACCREC", "AgedReceivablesByContact"), ("ACCPAY", "AgedPayablesByContact")):
        contact_id = store.scalar(
            "SELECT contact_id FROM records WHERE tenant_id=? AND endpoint='Invoices' AND type=?"
            " AND status='AUTHORISED' GROUP BY contact_id ORDER BY count(*) DESC, contact_id LIMIT 1",
            (tenant_id, kind),
        )
        body = reports.report(store, tenant_id, name, {"contactId": contact_id, "date": "2026-05-28"})
        assert schema_errors("ReportWithRows", body) == []
        owed = sum(
            to_cents(d["AmountDue"])
            for d in store.iter_records(tenant_id, "Invoices")
            if d["Type"] == kind and d["Status"] == "AUTHORISED" and d["Contact"]["ContactID"] == contact_id
        )
        assert to_cents(_value(body, "Total", 6)) == owed > 0


def test_report_parameters_are_checked(generated: Any) -> None:
    store, tenants = generated
    with pytest.raises(ValueError, match="invalid date"):
        reports.report(store, tenants[0], "TrialBalance", {"date": "28/05/2026"})
    with pytest.raises(ValueError, match="contactId"):
        reports.report(store, tenants[0], "AgedReceivablesByContact", {})
    with pytest.raises(LookupError):
        reports.report(store, tenants[0], "ExecutiveSummary", {})


# -- empty organisations ------------------------------------------------------------------------
@pytest.mark.parametrize("country", ["AU", "NZ", "GB", "US", "CA"])
def test_an_empty_organisation_has_the_chart_tax_rates_and_no_transactions(tmp_path: Path, country: str) -> None:
    store = SandboxStore(tmp_path / "sandbox.db")
    tenant_id = create_empty_org(store, country=country, name=f"Restore target {country}")
    truth = store.truth(tenant_id)
    assert truth["Accounts"]["count"] >= 50
    assert truth["TaxRates"]["count"] >= 4
    assert truth["Currencies"]["count"] == 1
    assert "Invoices" not in truth
    assert store.scalar("SELECT count(*) FROM journals WHERE tenant_id=?", (tenant_id,)) == 0
    systems = {a.get("SystemAccount") for a in store.iter_records(tenant_id, "Accounts")}
    assert {"DEBTORS", "CREDITORS", "GST", "RETAINEDEARNINGS", "ROUNDING"} <= systems
    for endpoint in ("Accounts", "TaxRates", "Currencies", "BrandingThemes", "Users"):
        for doc in store.iter_records(tenant_id, endpoint):
            assert schema_errors(SCHEMA_OF[endpoint], doc) == []


# -- determinism and time passing -----------------------------------------------------------------
def test_same_seed_gives_identical_truth_after_generation_and_after_advance(advanced: dict[str, Any]) -> None:
    a, b = advanced["a"], advanced["b"]
    assert a["tenants"] == b["tenants"]
    assert a["generated_truth"] == b["generated_truth"]
    assert a["truth"] == b["truth"]
    assert a["first_day"] == b["first_day"]
    assert a["truth"] != a["generated_truth"]  # and time did pass


def test_a_weekday_changes_half_a_percent_to_two_percent_of_records(advanced: dict[str, Any]) -> None:
    run = advanced["a"]
    assert (ANCHOR // DAY_MS + 3) % 7 == 4  # the first played day is a Friday
    for tenant_id in run["tenants"]:
        before, after = run["before"][tenant_id], run["after_one"][tenant_id]
        changed = sum(1 for k in after if before.get(k) != after[k]) + sum(1 for k in before if k not in after)
        share = changed / len(before)
        assert 0.005 <= share <= 0.02, share
        assert sum(run["first_day"][tenant_id].values()) > 0


def test_advance_keeps_the_ledger_balanced_and_the_documents_consistent(advanced: dict[str, Any]) -> None:
    run = advanced["a"]
    store = run["store"]
    for tenant_id in run["tenants"]:
        assert sum(to_cents(v) for v in reports.trial_balance(store, tenant_id).values()) == 0
        accounts = {a.get("SystemAccount"): a["AccountID"] for a in store.iter_records(tenant_id, "Accounts")}
        ledger = balances(store, tenant_id)
        expected, slack = _control_expected(store, tenant_id, True)
        assert abs(ledger.get(accounts["DEBTORS"], 0) - expected) <= slack


def test_advance_moves_updated_dates_into_the_played_days_and_validates(advanced: dict[str, Any]) -> None:
    run = advanced["a"]
    store = run["store"]
    for tenant_id in run["tenants"]:
        before = run["before"][tenant_id]
        new_or_changed = 0
        for endpoint, record_id, updated_ms, doc_text in store.query(
            "SELECT endpoint, record_id, updated_ms, doc FROM records WHERE tenant_id=?", (tenant_id,)
        ):
            doc = json.loads(doc_text)
            if before.get((endpoint, record_id)) == doc_hash(doc):
                continue
            new_or_changed += 1
            assert schema_errors(SCHEMA_OF[endpoint], doc) == [], (endpoint, record_id)
            if (endpoint, record_id) not in before and updated_ms is not None:
                assert ANCHOR <= updated_ms < ANCHOR + 4 * DAY_MS
        assert new_or_changed > 0


def test_hard_deletions_leave_no_trace(advanced: dict[str, Any]) -> None:
    run = advanced["a"]
    store = run["store"]
    hard_deleted = sum(summary["hard_deleted"] for summary in (*run["first_day"].values(), *run["more"].values()))
    assert hard_deleted > 0
    vanished = 0
    for tenant_id in run["tenants"]:
        items_now = {i["ItemID"] for i in store.iter_records(tenant_id, "Items")}
        for item_id in run["items_before"][tenant_id] - items_now:
            vanished += 1
            assert store.get_record(tenant_id, "Items", item_id) is None
            assert not store.scalar(
                "SELECT count(*) FROM records WHERE tenant_id=? AND record_id=?", (tenant_id, item_id)
            )
        for attachment_id in run["attachments_before"][tenant_id] - _attachment_ids(store, tenant_id):
            vanished += 1
            assert not store.scalar("SELECT count(*) FROM attachments WHERE attachment_id=?", (attachment_id,))
        flagged = store.scalar("SELECT count(*) FROM records WHERE tenant_id=? AND has_attachments=1", (tenant_id,))
        owners = store.scalar(
            "SELECT count(*) FROM (SELECT DISTINCT endpoint, record_id FROM attachments WHERE tenant_id=?)",
            (tenant_id,),
        )
        assert flagged == owners
    assert vanished > 0


def test_the_business_clock_moves_whole_days(advanced: dict[str, Any]) -> None:
    run = advanced["a"]
    assert ANCHOR <= run["clock_after_generation"] < ANCHOR + DAY_MS
    assert ANCHOR + DAY_MS <= run["clock_after_one"] < ANCHOR + 2 * DAY_MS
    assert ANCHOR + 4 * DAY_MS <= run["store"].now_ms() < ANCHOR + 5 * DAY_MS
    assert churn.next_play_start(run["store"]) == ANCHOR + 4 * DAY_MS


def test_virtual_clock_runs_at_wall_speed_from_where_it_was_set(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path / "sandbox.db")
    store.set_clock(ANCHOR)
    first = store.now_ms()
    store.set_config("clock_wall_ms", store.get_config("clock_wall_ms") - 5_000)  # five wall seconds ago
    assert ANCHOR <= first < ANCHOR + 5_000
    assert ANCHOR + 5_000 <= store.now_ms() < ANCHOR + 60_000

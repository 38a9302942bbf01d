"""Damage rules on hand-made steps: each rule fires on its damage, stays quiet on ordinary activity."""

from __future__ import annotations

from collections import Counter

from appliance.detect.rules import (
    DetailChange,
    DetectConfig,
    Doc,
    Line,
    Step,
    bursts,
    duplicate_key,
    evaluate,
    mapping_shifts,
    near_duplicates,
    payee_changes,
    poisson_tail,
    recoded_lines,
    unusual_mappings,
)

CONFIG = DetectConfig()


def _doc(
    record_id: str, *, contact: str = "c1", day: str = "2026-09-01", total: float = 100.0, status: str = "AUTHORISED"
) -> Doc:
    updated = f"2026-09-02T0{len(record_id) % 10}:00:00Z"
    return Doc("Invoices", record_id, status, contact, day, total, "ref", None, updated)


Pair = tuple[str | None, str | None]


def test_near_duplicates_flag_bulk_copies_of_existing_documents() -> None:
    originals = [_doc(f"o{n}", total=100.0 + n) for n in range(12)]
    copies = [_doc(f"copy{n}", total=100.0 + n) for n in range(12)]
    step = Step(added=copies, existing_keys={duplicate_key(d): [d.record_id] for d in originals})
    [finding] = near_duplicates(step, CONFIG)
    assert finding.severity == "critical"
    assert set(finding.evidence["record_ids"]) == {d.record_id for d in copies}
    assert set(finding.evidence["originals"]) == {d.record_id for d in originals}
    assert finding.evidence["sum"] == f"{sum(100.0 + n for n in range(12)):.2f}"
    assert finding.suspected_start == min(d.updated for d in copies if d.updated)


def test_near_duplicates_ignore_ordinary_new_documents_and_a_single_double_entry() -> None:
    new = [_doc(f"n{n}", total=50.0 + n) for n in range(30)]
    once = [_doc("x1", total=9.0), _doc("x2", total=9.0)]
    assert near_duplicates(Step(added=new + once), CONFIG) == []


def test_recoded_lines_of_approved_and_editable_transactions_are_found_not_voided_ones() -> None:
    # A re-mapping integration rewrites every document the API lets it edit: drafts and submitted ones too
    # (the sandbox's `remap` scenario); a voided document posts nothing.
    def pair(record_id: str, status: str) -> tuple[Doc, Line, Line]:
        before = Line("Invoices", record_id, f"{record_id}-L", "200", "OUTPUT2", amount=10.0)
        after = Line("Invoices", record_id, f"{record_id}-L", "260", "OUTPUT2", amount=10.0)
        return _doc(record_id, status=status), before, after

    step = Step(recoded=[pair(f"i{n}", "AUTHORISED") for n in range(3)] + [pair("d1", "DRAFT"), pair("v1", "VOIDED")])
    [finding] = recoded_lines(step, CONFIG)
    assert finding.severity == "warning"
    assert finding.evidence["record_ids"] == ["d1", "i0", "i1", "i2"]
    assert finding.evidence["moves"] == {"200/OUTPUT2 -> 260/OUTPUT2": 4}
    assert recoded_lines(Step(recoded=[pair("v2", "VOIDED"), pair("v3", "DELETED")]), CONFIG) == []


def test_unusual_mappings_compound_into_a_warning_on_one_pair() -> None:
    history: dict[str, Counter[Pair]] = {f"c{n}": Counter({("200", "OUTPUT2"): 5}) for n in range(10)}
    pairs: Counter[Pair] = Counter({("200", "OUTPUT2"): 1000, ("877", "NONE"): 1})
    odd = [
        (_doc(f"i{n}", contact=f"c{n}"), Line("Invoices", f"i{n}", None, "877", "NONE", amount=5.0)) for n in range(6)
    ]
    usual = [(_doc("u1", contact="c1"), Line("Invoices", "u1", None, "200", "OUTPUT2"))]
    fresh_contact = [(_doc("f1", contact="newbie"), Line("Invoices", "f1", None, "877", "NONE"))]
    step = Step(new_lines=odd + usual + fresh_contact, contact_history=history, pair_history=pairs)
    [finding] = unusual_mappings(step, CONFIG)
    assert finding.severity == "warning"
    assert finding.evidence["record_ids"] == sorted(f"i{n}" for n in range(6))
    few = Step(new_lines=odd[:2], contact_history=history, pair_history=pairs)
    assert [f.severity for f in unusual_mappings(few, CONFIG)] == ["info"]
    one = Step(new_lines=odd[:1], contact_history=history, pair_history=pairs)
    assert unusual_mappings(one, CONFIG) == []
    # A large organisation's day: 3,000 new lines, the pair holds 1 % of its history, so a dozen unusual
    # lines on it is what the volume brings: information, not a warning.
    big_pairs: Counter[Pair] = Counter({("200", "OUTPUT2"): 99_000, ("877", "NONE"): 1_000})
    odd12 = [(_doc(f"i{n}", contact=f"c{n % 10}"), Line("Invoices", f"i{n}", None, "877", "NONE")) for n in range(12)]
    busy = [(_doc(f"u{n}", contact="c1"), Line("Invoices", f"u{n}", None, "200", "OUTPUT2")) for n in range(2988)]
    step = Step(new_lines=odd12 + busy, contact_history=history, pair_history=big_pairs)
    assert [f.severity for f in unusual_mappings(step, CONFIG)] == ["info"]


def test_bursts_are_measured_against_the_organisations_own_baseline() -> None:
    baseline = [{"voided": 2, "changed": 100}, {"voided": 1, "changed": 120}, {"voided": 3, "changed": 90}]
    step = Step(counts={"voided": 60, "changed": 130}, evidence_ids={"voided": [f"v{n}" for n in range(60)]})
    [finding] = bursts(step, baseline, CONFIG)
    assert (finding.rule, finding.fingerprint, finding.severity) == ("burst", "voided", "critical")
    assert len(finding.evidence["record_ids"]) == 60
    assert bursts(Step(counts={"voided": 60}), baseline[:2], CONFIG) == []  # no baseline yet: absolute limit
    # No baseline yet: over 500, or over 2 % of what the organisation holds, whichever is more.
    assert [f.fingerprint for f in bursts(Step(counts={"added": 600}, records=2_000), [], CONFIG)] == ["added"]
    assert bursts(Step(counts={"added": 4_905}, records=500_000), [], CONFIG) == []
    assert [f.severity for f in bursts(Step(counts={"added": 12_000}, records=500_000), [], CONFIG)] == ["critical"]


def _bill(record_id: str, contact: str, account: str, tax: str = "INPUT", amount: float = 100.0) -> tuple[Doc, Line]:
    return _doc(record_id, contact=contact), Line("Invoices", record_id, None, account, tax, amount=amount)


def _coding_habits() -> tuple[dict[str, Counter[Pair]], Counter[Pair]]:
    """Ten suppliers with a habit of their own (400, 408, ... spread), the organisation's mix of pairs: 489/INPUT
    is an ordinary expense pair used by 2 % of lines, 200/OUTPUT is sales."""
    codes = ["400", "408", "412", "425", "429"]
    history: dict[str, Counter[Pair]] = {
        f"s{n}": Counter({(codes[n % 5], "INPUT"): 8, (codes[(n + 1) % 5], "INPUT"): 2}) for n in range(10)
    }
    pairs: Counter[Pair] = Counter({("200", "OUTPUT"): 600, ("489", "INPUT"): 20, **{(c, "INPUT"): 76 for c in codes}})
    return history, pairs


def test_mapping_shifts_flag_several_contacts_moving_to_one_pair_on_one_day() -> None:
    history, pairs = _coding_habits()
    shifted = [_bill(f"api{n}", f"s{n % 3}", "489") for n in range(4)]
    usual = [_bill("u1", "s0", "400"), _bill("u2", "s1", "408")]  # their habits: left out of the cluster
    step = Step(new_lines=shifted + usual, contact_history=history, pair_history=pairs)
    [finding] = mapping_shifts(step, CONFIG)
    assert (finding.rule, finding.severity, finding.fingerprint) == ("mapping_shifts", "warning", "489/INPUT")
    assert finding.evidence["record_ids"] == sorted(f"api{n}" for n in range(4))
    assert finding.evidence["contacts"] == 3
    assert finding.evidence["chance"] <= CONFIG.shift_surprise
    # A contact without any history (a new supplier) has no habit to keep: its bill on the pair counts too.
    fresh = Step(new_lines=[*shifted[:2], _bill("n1", "newbie", "489")], contact_history=history, pair_history=pairs)
    assert [f.evidence["record_ids"] for f in mapping_shifts(fresh, CONFIG)] == [["api0", "api1", "n1"]]


def test_mapping_shifts_stay_quiet_on_a_person_recoding_one_contact_and_on_habits() -> None:
    history, pairs = _coding_habits()
    # One contact coded once to a pair it never used: a person's choice.
    assert (
        mapping_shifts(Step(new_lines=[_bill("x1", "s0", "489")], contact_history=history, pair_history=pairs), CONFIG)
        == []
    )
    # One contact, many bills on the new pair: still one contact, not an integration's mapping.
    one_contact = [_bill(f"x{n}", "s0", "489") for n in range(6)]
    assert mapping_shifts(Step(new_lines=one_contact, contact_history=history, pair_history=pairs), CONFIG) == []
    # Several contacts on their own habitual pair (s0 and s5 both code to 400): ordinary.
    habitual = [_bill(f"h{n}", f"s{5 * (n % 2)}", "400") for n in range(6)]
    assert mapping_shifts(Step(new_lines=habitual, contact_history=history, pair_history=pairs), CONFIG) == []
    # Three bills of three contacts on a pair among a busy day's 300 new lines: what the pair's share predicts.
    busy = [_bill(f"b{n}", f"s{n}", "489") for n in range(3)]
    sales = [
        (_doc(f"sale{n}", contact=f"cust{n}"), Line("Invoices", f"sale{n}", None, "200", "OUTPUT")) for n in range(297)
    ]
    step = Step(new_lines=busy + sales, contact_history=history, pair_history=pairs)
    assert [f for f in mapping_shifts(step, CONFIG) if f.fingerprint == "489/INPUT"] == []


def test_mapping_shifts_gather_a_wrong_tax_type_spread_over_each_supplier_s_own_account() -> None:
    """The integration keeps every supplier's usual account but maps the tax to an exempt type: no pair holds
    more than a bill or two, the tax type holds them all."""
    history, pairs = _coding_habits()
    pairs[("404", "EXEMPTEXPENSES")] = 12  # bank fees: the exempt type is in use, rarely
    codes = ["400", "408", "412", "425", "429"]
    shifted = [_bill(f"tax{n}", f"s{n}", codes[n % 5], tax="EXEMPTEXPENSES") for n in range(4)]
    usual = [_bill(f"u{n}", f"s{n}", codes[n % 5]) for n in range(6)]
    [finding] = mapping_shifts(Step(new_lines=shifted + usual, contact_history=history, pair_history=pairs), CONFIG)
    assert finding.fingerprint == "*/EXEMPTEXPENSES"
    assert finding.evidence["record_ids"] == [f"tax{n}" for n in range(4)]
    assert (finding.evidence["account"], finding.evidence["tax_type"]) == (None, "EXEMPTEXPENSES")
    assert "tax type EXEMPTEXPENSES (any account)" in finding.summary
    # Suppliers whose habit is the exempt type (overseas ones, say) are not a shift.
    exempt = {f"s{n}": Counter({(codes[n % 5], "EXEMPTEXPENSES"): 9}) for n in range(4)}
    step = Step(new_lines=shifted + usual, contact_history={**history, **exempt}, pair_history=pairs)
    assert mapping_shifts(step, CONFIG) == []


def test_a_wrong_pair_is_reported_once_not_again_as_its_tax_type() -> None:
    history, pairs = _coding_habits()
    shifted = [_bill(f"api{n}", f"s{n % 3}", "489", tax="NONE") for n in range(4)]
    findings = mapping_shifts(Step(new_lines=shifted, contact_history=history, pair_history=pairs), CONFIG)
    assert [f.fingerprint for f in findings] == ["489/NONE"]


def test_poisson_tail() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(3, 0.0) == 0.0
    assert abs(poisson_tail(1, 2.0) - (1 - 2.718281828459045**-2)) < 1e-12
    assert 1e-7 < poisson_tail(4, 0.08) < 1e-5
    # A large organisation's volumes: far below the mean is certain, far above it vanishingly rare.
    assert poisson_tail(83, 1116.6) == 1.0
    assert 0.4 < poisson_tail(1117, 1116.6) < 0.6
    assert poisson_tail(1500, 1116.6) < 1e-20


def _contact(record_id: str) -> Doc:
    return Doc("Contacts", record_id, "ACTIVE", record_id, None, None, None, record_id, "2026-09-30T00:05:00Z")


def _payment(record_id: str, contact: str, amount: float) -> Doc:
    return Doc(
        "Payments", record_id, "AUTHORISED", contact, "2026-09-30", amount, "Urgent", None, "2026-09-30T00:09:00Z"
    )


def _bank_change(contact: str) -> DetailChange:
    return DetailChange(
        contact,
        "BankAccountDetails",
        "94-6237-8421404",
        "58-5560-5919561-00",
        name=contact,
        updated="2026-09-30T00:01:00Z",
    )


def test_payee_changes_flag_replaced_bank_details_with_a_new_payee_and_voids() -> None:
    new_payee = _contact("apex")
    bills = [_doc(f"bill{n}", contact="apex", total=5000.0 + n) for n in range(2)]
    payments = [_payment(f"pay{n}", "apex", 5000.0 + n) for n in range(2)]
    ordinary = [_doc("inv9", contact="c9"), _payment("pay9", "c9", 100.0)]  # the day's normal business
    step = Step(
        added=[new_payee, *bills, *payments, *ordinary],
        detail_changes=[_bank_change(f"sup{n}") for n in range(3)],
        evidence_ids={"voided": ["v1", "v2"]},
    )
    [finding] = payee_changes(step, CONFIG)
    assert (finding.rule, finding.severity) == ("payee_changes", "critical")
    assert set(finding.evidence["record_ids"]) == {
        "sup0",
        "sup1",
        "sup2",
        "apex",
        "bill0",
        "bill1",
        "pay0",
        "pay1",
        "v1",
        "v2",
    }
    assert finding.evidence["paid_sum"] == "10001.00"
    assert finding.evidence["details_changed"][0]["before"] == "…1404"  # bank details are kept masked
    assert "94-6237" not in str(finding.evidence)
    assert finding.suspected_start == "2026-09-30T00:01:00Z"


def test_payee_changes_weigh_one_changed_bank_account_as_information() -> None:
    one = Step(detail_changes=[_bank_change("sup0")], evidence_ids={"voided": []})
    assert [f.severity for f in payee_changes(one, CONFIG)] == ["info"]
    two = Step(detail_changes=[_bank_change("sup0"), _bank_change("sup1")])
    assert [f.severity for f in payee_changes(two, CONFIG)] == ["warning"]
    with_void = Step(detail_changes=[_bank_change("sup0")], evidence_ids={"voided": ["v1"]})
    assert [f.severity for f in payee_changes(with_void, CONFIG)] == ["warning"]
    paid_after_change = Step(detail_changes=[_bank_change("sup0")], added=[_payment("p1", "sup0", 900.0)])
    [finding] = payee_changes(paid_after_change, CONFIG)
    assert (finding.severity, finding.evidence["record_ids"]) == ("critical", ["sup0", "p1"])
    # Without a replaced bank account: a new contact paid at once is information, voids alone are not this rule's.
    new_paid = Step(
        added=[_contact("n1"), _doc("b1", contact="n1"), _payment("p2", "n1", 50.0)], evidence_ids={"voided": ["v1"]}
    )
    [finding] = payee_changes(new_paid, CONFIG)
    assert (finding.severity, finding.evidence["record_ids"]) == ("info", ["n1", "b1", "p2"])
    assert payee_changes(Step(added=[_contact("n2")], evidence_ids={"voided": ["v1", "v2"]}), CONFIG) == []


def test_evaluate_orders_by_severity() -> None:
    baseline = [{"voided": 1}] * 3
    step = Step(counts={"voided": 40}, recoded=[])
    assert [f.severity for f in evaluate(step, baseline)] == ["warning"]
    assert evaluate(Step(), baseline) == []

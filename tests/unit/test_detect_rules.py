"""Damage rules on hand-made steps: each rule fires on its damage, stays quiet on ordinary activity."""

from __future__ import annotations

from collections import Counter

from appliance.detect.rules import (
    DetectConfig,
    Doc,
    Line,
    Step,
    bursts,
    duplicate_key,
    evaluate,
    near_duplicates,
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


def test_bursts_are_measured_against_the_organisations_own_baseline() -> None:
    baseline = [{"voided": 2, "changed": 100}, {"voided": 1, "changed": 120}, {"voided": 3, "changed": 90}]
    step = Step(counts={"voided": 60, "changed": 130}, evidence_ids={"voided": [f"v{n}" for n in range(60)]})
    [finding] = bursts(step, baseline, CONFIG)
    assert (finding.rule, finding.fingerprint, finding.severity) == ("burst", "voided", "critical")
    assert len(finding.evidence["record_ids"]) == 60
    assert bursts(Step(counts={"voided": 60}), baseline[:2], CONFIG) == []  # no baseline yet: absolute limit


def test_evaluate_orders_by_severity() -> None:
    baseline = [{"voided": 1}] * 3
    step = Step(counts={"voided": 40}, recoded=[])
    assert [f.severity for f in evaluate(step, baseline)] == ["warning"]
    assert evaluate(Step(), baseline) == []

"""The restore plan (pure): preflight refusals, step order, estimates, and the not-restored list."""

from __future__ import annotations

import pytest

from appliance.restore import plan
from appliance.restore.plan import STEP_NAMES, TargetState, build_plan, floor_calls, preflight

SOURCE = {"OrganisationID": "source-org", "CountryCode": "NZ", "BaseCurrency": "NZD", "SalesTaxBasis": "INVOICE"}


def _target(**overrides: object) -> TargetState:
    values: dict[str, object] = {
        "tenant_id": "target-org",
        "organisation": {"OrganisationID": "target-org", "CountryCode": "NZ", "BaseCurrency": "NZD"},
        "currencies": ["NZD"],
        "counts": {},
        "day_limit": 5000,
    }
    values.update(overrides)
    return TargetState(**values)  # type: ignore[arg-type]


def _codes(problems: list[plan.Problem], severity: str | None = None) -> set[str]:
    return {p.code for p in problems if severity is None or p.severity == severity}


def test_clean_target_has_no_problem() -> None:
    assert (
        preflight(
            source_org_id="source-org",
            source_organisation=SOURCE,
            source_currencies=["NZD"],
            earliest_document_day="2025-01-01",
            target=_target(),
        )
        == []
    )


def test_target_that_is_the_source_is_a_blocker() -> None:
    problems = preflight(
        source_org_id="target-org",
        source_organisation=SOURCE,
        source_currencies=[],
        earliest_document_day=None,
        target=_target(),
    )
    assert _codes(problems, "blocker") == {"target_is_source"}


def test_non_empty_target_is_a_blocker_unless_allowed() -> None:
    busy = _target(counts={"Invoices": 3, "Contacts": 1, "Accounts": 40})
    problems = preflight(
        source_org_id="source-org",
        source_organisation=SOURCE,
        source_currencies=[],
        earliest_document_day=None,
        target=busy,
    )
    (problem,) = problems
    assert problem.code == "target_not_empty"
    assert problem.severity == "blocker"
    assert "3 Invoices" in problem.message
    assert "Accounts" not in problem.message
    allowed = preflight(
        source_org_id="source-org",
        source_organisation=SOURCE,
        source_currencies=[],
        earliest_document_day=None,
        target=busy,
        allow_non_empty=True,
    )
    assert _codes(allowed, "warning") == {"target_not_empty"}
    assert not _codes(allowed, "blocker")


def test_country_and_base_currency_mismatch_block() -> None:
    target = _target(organisation={"CountryCode": "AU", "BaseCurrency": "AUD"})
    problems = preflight(
        source_org_id="source-org",
        source_organisation=SOURCE,
        source_currencies=["NZD"],
        earliest_document_day=None,
        target=target,
    )
    assert _codes(problems, "blocker") == {"country_mismatch", "base_currency_mismatch"}


def test_tax_regime_difference_warns() -> None:
    target = _target(organisation={"CountryCode": "NZ", "BaseCurrency": "NZD", "SalesTaxBasis": "PAYMENTS"})
    problems = preflight(
        source_org_id="source-org",
        source_organisation=SOURCE,
        source_currencies=[],
        earliest_document_day=None,
        target=target,
    )
    assert _codes(problems) == {"tax_regime_mismatch"}
    assert not _codes(problems, "blocker")


def test_missing_currencies_are_named_and_base_is_not() -> None:
    problems = preflight(
        source_org_id="source-org",
        source_organisation=SOURCE,
        source_currencies=["NZD", "USD", "EUR"],
        earliest_document_day=None,
        target=_target(),
    )
    (problem,) = problems
    assert problem.code == "currencies_missing"
    assert "EUR, USD" in problem.message
    assert "NZD" not in problem.message


@pytest.mark.parametrize(("lock", "blocked"), [("/Date(1735689600000+0000)/", True), ("2024-12-31", False)])
def test_lock_date_on_or_after_the_first_document_blocks(lock: str, blocked: bool) -> None:
    target = _target(organisation={"CountryCode": "NZ", "BaseCurrency": "NZD", "PeriodLockDate": lock})
    problems = preflight(
        source_org_id="source-org",
        source_organisation=SOURCE,
        source_currencies=[],
        earliest_document_day="2025-01-01",
        target=target,
    )
    assert ("lock_date" in _codes(problems, "blocker")) is blocked


def test_steps_follow_the_dependency_order() -> None:
    order = list(STEP_NAMES)

    def before(a: str, b: str) -> bool:
        return order.index(a) < order.index(b)

    assert order[:3] == ["currencies", "tax_rates", "accounts"]
    assert before("tracking_categories", "tracking_options")
    assert before("tracking_options", "invoices")
    assert before("contacts", "contact_group_members")
    assert before("contact_groups", "contact_group_members")
    assert before("items", "invoices")
    assert before("invoices", "payments")
    assert before("credit_notes", "allocations")
    assert before("bank_transactions", "allocations")  # prepayments and overpayments are bank transactions
    assert before("batch_payments", "payments")  # a batch payment's payments come with it
    assert before("payments", "voids")
    assert before("allocations", "voids")
    assert order[-2:] == ["attachments", "archive"]
    single = {s.name for s in plan.STEPS if s.batch == 1}
    assert {"accounts", "tax_rates", "currencies", "tracking_categories"} <= single  # one per request (§4.1)
    assert all(s.batch <= 50 for s in plan.STEPS)


def test_estimates_batch_by_50_and_count_days_under_the_day_limit() -> None:
    records = {"accounts": 10, "contacts": 120, "invoices": 2500, "attachments": 7}
    built = build_plan(
        org_id="o",
        snapshot_id="s",
        target=_target(day_limit=1000),
        records_per_step=records,
        bytes_per_step={"invoices": 5_000_000, "attachments": 100},
        problems=[],
    )
    by_name = {step.name: step for step in built.steps}
    assert by_name["accounts"].calls == 10
    assert by_name["contacts"].calls == 3
    assert by_name["invoices"].calls == 50
    assert by_name["attachments"].calls == 7
    assert built.floor_calls == 10 + 3 + 50 + 7 == floor_calls(records)
    assert built.calls > built.floor_calls  # plus the reads around the writes
    assert built.days == pytest.approx(built.calls / 1000, abs=0.01)
    assert built.bytes == 5_000_100
    assert not built.blocked
    assert built.as_dict()["steps"][0]["name"] == "currencies"


def test_not_restored_list_names_each_item_with_a_reason_and_source() -> None:
    items = {item.item: item for item in plan.NOT_RESTORED}
    for needed in (
        "Bank statement lines and reconciliation matches",
        "Users and their permissions",
        "Bank feeds",
        "Connected apps",
        "Branding themes",
        "Budgets",
        "Payroll (employees, pay runs, leave)",
    ):
        assert needed in items
    assert all(item.reason and item.source.startswith("research") for item in plan.NOT_RESTORED)

"""Damage scenarios on a generated organisation, played through the admin API over real HTTP: each changes exactly
the records its ground truth names, and the ledger (trial balance) shows its effect. They mix with `advance`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.ledger import balances
from sandbox.store import SandboxStore
from sandbox.testing import SandboxServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path_factory.mktemp("damage") / "sandbox.db", orgs=1, size="small", seed=7) as sandbox:
        yield sandbox


@pytest.fixture
def tenant(server: SandboxServer) -> str:
    return str(server.info["tenants"][0]["tenant_id"])


def _snapshot(path: Path, tenant_id: str) -> dict[tuple[str, str], str]:
    store = SandboxStore(path)
    try:
        return {
            (endpoint, record_id): doc
            for endpoint, record_id, doc in store.query(
                "SELECT endpoint, record_id, doc FROM records WHERE tenant_id=?", (tenant_id,)
            )
        }
    finally:
        store.close()


def _balances_by_code(path: Path, tenant_id: str) -> dict[str, int]:
    """Net cents per account code: the trial balance in the ledger's own terms."""
    store = SandboxStore(path)
    try:
        codes = {a["AccountID"]: a.get("Code") or a["AccountID"] for a in store.iter_records(tenant_id, "Accounts")}
        return {codes[account]: cents for account, cents in balances(store, tenant_id).items()}
    finally:
        store.close()


def _approval_postings(path: Path, tenant_id: str, source_ids: list[str]) -> dict[str, int]:
    """Net cents per account code of the first journal (the approval) of each source document."""
    store = SandboxStore(path)
    try:
        totals: dict[str, int] = {}
        for source_id in source_ids:
            number = store.scalar(
                "SELECT min(journal_number) FROM journals WHERE tenant_id=? AND source_id=?", (tenant_id, source_id)
            )
            for code, net in store.query(
                "SELECT account_code, net_amount FROM journal_lines WHERE tenant_id=? AND journal_number=?",
                (tenant_id, number),
            ):
                totals[code] = totals.get(code, 0) + round(net * 100)
        return {k: v for k, v in totals.items() if v}
    finally:
        store.close()


def _damage(server: SandboxServer, kind: str, tenant_id: str, **options: Any) -> dict[str, Any]:
    return server._admin("POST", "damage", {"kind": kind, "tenant": tenant_id, **options})  # type: ignore[no-any-return]


def _keys(truth: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["endpoint"], e["id"]) for bucket in ("created", "changed", "voided") for e in truth[bucket]}


def _changed(before: dict[tuple[str, str], str], after: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
    return {key for key, doc in after.items() if before.get(key) != doc}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after) if after.get(k, 0) != before.get(k, 0)
    }


def test_onboarding_duplicates_exactly_what_its_ground_truth_says(server: SandboxServer, tenant: str) -> None:
    before, ledger_before = _snapshot(server.state_path, tenant), _balances_by_code(server.state_path, tenant)
    truth = _damage(server, "onboarding", tenant, months=2, documents="bills", limit=6)
    after, ledger_after = _snapshot(server.state_path, tenant), _balances_by_code(server.state_path, tenant)
    assert len(truth["created"]) == 6
    assert not truth["changed"]
    assert _changed(before, after) == _keys(truth)
    for entry in truth["created"]:
        copy, original = after[("Invoices", entry["id"])], before[("Invoices", entry["duplicates"])]
        assert entry["id"] != entry["duplicates"]
        for field in ('"Contact"', '"Date"', '"Total"', '"Reference"'):
            assert _field(copy, field) == _field(original, field)
    # The ledger carries every duplicated bill twice: the change is exactly the originals' approval postings.
    expected = _approval_postings(server.state_path, tenant, [e["duplicates"] for e in truth["created"]])
    assert _delta(ledger_before, ledger_after) == expected
    assert expected.get("800", 0) < 0  # more owed to suppliers


def _field(doc: str, name: str) -> Any:
    return json.loads(doc)[name.strip('"')]


def test_remap_moves_amounts_between_exactly_two_accounts(server: SandboxServer, tenant: str) -> None:
    before, ledger_before = _snapshot(server.state_path, tenant), _balances_by_code(server.state_path, tenant)
    truth = _damage(server, "remap", tenant, months=6, limit=10)
    after, ledger_after = _snapshot(server.state_path, tenant), _balances_by_code(server.state_path, tenant)
    assert truth["changed"]
    assert _changed(before, after) == _keys(truth)
    source, target = truth["options"]["from_code"], truth["options"]["to_code"]
    for entry in truth["changed"]:
        lines = _field(after[("Invoices", entry["id"])], "LineItems")
        assert all(line["AccountCode"] != source for line in lines)
        assert any(line["AccountCode"] == target for line in lines)
    delta = _delta(ledger_before, ledger_after)
    assert set(delta) == {source, target}
    assert delta[source] == -delta[target] != 0


def test_api_update_compounds_over_advanced_days(server: SandboxServer, tenant: str) -> None:
    # The account the broken mapping uses exists only for this test, so nothing else posts to it.
    _create_account(server, tenant, "898", "Integration clearing")
    ledger_before = _balances_by_code(server.state_path, tenant)
    first = _damage(server, "api_update", tenant, per_day=2, wrong_code="898")
    server.advance(3)
    _damage(server, "api_update", tenant, stop=True)
    server.advance(1)  # stopped: no more
    events = server._admin("GET", "damage", tenant=tenant)["events"]
    plays = [e for e in events if e["kind"] == "api_update" and e["at_ms"] >= first["at_ms"]]
    # The starting day and the advanced days, each once: advancing from the day boundary the clock stands on
    # starts with the starting day, which is not played twice.
    days = [play["options"]["day_ms"] for play in plays]
    assert len(set(days)) == len(days) == len(plays) >= 3, days
    created = [c for play in plays for c in play["created"]]
    assert all(c["account_code"] == "898" for c in created)
    after = _snapshot(server.state_path, tenant)
    for entry in created:
        lines = _field(after[("Invoices", entry["id"])], "LineItems")
        assert [line["AccountCode"] for line in lines] == ["898"]
    # Normal days go on around the damage: churn may void one of the bad bills, which reverses its posting.
    live = [c for c in created if _field(after[("Invoices", c["id"])], "Status") not in ("VOIDED", "DELETED")]
    assert len(live) >= len(created) - 2
    delta = _delta(ledger_before, _balances_by_code(server.state_path, tenant))
    assert delta["898"] == sum(round(c["net"] * 100) for c in live)
    per_day = [len(play["created"]) for play in plays]
    assert per_day == [2] * len(plays)  # still the first week: two a day (one more each further week)


def _create_account(server: SandboxServer, tenant_id: str, code: str, name: str) -> None:
    from sandbox.writes import apply

    store = SandboxStore(server.state_path)
    try:
        status, body = apply(store, tenant_id, "PUT", "/Accounts", {"Code": code, "Name": name, "Type": "EXPENSE"})
    finally:
        store.close()
    assert status == 200, body


def test_compromise_burst_changes_exactly_its_ground_truth(server: SandboxServer, tenant: str) -> None:
    before, ledger_before = _snapshot(server.state_path, tenant), _balances_by_code(server.state_path, tenant)
    truth = _damage(server, "compromise", tenant, edits=2, voids=2, payments=2)
    after, ledger_after = _snapshot(server.state_path, tenant), _balances_by_code(server.state_path, tenant)
    assert _changed(before, after) == _keys(truth)
    assert len(truth["voided"]) == 2
    for entry in truth["voided"]:
        assert _field(after[("Invoices", entry["id"])], "Status") == "VOIDED"
    paid = [e for e in truth["created"] if e["endpoint"] == "Payments"]
    assert len(paid) == 2
    delta = _delta(ledger_before, ledger_after)
    assert delta["090"] == -sum(round(p["amount"] * 100) for p in paid)
    span = max(e["at_ms"] for b in ("created", "changed", "voided") for e in truth[b]) - truth["at_ms"]
    assert span < 3_600_000  # a burst within the hour


def test_damage_cli_and_bad_requests(server: SandboxServer, tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sandbox.cli import main

    code = main(["damage", "onboarding", "--org", tenant, "-o", "months=1", "-o", "limit=1", "--url", server.base_url])
    assert code == 0
    assert '"kind": "onboarding"' in capsys.readouterr().out
    with httpx.Client(base_url=server.base_url) as http:
        response = http.post("/_sandbox/damage", json={"kind": "meteor", "tenant": tenant})
        assert response.status_code == 400
        response = http.post("/_sandbox/damage", json={"kind": "remap", "tenant": tenant, "colour": "red"})
        assert response.status_code == 400

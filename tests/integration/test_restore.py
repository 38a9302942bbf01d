"""End to end: back up a sandbox organisation, restore the point into a new, empty sandbox organisation through
the write API, and verify it with the target's own reports.

Everything is real: the sandbox over loopback HTTP (write side included), OAuth consent for each new target,
restic for the point, SQLite for the journal. Several countries (AU, NZ) and one multi-currency organisation;
a `kill -9` loop and an exhausted day budget check that a restore resumes with the same result and no
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.restore import usecases
from appliance.restore.push import FOUND_AFTER_INTERRUPTION
from appliance.restore.verify import compare_reports, report_params
from tests.integration.restore_support import (
    build_source,
    list_records,
    new_target,
    report,
    restore_installation,
)
from tests.integration.test_backup import Installation

# Endpoints whose every source record a restore writes once (deleted and voided ones included, as such).
COUNTED = (
    "Contacts",
    "Invoices",
    "CreditNotes",
    "ManualJournals",
    "BankTransfers",
    "Items",
    "PurchaseOrders",
    "Quotes",
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Installation, str]]:
    """A generated small AU organisation (multi-currency) with one full backup point."""
    with restore_installation(tmp_path_factory.mktemp("restore")) as inst:
        (outcome,) = asyncio.run(inst.appliance.backup([inst.tenant_id], full=True))
        assert outcome.status == "succeeded"
        yield inst, inst.appliance.points(inst.tenant_id)[-1].snapshot_id


@pytest.fixture(scope="module")
def clean_restore(generated: tuple[Installation, str]) -> tuple[str, str, Any]:
    """One uninterrupted restore of the generated point: (target tenant, restore id, run outcome)."""
    inst, snapshot_id = generated
    source = inst.appliance.organisation(inst.tenant_id)
    target = new_target(inst, source.country or "AU", "Clean restore")
    restore_id, run = _restore(inst, inst.tenant_id, snapshot_id, target)
    return target, restore_id, run


def _restore(inst: Installation, source: str, snapshot_id: str, target: str) -> tuple[str, Any]:
    restore = usecases.start_restore(inst.appliance, source, snapshot_id, target)
    return restore.restore_id, usecases.run_restore(inst.appliance, restore.restore_id)


def _assert_each_record_once(
    inst: Installation, source: str, target: str, endpoints: tuple[str, ...], *, statuses: bool = False
) -> None:
    for endpoint in endpoints:
        ours = asyncio.run(list_records(inst.appliance, source, endpoint))
        theirs = asyncio.run(list_records(inst.appliance, target, endpoint))
        assert len(theirs) == len(ours), f"{endpoint}: {len(theirs)} in the target, {len(ours)} in the source"
        if endpoint == "Invoices":
            key = ("Type", "InvoiceNumber", "Reference", *(("Status",) if statuses else ()))
            assert Counter(tuple(r.get(k) for k in key) for r in theirs) == Counter(
                tuple(r.get(k) for k in key) for r in ours
            ), "invoice numbers, references or statuses differ"


def _tb(inst: Installation, tenant: str, params: dict[str, str]) -> dict[str, Any]:
    return asyncio.run(report(inst.appliance, tenant, "TrialBalance", params))


@pytest.mark.parametrize(("country", "foreign"), [("NZ", "USD"), ("AU", None)])
def test_api_built_organisation_restores_to_the_cent(tmp_path: Path, country: str, foreign: str | None) -> None:
    with restore_installation(tmp_path, seed=21) as inst:
        app = inst.appliance
        source = new_target(inst, country, "Fixture source")
        asyncio.run(build_source(app, source, foreign=foreign))
        (outcome,) = asyncio.run(app.backup([source], full=True))
        assert outcome.status == "succeeded"
        snapshot_id = app.points(source)[-1].snapshot_id
        target = new_target(inst, country)
        plan = usecases.plan_restore(app, source, snapshot_id, target)
        assert not plan.blocked, plan.problems
        restore_id, run = _restore(inst, source, snapshot_id, target)
        assert run.status == "finished", run.error
        refused = [e for e in app.state.restores.elements(restore_id) if e.status in ("refused", "pending", "sent")]
        assert refused == []
        verification = usecases.verify_restore(app, restore_id)
        assert verification.reports_compared == ["TrialBalance", "ProfitAndLoss", "BalanceSheet"]
        assert verification.mismatches == [], verification.markdown()
        assert verification.balanced
        assert verification.restored_share == 1.0
        _assert_each_record_once(
            inst, source, target, ("Contacts", "Invoices", "CreditNotes", "BankTransactions"), statuses=True
        )
        contacts = asyncio.run(list_records(app, target, "Contacts"))
        assert Counter(c["ContactStatus"] for c in contacts)["ARCHIVED"] == 1
        # The attachment went to the same invoice (by number) with the same bytes.
        invoice = next(i for i in asyncio.run(list_records(app, target, "Invoices")) if i["InvoiceNumber"] == "FX-001")
        assert invoice.get("HasAttachments") is True
        # Running it again writes nothing: the restore is finished.
        again = usecases.run_restore(app, restore_id)
        assert again.status == "finished"
        assert again.calls == run.calls


def test_target_that_is_the_source_or_foreign_is_refused(generated: tuple[Installation, str]) -> None:
    inst, snapshot_id = generated
    plan = usecases.plan_restore(inst.appliance, inst.tenant_id, snapshot_id, inst.tenant_id, allow_non_empty=True)
    assert "target_is_source" in {p.code for p in plan.problems if p.severity == "blocker"}
    other_country = new_target(inst, "NZ", "Wrong country")
    plan = usecases.plan_restore(inst.appliance, inst.tenant_id, snapshot_id, other_country)
    assert {"country_mismatch", "base_currency_mismatch"} <= {p.code for p in plan.problems}
    with pytest.raises(Exception, match="refused"):
        usecases.start_restore(inst.appliance, inst.tenant_id, snapshot_id, other_country)


def test_generated_organisation_restore_names_every_exception(
    generated: tuple[Installation, str], clean_restore: tuple[str, str, Any]
) -> None:
    inst, _snapshot_id = generated
    app = inst.appliance
    target, restore_id, run = clean_restore
    assert run.status == "finished", run.error
    elements = app.state.restores.elements(restore_id)
    assert not [e for e in elements if e.status in ("pending", "sent")]
    assert all(e.reason for e in elements if e.status in ("refused", "skipped"))
    verification = usecases.verify_restore(app, restore_id)
    named = {(x.step, x.source_id) for x in verification.exceptions}
    assert {(e.step, e.source_id) for e in elements if e.status == "refused"} <= named
    markdown = verification.markdown()
    assert all(x.source_id in markdown for x in verification.exceptions)
    assert "Bank statement lines" in markdown
    _assert_each_record_once(inst, inst.tenant_id, target, COUNTED)
    # Every written element's target id is distinct: nothing was written twice.
    done = [(e.step, e.target_id) for e in elements if e.status == "done" and e.target_id]
    assert len(done) == len(set(done))


def test_generated_organisation_trial_balance_matches(
    generated: tuple[Installation, str], clean_restore: tuple[str, str, Any]
) -> None:
    inst, _snapshot_id = generated
    _target, restore_id, run = clean_restore
    assert run.status == "finished"
    assert usecases.verify_restore(inst.appliance, restore_id).mismatches == []


def _strongroom(inst: Installation) -> list[str]:
    return [str(Path(sys.executable).parent / "strongroom"), "-q", "-c", str(inst.config_path)]


@pytest.mark.timeout(900)  # 20+ process starts; slower on a loaded machine
def test_kill_9_at_random_moments_then_resume_gives_the_same_result(
    generated: tuple[Installation, str], clean_restore: tuple[str, str, Any]
) -> None:
    """`kill -9` a restore process at 20+ random moments; the resumed restore ends exactly like an uninterrupted
    one: the same journal outcome per step, the same trial balance in the target, and no duplicate."""
    inst, snapshot_id = generated
    app = inst.appliance
    country = app.organisation(inst.tenant_id).country or "AU"
    clean_target, clean_id, clean_run = clean_restore
    assert clean_run.status == "finished"
    killed_target = new_target(inst, country, "Killed restore")
    restore = usecases.start_restore(app, inst.tenant_id, snapshot_id, killed_target)
    app.close()  # the killed processes must not share our connection
    kills = int(os.environ.get("STRONGROOM_KILL_LOOPS", "20"))
    rng = random.Random(20261125)
    command = [*_strongroom(inst), "restore", "resume", restore.restore_id, "--json"]
    database = inst.settings.data_dir / "state.db"

    def progressed() -> int:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
            row = connection.execute(
                "SELECT count(*) FROM restore_elements WHERE restore_id = ? AND status != 'pending'",
                (restore.restore_id,),
            ).fetchone()
        return int(row[0])

    finished_early = 0
    for _ in range(kills):
        before = progressed()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A random moment once the process is writing (its start-up is not an interesting moment to die).
        deadline = time.monotonic() + 60
        while process.poll() is None and progressed() == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if process.poll() is None:
            process.kill()
        else:
            finished_early += 1
        process.wait(timeout=60)
    final = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["status"] == "finished"
    assert finished_early < kills, "no run was ever killed mid-way"
    interrupted = [
        e
        for e in app.state.restores.elements(restore.restore_id)
        if e.attempts > 1 or (e.status == "done" and e.reason == FOUND_AFTER_INTERRUPTION)
    ]
    assert interrupted, "no kill ever landed while a request's outcome was unknown"
    clean_counts = app.state.restores.counts(clean_id)
    killed_counts = app.state.restores.counts(restore.restore_id)
    refused = sorted(
        {(e.step, e.reason) for e in app.state.restores.elements(restore.restore_id) if e.status == "refused"}
    )
    assert killed_counts == clean_counts, f"refused after kills: {refused}"
    _assert_each_record_once(inst, inst.tenant_id, killed_target, (*COUNTED, "BankTransactions", "Payments"))
    point_tb = usecases.point_mirror(app, inst.tenant_id, snapshot_id).document("reports/TrialBalance") or {}
    params = report_params(point_tb)
    assert compare_reports("TrialBalance", _tb(inst, clean_target, params), _tb(inst, killed_target, params)) == []


def test_exhausted_day_budget_and_cancel_pause_and_resume_without_duplicates(
    generated: tuple[Installation, str], clean_restore: tuple[str, str, Any]
) -> None:
    inst, snapshot_id = generated
    app = inst.appliance
    country = app.organisation(inst.tenant_id).country or "AU"
    target = new_target(inst, country, "Day-limited restore")
    inst.sandbox.set_limits(tenant=target, day=60)
    restore = usecases.start_restore(app, inst.tenant_id, snapshot_id, target)
    first = usecases.run_restore(app, restore.restore_id)
    assert first.status == "paused"
    assert first.resume_after is not None
    assert app.state.restores.get(restore.restore_id).status == "paused"
    written = sum(c.get("done", 0) for c in first.counts.values())
    assert written > 0
    inst.sandbox.set_limits(tenant=target, day=100_000)  # Xero's day window reset
    cancel = threading.Event()

    def cancel_during_payments(step: str, done: int, total: int) -> None:
        if step == "payments" and done > 0:
            cancel.set()

    assert first.counts["payments"].get("pending", 0) > 100
    second = usecases.run_restore(app, restore.restore_id, progress=cancel_during_payments, cancel=cancel)
    assert second.status == "cancelled"
    assert app.state.restores.get(restore.restore_id).status == "cancelled"
    payments = second.counts["payments"]
    assert 0 < payments.get("done", 0) + payments.get("skipped", 0) < sum(payments.values())
    third = usecases.run_restore(app, restore.restore_id)  # an explicit resume continues a cancelled restore
    assert third.status == "finished", third.error
    assert third.counts == app.state.restores.counts(clean_restore[1])  # the same result as an uninterrupted run
    _assert_each_record_once(inst, inst.tenant_id, target, COUNTED)


def test_cli_plan_status_verify_and_checklist(generated: tuple[Installation, str]) -> None:
    inst, snapshot_id = generated
    app = inst.appliance
    target = new_target(inst, app.organisation(inst.tenant_id).country or "AU", "CLI restore")
    app.close()
    cli = _strongroom(inst)
    plan = subprocess.run(
        [*cli, "restore", "plan", inst.tenant_id, snapshot_id[:8], "--target", target, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["schema_version"] == 1
    assert planned["blocked"] is False
    assert [s["name"] for s in planned["steps"]][:3] == ["currencies", "tax_rates", "accounts"]
    assert any(item["item"].startswith("Bank statement lines") for item in planned["not_restored"])
    run = subprocess.run(
        [*cli, "restore", "run", inst.tenant_id, snapshot_id, "--target", target, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    restore_id = json.loads(run.stdout)["restore_id"]
    status = json.loads(
        subprocess.run(
            [*cli, "restore", "status", restore_id, "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert status["restores"][0]["status"] == "finished"
    items = json.loads(
        subprocess.run(
            [*cli, "restore", "checklist", restore_id, "--tick", "1", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["items"]
    assert items[0]["status"] == "done"
    assert items[1]["status"] == "todo"
    assert any(i["kind"] == "automatic" and i["key"] == "auto:invoices" and i["status"] == "done" for i in items)
    again = json.loads(
        subprocess.run(
            [*cli, "restore", "checklist", restore_id, "--json"], capture_output=True, text=True, check=True
        ).stdout
    )["items"]
    assert again[0]["status"] == "done"  # the tick was persisted
    verify = subprocess.run([*cli, "restore", "verify", restore_id, "--json"], capture_output=True, text=True)
    report_json = json.loads(verify.stdout)
    assert verify.returncode == (0 if report_json["balanced"] else 3)
    assert report_json["reports_compared"] == ["TrialBalance", "ProfitAndLoss", "BalanceSheet"]


def test_mission_scenario_duplicate_bills_then_restore_of_the_last_clean_point(tmp_path: Path) -> None:
    """A clean organisation, a bad onboarding that duplicates its bills, the damage seen between the points,
    and the last clean point restored into a new organisation: no duplicate bill, and the trial balance equals
    the clean point's to the cent."""
    with restore_installation(tmp_path, seed=22) as inst:
        app = inst.appliance
        source = new_target(inst, "AU", "Mission source")
        asyncio.run(build_source(app, source, foreign=None))
        (clean,) = asyncio.run(app.backup([source], full=True))
        assert clean.status == "succeeded"
        truth = inst.sandbox._admin(
            "POST", "damage", {"kind": "onboarding", "tenant": source, "documents": "bills", "months": 24}
        )
        assert truth
        (damaged,) = asyncio.run(app.backup([source]))
        assert damaged.status == "succeeded"
        clean_point, damaged_point = (p.snapshot_id for p in app.points(source)[-2:])

        def bills(snapshot_id: str) -> list[dict[str, Any]]:
            mirror = usecases.point_mirror(app, source, snapshot_id)
            return [r for r in mirror.iter_records("Invoices") if r.get("Type") == "ACCPAY"]

        assert len(bills(damaged_point)) > len(bills(clean_point))  # what detection sees between the points
        target = new_target(inst, "AU")
        restore_id, run = _restore(inst, source, clean_point, target)
        assert run.status == "finished", run.error
        restored_bills = [r for r in asyncio.run(list_records(app, target, "Invoices")) if r.get("Type") == "ACCPAY"]
        assert len(restored_bills) == len(bills(clean_point))
        verification = usecases.verify_restore(app, restore_id)
        assert verification.balanced, verification.markdown()

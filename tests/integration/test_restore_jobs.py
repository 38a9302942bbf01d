"""Restore and export as jobs: the daemon (a subprocess under a real NOTIFY_SOCKET) runs them, the CLI enqueues
and watches them, and with no daemon the CLI runs the same job in-process.

Everything is real: the sandbox over loopback HTTP (write side included), restic, SQLite, the `strongroom`
CLI and daemon in subprocesses. The source organisation is written through the API, so a restore of it
matches the point's reports to the cent.
"""

from __future__ import annotations

import asyncio
import csv
import filecmp
import json
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyrage import decrypt_file, x25519

from appliance.points.usecases import PointsService
from appliance.restore import usecases
from appliance.store import JobState
from appliance.store.fleet import Fleet
from tests.integration.restore_support import build_source, list_records, new_target, restore_installation
from tests.integration.test_backup import Installation
from tests.integration.test_daemon import Systemd, wait_until

ONCE = ("Contacts", "Invoices", "CreditNotes", "BankTransactions", "ManualJournals", "BankTransfers", "Payments")


def _quiet_schedule() -> str:
    """A backup window twelve hours away: the daemon runs only the jobs the tests queue."""
    start = datetime.now(UTC) + timedelta(hours=12)
    end = start + timedelta(minutes=1)
    return (
        f'\n[schedule]\nwindow_start = "{start:%H:%M}"\nwindow_end = "{end:%H:%M}"\ntick_seconds = 0.3\n'
        "retention_every_days = 0\ncheck_every_days = 0\nstop_grace_seconds = 60\n"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Installation, str, str]]:
    """An installation, an organisation written through the API and one full backup point of it."""
    root = tmp_path_factory.mktemp("restore-jobs")
    with restore_installation(root, seed=31) as inst:
        with inst.config_path.open("a", encoding="utf-8") as handle:
            handle.write(_quiet_schedule())
        app = inst.appliance
        source = new_target(inst, "AU", "Job source")
        asyncio.run(build_source(app, source, foreign="USD"))
        (outcome,) = asyncio.run(app.backup([source], full=True))
        assert outcome.status == "succeeded", outcome.error
        yield inst, source, app.points(source)[-1].snapshot_id


@pytest.fixture(scope="module")
def daemon(world: tuple[Installation, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Systemd]:
    inst, _source, _snapshot = world
    systemd = Systemd(tmp_path_factory.mktemp("systemd"), inst.config_path)
    try:
        systemd.wait_for(lambda m: m.get("READY") == "1")
        yield systemd
        assert systemd.stop() == 0
    finally:
        systemd.close()
        inst.sandbox.set_faults()
    assert inst.appliance.state.locks.list() == []


def _cli(inst: Installation, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "strongroom"), "-q", "-c", str(inst.config_path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _assert_restored_once_to_the_cent(inst: Installation, source: str, target: str, restore_id: str) -> None:
    app = inst.appliance
    elements = app.state.restores.elements(restore_id)
    assert [e for e in elements if e.status in ("refused", "pending", "sent")] == []
    for endpoint in ONCE:
        ours = asyncio.run(list_records(app, source, endpoint))
        theirs = asyncio.run(list_records(app, target, endpoint))
        assert len(theirs) == len(ours), f"{endpoint}: {len(theirs)} in the target, {len(ours)} in the source"
    invoices = asyncio.run(list_records(app, target, "Invoices"))
    numbers = Counter(i["InvoiceNumber"] for i in invoices)
    assert max(numbers.values()) == 1, numbers
    report = usecases.verify_restore(app, restore_id)
    assert report.balanced, report.markdown()


def _new_restore(inst: Installation, source: str, snapshot_id: str, name: str) -> tuple[str, str]:
    target = new_target(inst, "AU", name)
    restore = usecases.start_restore(inst.appliance, source, snapshot_id, target)
    return target, restore.restore_id


def test_without_a_daemon_the_export_job_runs_in_process_and_can_be_encrypted(
    world: tuple[Installation, str, str], tmp_path: Path
) -> None:
    inst, source, _snapshot_id = world
    assert Fleet(inst.appliance.state.db).running_daemon() is None  # runs before the daemon's tests start one
    here = _cli(inst, "export", source, "latest", "--out", str(tmp_path / "here"), "--json")
    assert here.returncode == 0, here.stderr
    job = inst.appliance.state.jobs.list(kind="export")[-1]
    assert job.state is JobState.DONE
    assert job.params["out"] == str((tmp_path / "here").resolve())
    _direct_export(inst, source, tmp_path / "direct")
    _same_tree(tmp_path / "here", tmp_path / "direct")

    identity = x25519.Identity.generate()
    archive = tmp_path / "export.tar.age"
    sealed = _cli(inst, "export", source, "latest", "--out", str(archive), "--age-recipient", str(identity.to_public()))
    assert sealed.returncode == 0, sealed.stderr
    assert archive.read_bytes().startswith(b"age-encryption.org/v1")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []  # no clear staging left
    decrypt_file(str(archive), str(tmp_path / "export.tar"), [identity])
    with tarfile.open(tmp_path / "export.tar") as tar:
        tar.extractall(tmp_path / "opened", filter="data")
    _same_tree(tmp_path / "opened" / "export", tmp_path / "direct")
    templates = tmp_path / "xero-import"
    imported = _cli(inst, "export", source, "latest", "--out", str(templates), "--format", "xero-import")
    assert imported.returncode == 0, imported.stderr
    with PointsService(inst.appliance).open(source, "latest") as index:
        invoices = [i for i in index.records("Invoices") if i.get("Status") not in ("VOIDED", "DELETED")]
        sales_lines = sum(len(i.get("LineItems") or []) for i in invoices if i["Type"] == "ACCREC")
        bill_lines = sum(len(i.get("LineItems") or []) for i in invoices if i["Type"] == "ACCPAY")
        active = [c for c in index.records("Contacts") if c.get("ContactStatus") == "ACTIVE"]

    def rows(name: str) -> list[dict[str, str]]:
        with (templates / name).open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    assert len(rows("SalesInvoices.csv")) == sales_lines
    assert len(rows("Bills.csv")) == bill_lines
    assert sorted(r["*ContactName"] for r in rows("Contacts.csv")) == sorted(c["Name"] for c in active)
    assert all(r["*Code"] and r["*Type"] for r in rows("ChartOfAccounts.csv"))
    assert all(r["*InvoiceDate"].count("/") == 2 for r in rows("SalesInvoices.csv"))
    assert "payments" in json.loads((templates / "export.json").read_text())["left_out"]


def test_the_daemon_runs_an_enqueued_restore_job_to_the_end(
    world: tuple[Installation, str, str], daemon: Systemd
) -> None:
    inst, source, snapshot_id = world
    app = inst.appliance
    target, restore_id = _new_restore(inst, source, snapshot_id, "Daemon restore")
    job = usecases.enqueue_restore(app, restore_id)  # what the TUI does
    assert (job.kind, job.org_id, job.params) == ("restore", target, {"restore_id": restore_id})
    assert usecases.enqueue_restore(app, restore_id).job_id == job.job_id  # never two jobs for one restore
    steps_seen: set[str] = set()

    def ended() -> bool:
        current = app.state.jobs.get(job.job_id)
        if current.progress.get("phase") == "restore":
            steps_seen.add(str(current.progress.get("step")))
        return current.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    inst.sandbox.set_faults(latency_ms=60)  # a few seconds long, so its live progress can be watched
    try:
        wait_until(ended, timeout=300, what="the restore job to end")
    finally:
        inst.sandbox.set_faults()
    final = app.state.jobs.get(job.job_id)
    assert final.state is JobState.DONE, final.error
    assert final.result["status"] == "finished"
    assert final.result["restore_id"] == restore_id
    assert steps_seen, "no live progress was ever recorded"
    status = usecases.status(app, restore_id)
    assert status["status"] == "finished"
    assert status["job"]["job_id"] == job.job_id
    _assert_restored_once_to_the_cent(inst, source, target, restore_id)


def test_cancel_mid_way_then_resume_ends_with_no_duplicates(
    world: tuple[Installation, str, str], daemon: Systemd
) -> None:
    inst, source, snapshot_id = world
    app = inst.appliance
    target, restore_id = _new_restore(inst, source, snapshot_id, "Cancelled restore")
    inst.sandbox.set_faults(latency_ms=250)  # slow enough to land the cancel between two batches
    try:
        job = usecases.enqueue_restore(app, restore_id)

        def writing() -> bool:
            assert app.state.jobs.get(job.job_id).state in (JobState.QUEUED, JobState.RUNNING), "it ended first"
            return sum(c.get("done", 0) for c in app.state.restores.counts(restore_id).values()) >= 3

        wait_until(writing, timeout=120, what="the restore to be writing")
        cancelled = _cli(inst, "restore", "cancel", restore_id, "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        wait_until(lambda: app.state.jobs.get(job.job_id).state is JobState.CANCELLED, timeout=120, what="the cancel")
    finally:
        inst.sandbox.set_faults()
    assert app.state.restores.get(restore_id).status == "cancelled"
    counts = app.state.restores.counts(restore_id)
    written = sum(c.get("done", 0) for c in counts.values())
    left = sum(c.get("pending", 0) for c in counts.values())
    assert written > 0, counts
    assert left > 0, counts  # it stopped mid-way
    resumed = _cli(inst, "restore", "resume", restore_id, "--json")  # queued for the daemon and watched
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "finished"
    jobs = usecases.restore_jobs(app, restore_id)
    assert [j.state for j in jobs] == [JobState.CANCELLED, JobState.DONE]
    _assert_restored_once_to_the_cent(inst, source, target, restore_id)


def test_an_exhausted_day_budget_requeues_the_job_at_its_checkpoint(
    world: tuple[Installation, str, str], daemon: Systemd
) -> None:
    inst, source, snapshot_id = world
    app = inst.appliance
    target, restore_id = _new_restore(inst, source, snapshot_id, "Day-limited job")
    inst.sandbox.set_limits(tenant=target, day=25)  # the restore needs more: it pauses mid-way
    job = usecases.enqueue_restore(app, restore_id)

    def requeued() -> bool:
        current = app.state.jobs.get(job.job_id)
        assert current.state in (JobState.QUEUED, JobState.RUNNING), (current.state, current.error, current.result)
        return current.state is JobState.QUEUED and current.attempts == 1

    wait_until(requeued, timeout=300, what="the paused job to be back in the queue")
    paused = app.state.jobs.get(job.job_id)
    assert paused.not_before is not None
    assert paused.not_before > time.time()
    assert paused.progress["phase"] == "paused"
    restore = app.state.restores.get(restore_id)
    assert restore.status == "paused"
    assert sum(c.get("done", 0) for c in app.state.restores.counts(restore_id).values()) > 0
    inst.sandbox.set_limits(tenant=target, day=100_000)  # Xero's day window reset
    resumed = _cli(inst, "restore", "resume", restore_id, "--json")  # a person resumes now
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "finished"
    _assert_restored_once_to_the_cent(inst, source, target, restore_id)


def _same_tree(left: Path, right: Path) -> None:
    names = sorted(p.relative_to(left).as_posix() for p in left.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(right).as_posix() for p in right.rglob("*") if p.is_file())
    assert "export.json" in names
    assert "Invoices.csv" in names
    _match, mismatch, errors = filecmp.cmpfiles(left, right, names, shallow=False)
    assert (mismatch, errors) == ([], []), (mismatch, errors)


def _direct_export(inst: Installation, source: str, out: Path) -> dict[str, Any]:
    return PointsService(inst.appliance).export(source, "latest", out)


def test_an_export_job_in_the_daemon_writes_the_same_files_as_in_process(
    world: tuple[Installation, str, str], daemon: Systemd, tmp_path: Path
) -> None:
    inst, source, _snapshot_id = world
    by_daemon = _cli(inst, "export", source, "latest", "--out", str(tmp_path / "daemon"), "--json")
    assert by_daemon.returncode == 0, by_daemon.stderr
    summary = json.loads(by_daemon.stdout)
    assert summary["files"]["Invoices.csv"]["rows"] > 0
    jobs = inst.appliance.state.jobs.list(kind="export")
    assert jobs
    assert jobs[-1].state is JobState.DONE
    assert jobs[-1].owner_pid == daemon.process.pid  # the daemon ran it, not the CLI
    _direct_export(inst, source, tmp_path / "direct")
    _same_tree(tmp_path / "daemon", tmp_path / "direct")


def test_sigterm_mid_restore_requeues_the_job_and_a_new_daemon_finishes_it(
    world: tuple[Installation, str, str], daemon: Systemd, tmp_path: Path
) -> None:
    """Runs last: it stops the module's daemon."""
    inst, source, snapshot_id = world
    app = inst.appliance
    target, restore_id = _new_restore(inst, source, snapshot_id, "Stopped restore")
    inst.sandbox.set_faults(latency_ms=250)
    try:
        job = usecases.enqueue_restore(app, restore_id)
        wait_until(
            lambda: sum(c.get("done", 0) for c in app.state.restores.counts(restore_id).values()) >= 3,
            timeout=120,
            what="the restore to be writing",
        )
        assert daemon.stop() == 0
    finally:
        inst.sandbox.set_faults()
    stopped = app.state.jobs.get(job.job_id)
    assert stopped.state is JobState.QUEUED, (stopped.state, stopped.error)
    restore = app.state.restores.get(restore_id)
    assert (restore.status, restore.error) == ("paused", "stopped at a checkpoint; resumable")
    assert app.state.locks.list() == []
    again = Systemd(tmp_path, inst.config_path)
    try:
        again.wait_for(lambda m: m.get("READY") == "1")
        wait_until(lambda: app.state.jobs.get(job.job_id).state is JobState.DONE, timeout=300, what="the resume")
        assert again.stop() == 0
    finally:
        again.close()
    assert app.state.jobs.get(job.job_id).attempts == 2
    _assert_restored_once_to_the_cent(inst, source, target, restore_id)

"""Backup points end to end: real sandbox, real OAuth, real backups into real restic, then open, query, diff,
export and detect damage, checked against the sandbox's own ground truth.

One module-scoped installation: a full backup of a small generated organisation, one business day of
`advance`, an incremental backup. The damage tests at the end stage damage by writing records straight into
the sandbox store (`SandboxStore.put_records`, moving UpdatedDateUTC as Xero would), because the sandbox's
damage scenarios (`sandbox/damage.py`) did not exist yet; they add points after the two the other tests use,
which refer to their points by snapshot id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.detect.rules import DetectConfig
from appliance.errors import ResticFailed
from appliance.points import export as export_module
from appliance.points import ledger, queries
from appliance.points.diff import diff_points
from appliance.points.index import (
    PointIndex,
    PointIndexError,
    _apply_changes,
    build_index,
    cached_indexes,
    evict,
    index_path,
    open_point,
    postings_path,
    sweep_leftovers,
)
from appliance.points.usecases import PointsService
from appliance.service import Appliance
from appliance.store.points import BackupPoint
from sandbox.store import Record, SandboxStore, canonical_json, ms_date
from sandbox.testing import SandboxServer
from tests.integration.test_backup import make_installation, run_cli

ID_FIELDS = {"Invoices": "InvoiceID", "Contacts": "ContactID", "Payments": "PaymentID"}


def _sandbox_hashes(state: Path, tenant_id: str) -> dict[str, dict[str, tuple[str, int | None]]]:
    """Per endpoint: record id -> (content hash, updated_ms), straight from the sandbox's store."""
    store = SandboxStore(state)
    try:
        result: dict[str, dict[str, tuple[str, int | None]]] = {}
        for endpoint, record_id, updated, doc in store.query(
            "SELECT endpoint, record_id, updated_ms, doc FROM records WHERE tenant_id=?", (tenant_id,)
        ):
            digest = hashlib.sha256(canonical_json(json.loads(doc)).encode()).hexdigest()
            result.setdefault(endpoint, {})[record_id] = (digest, updated)
        return result
    finally:
        store.close()


@dataclass
class World:
    sandbox: SandboxServer
    appliance: Appliance
    service: PointsService
    org_id: str
    config_path: Path
    full: BackupPoint
    incremental: BackupPoint
    truth_full: dict[str, Any]
    truth_incremental: dict[str, Any]
    before: dict[str, dict[str, tuple[str, int | None]]]
    after: dict[str, dict[str, tuple[str, int | None]]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with make_installation(tmp_path_factory.mktemp("points"), seed=5) as installation:
        sandbox, appliance, org_id = installation.sandbox, installation.appliance, installation.tenant_id
        [outcome] = asyncio.run(appliance.backup(full=True))
        assert outcome.status == "succeeded", outcome.error
        before = _sandbox_hashes(sandbox.state_path, org_id)
        truth_full = sandbox.truth(org_id)
        sandbox.advance(1)
        [outcome] = asyncio.run(appliance.backup())
        assert outcome.status == "succeeded", outcome.error
        full, incremental = appliance.points(org_id)
        yield World(
            sandbox=sandbox,
            appliance=appliance,
            service=PointsService(appliance),
            org_id=org_id,
            config_path=installation.config_path,
            full=full,
            incremental=incremental,
            truth_full=truth_full,
            truth_incremental=sandbox.truth(org_id),
            before=before,
            after=_sandbox_hashes(sandbox.state_path, org_id),
        )


# -- the books ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["full", "incremental"])
@pytest.mark.parametrize("view", ["trial-balance", "pnl", "balance-sheet"])
def test_recomputed_books_equal_what_xero_reported(world: World, which: str, view: str) -> None:
    point: BackupPoint = getattr(world, which)
    table = world.service.show(world.org_id, point.snapshot_id, view)
    records = table.records()
    reported = [r for r in records if r["reported"] not in ("", "0.00")]
    assert len(reported) >= 5, f"{view}: Xero reported too little to compare"
    assert [r for r in records if r["difference"] != "0.00"] == []
    assert table.totals["difference"] == "0.00"


@pytest.mark.parametrize("view", ["aged-receivables", "aged-payables"])
def test_recomputed_aged_balances_equal_xero_for_the_contacts_it_reported(world: World, view: str) -> None:
    # Aged reports are captured with full backups only (one call per contact), so the full point is compared.
    records = world.service.show(world.org_id, world.full.snapshot_id, view).records()
    reported = [r for r in records if r["reported"]]
    assert reported, "the full backup captured no aged report"
    assert [r for r in reported if r["difference"] != "0.00"] == []


def test_trial_balance_sums_to_zero_and_accounts_carry_it(world: World) -> None:
    table = world.service.show(world.org_id, world.incremental.snapshot_id, "trial-balance")
    assert table.totals["recomputed"] == "0.00"
    accounts = world.service.show(world.org_id, world.incremental.snapshot_id, "accounts").records()
    balances = {row["account id"]: row["balance"] for row in accounts}
    for row in table.records():
        assert balances[row["account id"]] == row["recomputed"]


# -- queries against ground truth -----------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["full", "incremental"])
def test_summary_counts_equal_the_sandbox_truth(world: World, which: str) -> None:
    point: BackupPoint = getattr(world, which)
    truth = world.truth_full if which == "full" else world.truth_incremental
    summary = world.service.show(world.org_id, point.snapshot_id, "summary")
    counts = {row[0]: row[1] for row in summary.rows}
    expected = {endpoint: entry["count"] for endpoint, entry in truth.items() if endpoint != "Attachments"}
    assert {k: counts.get(k) for k in expected} == expected


def test_document_filters(world: World) -> None:
    point = world.incremental.snapshot_id
    sandbox = world.after["Invoices"]
    with world.service.open(world.org_id, point) as index:
        raw = {i: index.raw("Invoices", i) for i in sandbox}
    paid_sales = {i for i, doc in raw.items() if doc and doc["Type"] == "ACCREC" and doc["Status"] == "PAID"}
    table = world.service.show(world.org_id, point, "invoices", queries.Filters(status="paid"))
    assert {row["id"] for row in table.records()} == paid_sales
    some = raw[sorted(paid_sales)[0]]
    assert some is not None
    contact = some["Contact"]["ContactID"]
    by_contact = world.service.show(world.org_id, point, "invoices", queries.Filters(contact=contact)).records()
    assert by_contact
    assert all((raw[row["id"]] or {})["Contact"]["ContactID"] == contact for row in by_contact)
    number = some["InvoiceNumber"]
    found = world.service.show(world.org_id, point, "invoices", queries.Filters(text=number)).records()
    assert [row["number"] for row in found] == [number]
    day = some["DateString"][:10]
    on_day = world.service.show(
        world.org_id, point, "invoices", queries.Filters(date_from=_date(day), date_to=_date(day))
    ).records()
    assert some["InvoiceID"] in {row["id"] for row in on_day}
    assert all(row["date"] == day for row in on_day)
    code = some["LineItems"][0]["AccountCode"]
    coded = world.service.show(world.org_id, point, "invoices", queries.Filters(account=code)).records()
    assert some["InvoiceID"] in {row["id"] for row in coded}
    total = float(some["Total"])
    ranged = world.service.show(
        world.org_id, point, "invoices", queries.Filters(amount_min=total, amount_max=total)
    ).records()
    assert some["InvoiceID"] in {row["id"] for row in ranged}
    assert all(float(row["total"]) == total for row in ranged)


def _date(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


def test_one_record_in_full_and_its_attachment(world: World, tmp_path: Path) -> None:
    store = SandboxStore(world.sandbox.state_path)
    try:
        attachment_id, endpoint, record_id, file_name, content = next(
            iter(
                store.query(
                    "SELECT attachment_id, endpoint, record_id, file_name, content FROM attachments"
                    " WHERE tenant_id=? AND endpoint='Invoices' ORDER BY attachment_id",
                    (world.org_id,),
                )
            )
        )
    finally:
        store.close()
    point = world.full.snapshot_id
    found = world.service.record(world.org_id, point, record_id[:13])
    assert found["endpoint"] == endpoint
    assert found["id"] == record_id
    assert found["line_items"]
    assert all(line["_parent_id"] == record_id for line in found["line_items"])
    assert [a["AttachmentID"] for a in found["attachments"] if a["FileName"] == file_name] == [attachment_id]
    if found["raw"]["Status"] in ("AUTHORISED", "PAID"):
        assert found["postings"], "an approved invoice posts"
    written = world.service.extract_attachment(world.org_id, point, record_id, file_name, tmp_path)
    assert written.read_bytes() == content


def test_diff_after_advance_equals_what_the_sandbox_changed(world: World) -> None:
    result = world.service.diff(world.org_id, world.full.snapshot_id, world.incremental.snapshot_id)
    ours = {entry.endpoint: entry for entry in result.endpoints}
    assert any(not entry.empty for entry in result.endpoints)
    for endpoint in set(world.before) | set(world.after):
        before, after = world.before.get(endpoint, {}), world.after.get(endpoint, {})
        entry = ours.get(endpoint)
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        changed = {k for k in before.keys() & after.keys() if before[k][0] != after[k][0]}
        assert (entry.added if entry else []) == added, endpoint
        assert (entry.removed if entry else []) == removed, endpoint
        found = set(entry.changed) if entry else set()
        assert found <= changed, endpoint
        # An incremental backup misses only what Xero changes without moving UpdatedDateUTC (due dates of
        # partly paid invoices, attachments): every other change must be in the diff.
        missed = {k for k in changed - found if before[k][1] != after[k][1]}
        assert missed == set(), endpoint
    moved = [d for d in result.trial_balance if d.difference]
    assert moved, "a business day of invoices and payments moves the trial balance"
    assert sum(d.difference for d in result.trial_balance) == 0


def test_diff_of_one_type_lists_field_changes_by_line_id(world: World) -> None:
    with (
        world.service.open(world.org_id, world.full.snapshot_id) as before,
        world.service.open(world.org_id, world.incremental.snapshot_id) as after,
    ):
        result = diff_points(before, after, types=["Invoices"], books=False)
        [entry] = result.endpoints
        assert set(entry.details) == set(entry.changed)
        for record_id, changes in entry.details.items():
            old, new = before.raw("Invoices", record_id), after.raw("Invoices", record_id)
            assert changes, record_id
            for change in changes:
                if "[" not in change.path and "." not in change.path:
                    assert old is not None
                    assert new is not None
                    assert (old.get(change.path), new.get(change.path)) == (change.before, change.after)


# -- export ---------------------------------------------------------------------------------------------------
def test_export_round_trips_counts_and_sums(world: World, tmp_path: Path) -> None:
    point = world.incremental.snapshot_id
    summary = world.service.export(world.org_id, point, tmp_path / "export")
    assert export_module.verify_export(tmp_path / "export") == []
    with world.service.open(world.org_id, point) as index:
        for endpoint in index.endpoints():
            figures = summary["files"][f"{endpoint}.csv"]
            assert figures["rows"] == index.scalar(f"SELECT count(*) FROM [{endpoint}]"), endpoint
            total = index.scalar(f"SELECT sum(_total) FROM [{endpoint}]")
            if total is not None:
                cents = sum(round(v * 100) for (v,) in index.db.execute(f"SELECT _total FROM [{endpoint}]") if v)
                assert figures["sums"]["_total"] == f"{cents / 100:.2f}", endpoint
        lines = summary["files"]["line_items.csv"]
        assert lines["rows"] == index.scalar("SELECT count(*) FROM line_items")
        cents = sum(round(v * 100) for (v,) in index.db.execute("SELECT LineAmount FROM line_items") if v)
        assert lines["sums"]["LineAmount"] == f"{cents / 100:.2f}"
    assert (tmp_path / "export" / "reports" / "TrialBalance.json").is_file()
    one = world.service.export(world.org_id, point, tmp_path / "tb.csv", view="trial-balance")
    assert export_module.read_csv_figures(tmp_path / "tb.csv")["rows"] == one["rows"]


# -- the cache ------------------------------------------------------------------------------------------------
def test_the_cache_is_private_reused_and_evicted_least_recent_first(world: World) -> None:
    cache = world.service.cache_dir
    path = index_path(cache, world.org_id, world.full.snapshot_id)
    world.service.open(world.org_id, world.full.snapshot_id).close()
    assert path.is_file()
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert os.stat(cache / "points").st_mode & 0o777 == 0o700
    inode = path.stat().st_ino
    world.service.open(world.org_id, world.full.snapshot_id).close()
    assert path.stat().st_ino == inode, "a warm open must reuse the index, not rebuild it"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    newest = cached_indexes(cache)[-1][0]
    removed = evict(cache, 1, keep=[newest])
    assert newest.exists()
    assert all(not p.exists() for p in removed)
    assert [p for p, _, _ in cached_indexes(cache)] == [newest]


def test_an_index_open_in_this_process_is_never_evicted(world: World, tmp_path: Path) -> None:
    """Detection holds the previous and the new point at once; with a cache bound below two indexes, opening
    the second must not delete the first from under it."""
    repository = world.appliance.repository(world.org_id)
    cache = tmp_path / "cache"
    with (
        open_point(repository, world.org_id, world.full.snapshot_id, cache, max_bytes=1) as first,
        open_point(repository, world.org_id, world.incremental.snapshot_id, cache, max_bytes=1),
    ):
        assert first.path.exists()
        assert len(cached_indexes(cache)) == 2
    evict(cache, 1)
    assert cached_indexes(cache) == [], "once closed they are evicted like any other"


def test_postings_are_kept_beside_the_index_for_the_next_process(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = world.appliance.repository(world.org_id)
    cache = tmp_path / "cache"
    with open_point(repository, world.org_id, world.full.snapshot_id, cache) as index:
        computed = index.postings()
    kept = postings_path(index.path)
    assert kept.is_file()
    assert os.stat(kept).st_mode & 0o777 == 0o600
    assert not [p for p in kept.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(computed.lines) > 1000

    def not_again(*args: object) -> ledger.Postings:
        raise AssertionError("the kept postings should have been read, not computed again")

    with monkeypatch.context() as patch:
        patch.setattr(ledger, "postings", not_again)
        with PointIndex(index.path) as again:  # as a second process would: the reports read the daily totals
            before = queries.trial_balance(again).records()
            assert again._postings is None, "the reports need only the totals"
            some = computed.lines[len(computed.lines) // 2]
            mine = again.postings_of(some.endpoint, some.record_id)
            assert some in mine
            assert mine == [p for p in computed.lines if (p.endpoint, p.record_id) == (some.endpoint, some.record_id)]
            assert again.postings() == computed
            assert again.ledger_totals() == ledger.daily_totals(computed)
    with PointIndex(index.path) as again:
        assert queries.trial_balance(again).records() == before

    # Other ledger rules: the kept postings are stale, computed again and kept anew.
    monkeypatch.setattr(ledger, "RULES_VERSION", ledger.RULES_VERSION + 1)
    calls = []
    compute = ledger.postings
    monkeypatch.setattr(ledger, "postings", lambda *a: calls.append(1) or compute(*a))
    with PointIndex(index.path) as again:
        assert again.postings() == computed
    assert calls == [1]
    with PointIndex(index.path) as again:
        again.postings()
    assert calls == [1], "kept again under the new rules"

    # An unreadable file is computed again, not an error.
    kept.write_bytes(b"not sqlite")
    with PointIndex(index.path) as again:
        assert again.postings() == computed

    # Eviction takes the postings with their index.
    assert evict(cache, 1) == [index.path]
    assert not kept.exists()


def test_the_leftovers_of_killed_builds_are_swept(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repository = world.appliance.repository(world.org_id)
    with open_point(repository, world.org_id, world.full.snapshot_id, cache) as index:
        index.postings()
    folder = index.path.parent
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a process id that is surely gone
    leftovers = [
        folder / f".{index.path.name}.{dead}.tmp",
        folder / f".{postings_path(index.path).name}.{dead}.140000.tmp",
        folder / f".derive-{dead}-abcd",
    ]
    for leftover in leftovers[:2]:
        leftover.write_bytes(b"x" * 100)
    leftovers[2].mkdir()
    (leftovers[2] / "records").mkdir()
    live = folder / f".{index.path.name}.{os.getpid()}.tmp"
    live.write_bytes(b"a build of this process, still running")
    orphan = postings_path(folder / "0123abcd.db")
    orphan.write_bytes(b"x")
    assert sorted(sweep_leftovers(folder)) == sorted([*leftovers, orphan])
    assert live.exists()
    assert index.path.exists()
    assert postings_path(index.path).exists()


def test_the_cache_bound_comes_from_settings(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    assert PointsService(world.appliance).cache_max_bytes == world.appliance.settings.points_cache_max_bytes
    monkeypatch.setattr(world.appliance.settings, "points_cache_max_bytes", 1)
    service = PointsService(world.appliance)
    assert service.cache_max_bytes == 1
    cache = service.cache_dir
    full = index_path(cache, world.org_id, world.full.snapshot_id)
    incremental = index_path(cache, world.org_id, world.incremental.snapshot_id)
    service.open(world.org_id, world.full.snapshot_id).close()
    assert full.is_file()
    incremental.unlink(missing_ok=True)  # earlier tests may have cached it; eviction follows a build
    service.open(world.org_id, world.incremental.snapshot_id).close()
    assert incremental.is_file()
    assert not full.exists(), "the settings' bound of 1 byte keeps only the point being opened"


def test_a_build_that_fails_half_way_leaves_no_index(tmp_path: Path) -> None:
    line = canonical_json({"InvoiceID": "i1", "Type": "ACCREC", "Status": "DRAFT", "Total": 1.0}).encode()

    def files() -> Iterator[tuple[str, bytes]]:
        yield "manifest.json", b"{}"
        yield "records/Invoices/2026-09/i1.ndjson", line + b"\n"
        raise OSError("restic died")

    target = tmp_path / "point.db"
    with pytest.raises(OSError, match="restic died"):
        build_index(files(), target, org_id="o", snapshot_id="s")
    assert list(tmp_path.iterdir()) == []
    build_index(
        iter([("manifest.json", b"{}"), ("records/Invoices/2026-09/i1.ndjson", line)]),
        target,
        org_id="o",
        snapshot_id="s",
    )
    with PointIndex(target) as index:
        assert index.hashes("Invoices") == {"i1": hashlib.sha256(line).hexdigest()}
        assert index.manifest() == {}


def _contents(path: Path) -> dict[str, list[str]]:
    """Every row of every table of an index (the search tables through their content), minus build times."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            if not name.startswith(("contacts_fts_", "documents_fts_")) and not name.endswith("_fields")
        ]
        contents = {}
        for name in tables:
            rows = connection.execute(f"SELECT * FROM [{name}]").fetchall()
            if name == "meta":
                rows = [row for row in rows if row[0] not in ("built_at", "derived_from")]
            contents[name] = sorted(map(repr, rows))
        return contents
    finally:
        connection.close()


def test_a_point_derived_from_its_cached_neighbour_equals_a_full_build(world: World, tmp_path: Path) -> None:
    """Opening a point when a neighbour's index is cached reads only what `restic diff` names; the result is
    the index a full build makes, row for row (search tables included)."""
    cache = world.service.cache_dir
    world.service.open(world.org_id, world.full.snapshot_id).close()
    derived = index_path(cache, world.org_id, world.incremental.snapshot_id)
    derived.unlink(missing_ok=True)
    with world.service.open(world.org_id, world.incremental.snapshot_id) as index:
        assert index.meta.get("derived_from") == world.full.snapshot_id
    repository = world.appliance.repository(world.org_id)
    with open_point(repository, world.org_id, world.incremental.snapshot_id, tmp_path / "cold") as built:
        assert "derived_from" not in built.meta
        full_build = built.path
    ours, theirs = _contents(derived), _contents(full_build)
    assert sorted(ours) == sorted(theirs)
    for table in theirs:
        assert ours[table] == theirs[table], f"{table} differs between the derived index and a full build"
    assert sum(len(rows) for rows in theirs.values()) > 2000


def test_a_neighbour_whose_snapshot_is_gone_falls_back_to_a_full_build(world: World) -> None:
    """A cached index can outlive its snapshot (retention forgot it): `restic diff` fails, the point is read
    whole instead."""
    cache, org_id = world.service.cache_dir, world.org_id
    world.service.open(org_id, world.full.snapshot_id).close()
    gone = "f" * 64
    orphan = index_path(cache, org_id, gone)
    shutil.copyfile(index_path(cache, org_id, world.full.snapshot_id), orphan)
    connection = sqlite3.connect(orphan)
    with connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'snapshot_id'", (gone,))
    connection.close()
    target = index_path(cache, org_id, world.incremental.snapshot_id)
    target.unlink(missing_ok=True)
    repository = world.appliance.repository(org_id)
    try:
        with open_point(repository, org_id, world.incremental.snapshot_id, cache, neighbours=[gone]) as index:
            assert "derived_from" not in index.meta
            assert index.snapshot_id == world.incremental.snapshot_id
    finally:
        orphan.unlink(missing_ok=True)


def test_deriving_handles_removed_shards_new_endpoints_and_removed_endpoints(tmp_path: Path) -> None:
    def line(record: dict[str, Any]) -> bytes:
        return canonical_json(record).encode() + b"\n"

    invoice = {
        "InvoiceID": "i1",
        "Type": "ACCREC",
        "Status": "DRAFT",
        "Total": 1.0,
        "Reference": "first",
        "Contact": {"ContactID": "c1", "Name": "Ann"},
        "LineItems": [{"LineItemID": "l1", "AccountCode": "200"}],
    }
    before = [
        ("manifest.json", b'{"n": 1}'),
        ("records/Invoices/2026-09.ndjson", line(invoice) + line({**invoice, "InvoiceID": "i2"})),
        ("records/Invoices/2026-10.ndjson", line({**invoice, "InvoiceID": "i3"})),
        ("records/Contacts/c.ndjson", line({"ContactID": "c1", "Name": "Ann"})),
        ("attachments/Invoices/i1/index.json", b'[{"AttachmentID": "a1", "FileName": "x.pdf", "file": "a1"}]'),
        ("reports/TrialBalance.json", b'{"r": 1}'),
    ]
    changed = [
        ("manifest.json", b'{"n": 2}'),
        ("records/Invoices/2026-09.ndjson", line({**invoice, "Reference": "second", "NewField": "x"})),
        ("records/Items/i.ndjson", line({"ItemID": "it1", "Code": "W"})),
    ]
    removed = ["records/Invoices/2026-10.ndjson", "records/Contacts/c.ndjson", "attachments/Invoices/i1/index.json"]
    after = [*changed, ("reports/TrialBalance.json", b'{"r": 1}')]
    build_index(iter(before), tmp_path / "base.db", org_id="o", snapshot_id="a")
    build_index(iter(after), tmp_path / "full.db", org_id="o", snapshot_id="b")
    shutil.copyfile(tmp_path / "base.db", tmp_path / "derived.db")
    _apply_changes(tmp_path / "derived.db", changed, removed, org_id="o", snapshot_id="b", base="a")
    assert _contents(tmp_path / "derived.db") == _contents(tmp_path / "full.db")
    with PointIndex(tmp_path / "derived.db") as index:
        assert index.endpoints() == ["Invoices", "Items"]
        assert index.query("SELECT NewField FROM Invoices_fields") == [{"NewField": "x"}]
        assert index.query("SELECT id FROM documents_fts WHERE documents_fts MATCH 'second'") == [{"id": "i1"}]
        assert index.query("SELECT id FROM documents_fts WHERE documents_fts MATCH 'first'") == []


def test_a_dump_without_the_lock_that_fails_is_read_again_with_it(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Points are read with `--no-lock`; a prune running meanwhile can make that read fail part-way (the one
    odd response here), and the point is then read again with restic's lock, whole."""
    repository = world.appliance.repository(world.org_id)
    real_dump = repository.dump
    locks: list[bool] = []

    def dump(snapshot_id: str, path: str, out: Any, *, lock: bool = False) -> None:
        locks.append(lock)
        if not lock:
            out.write(b"records/Invoices/partial")
            raise ResticFailed("Fatal: load pack 5a7e: no such file (a prune removed it)")
        real_dump(snapshot_id, path, out, lock=lock)

    monkeypatch.setattr(repository, "dump", dump)
    with open_point(repository, world.org_id, world.full.snapshot_id, tmp_path / "cache") as index:
        assert index.snapshot_id == world.full.snapshot_id
        assert index.scalar("SELECT count(*) FROM Invoices") > 0
    assert locks == [False, True]


def test_an_endpoint_whose_files_come_apart_builds_the_same_index(tmp_path: Path) -> None:
    """Tables are written as each endpoint's files end (restic's tar is in path order); a source that comes
    back to an endpoint later appends to its table and view instead of failing or losing rows."""

    def line(record: dict[str, Any]) -> bytes:
        return canonical_json(record).encode() + b"\n"

    invoice = {"InvoiceID": "i1", "Type": "ACCREC", "Status": "DRAFT", "Total": 1.0, "Contact": {"ContactID": "c1"}}
    files = [
        ("manifest.json", b"{}"),
        ("records/Invoices/2026-09.ndjson", line(invoice)),
        ("records/Contacts/c.ndjson", line({"ContactID": "c1", "Name": "Ann"})),
        ("records/Invoices/2026-10.ndjson", line({**invoice, "InvoiceID": "i2", "Late": "y"})),
    ]
    build_index(iter(files), tmp_path / "apart.db", org_id="o", snapshot_id="s")
    build_index(iter(sorted(files)), tmp_path / "sorted.db", org_id="o", snapshot_id="s")
    assert _contents(tmp_path / "apart.db") == _contents(tmp_path / "sorted.db")
    with PointIndex(tmp_path / "apart.db") as index:
        assert index.query("SELECT name, count FROM endpoints ORDER BY name") == [
            {"name": "Contacts", "count": 1},
            {"name": "Invoices", "count": 2},
        ]
        assert index.query("SELECT _id, Late FROM Invoices_fields ORDER BY _id") == [
            {"_id": "i1", "Late": None},
            {"_id": "i2", "Late": "y"},
        ]
    twice = [*files, ("records/Invoices/2026-11.ndjson", line(invoice))]
    with pytest.raises(PointIndexError, match="appears twice"):
        build_index(iter(twice), tmp_path / "twice.db", org_id="o", snapshot_id="s")


# -- the CLI --------------------------------------------------------------------------------------------------
def _cli(world: World, *args: str) -> Any:
    return json.loads(run_cli(world.config_path, *args))


def test_cli_show_diff_and_findings_print_json(world: World) -> None:
    summary = _cli(world, "show", world.org_id, "latest~1", "summary", "--json")
    assert summary["schema_version"]
    assert summary["view"] == "summary"
    assert {row[0]: row[1] for row in summary["rows"]}["Invoices"] == world.truth_full["Invoices"]["count"]
    diff = _cli(world, "diff", world.org_id, world.full.short_id, "latest", "--type", "Invoices", "--json")
    assert [e["endpoint"] for e in diff["endpoints"]] == ["Invoices"]
    assert "findings" in _cli(world, "findings", world.org_id, "--json")


# -- damage ---------------------------------------------------------------------------------------------------
class Damage:
    """Writes damage into the sandbox store as a broken integration or a mistaken person would."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store = SandboxStore(world.sandbox.state_path)
        self.tenant = world.org_id
        self.clock = self.store.now_ms() + 3_600_000

    def close(self) -> None:
        self.store.close()

    def tick(self) -> int:
        self.clock += 60_000
        return self.clock

    def invoices(self, status: str = "AUTHORISED", kind: str = "ACCREC", limit: int = 10) -> list[dict[str, Any]]:
        docs = [
            json.loads(doc)
            for (doc,) in self.store.query(
                "SELECT doc FROM records WHERE tenant_id=? AND endpoint='Invoices' AND status=? AND type=?"
                " ORDER BY record_id",
                (self.tenant, status, kind),
            )
        ]
        return [d for d in docs if not d.get("Payments") and not d.get("AmountCredited")][:limit]

    def put(self, docs: list[dict[str, Any]]) -> None:
        records = []
        for doc in docs:
            updated = self.tick()
            doc["UpdatedDateUTC"] = ms_date(updated)
            records.append(
                Record(
                    self.tenant,
                    "Invoices",
                    doc["InvoiceID"],
                    doc,
                    updated_ms=updated,
                    date_ms=int(doc["Date"][6:19]),
                    status=doc["Status"],
                    type=doc["Type"],
                    contact_id=doc["Contact"]["ContactID"],
                    number=doc.get("InvoiceNumber"),
                )
            )
        with self.store.transaction():
            self.store.put_records(records)


def _backup_and_detect(world: World, config: DetectConfig) -> list[Any]:
    [outcome] = asyncio.run(world.appliance.backup())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.snapshot_id is not None
    world.service.detect_config = config
    return world.service.detect_after_backup(world.org_id, outcome.snapshot_id)


def _assert_evidence(finding: Any, damaged: set[str]) -> None:
    evidence = set(finding.evidence["record_ids"])
    recall = len(evidence & damaged) / len(damaged)
    precision = len(evidence & damaged) / len(evidence)
    print(f"{finding.rule} {finding.severity}: recall {recall:.3f} precision {precision:.3f} of {len(damaged)}")
    assert recall >= 0.95, (recall, precision)
    assert precision >= 0.95, (recall, precision)

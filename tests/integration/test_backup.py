"""End to end: connect to the sandbox through OAuth, back up with real restic, compare with ground truth.

Every test here runs the real pieces: the sandbox over loopback HTTP, the Xero client, the mirror, and the
restic binary on a real repository. The ground truth is the sandbox's own count and content hash per
endpoint (`/_sandbox/truth`), which the mirror computes the same way (`Mirror.truth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.backup.mirror import Mirror
from appliance.backup.mirror import id_field as mirror_id_field
from appliance.backup.run import host_for
from appliance.models import OrgStatus
from appliance.service import Appliance
from appliance.settings import Settings
from sandbox.demo import connect_through_browserless_consent, demo_settings
from sandbox.testing import SandboxServer

# A fixed business clock makes the generated data, and so the hashes, independent of the day the test runs.
# The appliance, though, asks for its reports as of the real today (`BackupEngine.clock`), so the P&L it keeps
# covers the year to the real today. The generated history is the year to the anchor (2026-09-21): as the
# calendar moves on, less of it falls in that window (test_points' P&L comparison needs 5 accounts in it:
# good until about mid 2027). A window start between an invoice and its void found the void rule (2026-12-07).
ANCHOR_MS = 1_790_000_000_000
# Tests are not about Xero's minute limit (test_xero_client and the sandbox tests are): a higher one keeps
# the suite fast. The day limit, 429s and faults are exercised explicitly below.
TEST_MINUTE_LIMIT = 1_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Installation:
    sandbox: SandboxServer
    appliance: Appliance
    settings: Settings
    tenant_id: str
    config_path: Path


@contextlib.contextmanager
def make_installation(root: Path, *, seed: int = 7, orgs: int = 1, **sandbox_overrides: Any) -> Iterator[Installation]:
    port = _free_port()
    redirect_uri = f"http://localhost:{port}/callback"
    with SandboxServer(
        root / "sandbox.db",
        orgs=orgs,
        size="small",
        seed=seed,
        anchor_ms=ANCHOR_MS,
        redirect_uris=(redirect_uri,),
        auto_consent=True,
        **sandbox_overrides,
    ) as sandbox:
        sandbox.set_limits(minute=TEST_MINUTE_LIMIT)
        settings, toml = demo_settings(sandbox.info, root, redirect_uri)
        settings.limits.tenant_per_minute = TEST_MINUTE_LIMIT
        config_path = root / "strongroom.toml"
        config_path.write_text(toml + f"\n[limits]\ntenant_per_minute = {TEST_MINUTE_LIMIT}\n", encoding="utf-8")
        appliance = Appliance.initialise(settings)
        connected = asyncio.run(connect_through_browserless_consent(appliance))
        assert connected, "the consent registered no organisation"
        try:
            yield Installation(sandbox, appliance, settings, connected[0].org_id, config_path)
        finally:
            appliance.close()


def run_cli(config_path: Path, *args: str, timeout: float = 120) -> str:
    """`strongroom -c CONFIG ARGS...` in a child process, as a person runs it; its stdout (exit 0 asserted)."""
    completed = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "-c", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def assert_matches_truth(mirror: Mirror, truth: dict[str, Any]) -> None:
    ours = mirror.truth()
    for endpoint, expected in truth.items():
        assert endpoint in ours, f"{endpoint} missing from the backup"
        assert ours[endpoint]["count"] == expected["count"], endpoint
        assert ours[endpoint]["hash"] == expected["hash"], endpoint


def assert_incremental_matches_truth(mirror: Mirror, installation: Installation) -> None:
    """After incremental runs the mirror equals the truth except records Xero changes WITHOUT moving
    UpdatedDateUTC (RR: due dates of partly paid invoices; the sandbox also treats attachment changes so);
    those are caught by the periodic full sweep, which the tests check separately. Every other difference,
    and every count difference, fails."""
    from sandbox.store import SandboxStore

    truth = installation.sandbox.truth(installation.tenant_id)
    ours = mirror.truth()
    store = SandboxStore(installation.sandbox.state_path)
    try:
        for endpoint, expected in truth.items():
            if endpoint == "Attachments" or ours.get(endpoint) == expected:
                continue
            assert ours[endpoint]["count"] == expected["count"], endpoint
            id_field = mirror_id_field(endpoint)
            backed_up = {record[id_field]: record for record in mirror.iter_records(endpoint)}
            for record_id, doc in store.query(
                "SELECT record_id, doc FROM records WHERE tenant_id=? AND endpoint=?",
                (installation.tenant_id, endpoint),
            ):
                ours_doc = backed_up.get(record_id)
                current = json.loads(doc)
                if ours_doc == current:
                    continue
                assert ours_doc is not None, f"{endpoint} {record_id} missing"
                assert ours_doc.get("UpdatedDateUTC") == current.get("UpdatedDateUTC"), (
                    f"{endpoint} {record_id} moved its UpdatedDateUTC but the backup did not follow"
                )
    finally:
        store.close()


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with make_installation(tmp_path_factory.mktemp("backup")) as inst:
        yield inst


def test_full_backup_equals_ground_truth_and_restores(installation: Installation) -> None:
    outcomes = asyncio.run(installation.appliance.backup(full=True))
    assert [o.status for o in outcomes] == ["succeeded"], outcomes
    outcome = outcomes[0]
    assert outcome.mode == "full"
    assert outcome.snapshot_id
    assert outcome.records > 1_000
    truth = installation.sandbox.truth(installation.tenant_id)
    assert truth["Attachments"]["count"] > 0
    mirror = Mirror(installation.appliance.mirror_path(installation.tenant_id))
    assert_matches_truth(mirror, truth)
    assert mirror.verify() == []

    # The point in restic holds exactly the mirror: restore it elsewhere and compare again.
    repository = installation.appliance.repository(installation.tenant_id)
    restored = Path(tempfile.mkdtemp(prefix="restored-"))
    repository.restore(outcome.snapshot_id, restored)
    assert_matches_truth(Mirror(restored), truth)
    points = installation.appliance.points(installation.tenant_id)
    assert [p.snapshot_id for p in points] == [outcome.snapshot_id]


def test_incremental_runs_follow_days_of_churn(installation: Installation) -> None:
    full_calls = installation.appliance.state.runs.latest(installation.tenant_id)
    assert full_calls is not None
    for _day in range(3):
        installation.sandbox.advance(1)
        (outcome,) = asyncio.run(installation.appliance.backup())
        assert outcome.status == "succeeded", outcome
        assert outcome.mode == "incremental"
        # Incremental reads cost a fraction of a full one (the floor comparison is in bench/).
        assert outcome.calls < full_calls.calls
        mirror = Mirror(installation.appliance.mirror_path(installation.tenant_id))
        assert_incremental_matches_truth(mirror, installation)
    assert len(installation.appliance.points(installation.tenant_id)) == 4
    # The periodic full sweep catches what If-Modified-Since cannot: afterwards the point is exact.
    (sweep,) = asyncio.run(installation.appliance.backup(full=True))
    assert sweep.status == "succeeded"
    assert_matches_truth(Mirror(installation.appliance.mirror_path(installation.tenant_id)),
                         installation.sandbox.truth(installation.tenant_id))  # fmt: skip
    installation.appliance.repository(installation.tenant_id).check(read_data_subset="100%")


def test_a_snapshot_restic_finished_but_the_state_never_recorded_is_adopted(installation: Installation) -> None:
    """A process killed between restic's snapshot and the state's row: the next backup records the orphan
    (found in the local repository's snapshots/ directory, then read through restic)."""
    app, org_id = installation.appliance, installation.tenant_id
    repository = app.repository(org_id)
    before = {p.snapshot_id for p in app.points(org_id)}
    assert before, "an earlier test backs this organisation up"
    assert repository.local_snapshot_ids() == before  # nothing unknown: the backup asks restic nothing more
    orphan = repository.backup(app.mirror_path(org_id), host=host_for(org_id), tags=["strongroom", "mode:full"])
    assert repository.local_snapshot_ids() == before | {orphan.snapshot_id}
    (outcome,) = asyncio.run(app.backup())
    assert outcome.status == "succeeded", outcome
    points = {p.snapshot_id: p for p in app.points(org_id)}
    assert set(points) == before | {orphan.snapshot_id, outcome.snapshot_id}
    assert points[orphan.snapshot_id].summary.get("adopted") is True
    assert points[orphan.snapshot_id].mode == "full"


def test_token_expiry_and_rotation_mid_run(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=8) as inst:
        # Access tokens live 2 seconds and the client refreshes 120 s before expiry: every call needs a
        # fresh token, so the run crosses many rotations (each persisted before use).
        inst.sandbox.set_tokens(access_ttl_s=2)
        (outcome,) = asyncio.run(inst.appliance.backup(full=True))
        assert outcome.status == "succeeded", outcome
        assert_matches_truth(Mirror(inst.appliance.mirror_path(inst.tenant_id)), inst.sandbox.truth(inst.tenant_id))


def test_revoked_connection_marks_consent_needed_without_losing_points(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=9) as inst:
        (first,) = asyncio.run(inst.appliance.backup(full=True))
        assert first.status == "succeeded"
        tokens = inst.appliance.state.grants.load(inst.appliance.organisation(inst.tenant_id).grant_id)
        assert tokens is not None
        import httpx

        httpx.post(
            inst.sandbox.base_url + "/connect/revocation",
            data={"token": tokens.refresh_token},
            auth=(inst.sandbox.info["client_id"], inst.sandbox.info["client_secret"]),
        ).raise_for_status()
        inst.sandbox.skew_identity_clock(3600)  # the held access token has expired too
        (second,) = asyncio.run(inst.appliance.backup())
        assert second.status == "needs_consent", second
        assert inst.appliance.organisation(inst.tenant_id).status is OrgStatus.NEEDS_CONSENT
        # Not a crash loop: the next scheduled run does not even call Xero.
        (third,) = asyncio.run(inst.appliance.backup([inst.tenant_id]))
        assert third.status == "needs_consent"
        assert third.calls == 0
        assert len(inst.appliance.points(inst.tenant_id)) == 1


def test_faults_and_concurrency_429s_are_survived(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=10) as inst:
        inst.sandbox.set_faults("seed=5,500=0.04,503=0.02,504=0.02,drop=0.03,truncate=0.03")
        inst.sandbox.set_limits(concurrent=2)  # the client allows itself Xero's 5: the server says 429
        (outcome,) = asyncio.run(inst.appliance.backup(full=True))
        assert outcome.status == "succeeded", outcome
        inst.sandbox.set_faults()
        assert_matches_truth(Mirror(inst.appliance.mirror_path(inst.tenant_id)), inst.sandbox.truth(inst.tenant_id))


def test_minute_429_storm_waits_retry_after(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=14) as inst:
        (first,) = asyncio.run(inst.appliance.backup(full=True))
        assert first.status == "succeeded"
        inst.sandbox.advance(1)
        # Another integration has just spent the tenant's minute: our client's first calls meet a storm of minute
        # 429s whose Retry-After it must honour, then the run completes. Xero's fixed window is shortened to 10 s
        # (a sandbox-only knob) so the storm costs seconds, not minutes, of CI time.
        inst.sandbox.set_limits(minute=60, window=10)
        other = inst.sandbox.connect()
        for _ in range(60):
            httpx.get(
                inst.sandbox.base_url + "/api.xro/2.0/Organisation",
                headers={
                    "Authorization": f"Bearer {other.access_token}",
                    "xero-tenant-id": inst.tenant_id,
                    "Accept": "application/json",
                },
            )
        (second,) = asyncio.run(inst.appliance.backup())
        assert second.status == "succeeded", second
        usage = inst.sandbox.usage()
        rejected = sum(int(t.get("rejected_429", 0)) for t in _usage_rows(usage))
        assert rejected > 0
        assert_incremental_matches_truth(Mirror(inst.appliance.mirror_path(inst.tenant_id)), inst)


def _usage_rows(usage: Any) -> list[dict[str, Any]]:
    if isinstance(usage, dict):
        rows = usage.get("tenants", usage)
        return list(rows.values()) if isinstance(rows, dict) else list(rows)
    return list(usage)


def test_day_limit_exhausted_pauses_then_resumes(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=11) as inst:
        inst.sandbox.set_limits(tenant=inst.tenant_id, day=15)
        (paused,) = asyncio.run(inst.appliance.backup(full=True))
        assert paused.status == "paused", paused
        assert paused.resume_at is not None
        assert paused.snapshot_id is None
        assert inst.appliance.points(inst.tenant_id) == []
        run = inst.appliance.state.runs.resumable(inst.tenant_id)
        assert run is not None
        assert run.checkpoint
        assert run.checkpoint["done"]
        done_before = set(run.checkpoint["done"])
        # Xero's day window resets: the next run resumes from the checkpoint instead of starting over.
        inst.sandbox.set_limits(tenant=inst.tenant_id, day=5000)
        (resumed,) = asyncio.run(inst.appliance.backup())
        assert resumed.status == "succeeded", resumed
        assert resumed.run_id == paused.run_id
        assert resumed.mode == "full"
        assert done_before
        assert resumed.records < sum(
            v.get("count") or 0
            for v in Mirror(inst.appliance.mirror_path(inst.tenant_id)).manifest()["endpoints"].values()
        )
        assert_matches_truth(Mirror(inst.appliance.mirror_path(inst.tenant_id)), inst.sandbox.truth(inst.tenant_id))


def test_cli_backup_and_points_json(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=12) as inst:
        strongroom = [str(Path(__import__("sys").executable).parent / "strongroom"), "-c", str(inst.config_path)]
        result = subprocess.run([*strongroom, "backup", "--all", "--json"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        import json

        outcomes = json.loads(result.stdout)["outcomes"]
        assert outcomes[0]["status"] == "succeeded"
        listed = json.loads(
            subprocess.run([*strongroom, "points", inst.tenant_id, "--json"], capture_output=True, text=True).stdout
        )
        assert listed["schema_version"] == 1
        assert [p["snapshot_id"] for p in listed["points"]] == [outcomes[0]["snapshot_id"]]
        usage = subprocess.run([*strongroom, "backup"], capture_output=True, text=True)
        assert usage.returncode == 2


def _strongroom(config: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "strongroom"), "-q", "-c", str(config)]


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """`kill -9` a backup process at random moments, again and again; then a run completes, restic's check
    passes, the mirror equals the ground truth, and every point is recorded exactly once."""
    kills = int(os.environ.get("STRONGROOM_KILL_LOOPS", "20"))
    rng = random.Random(20261125)
    with make_installation(tmp_path, seed=13) as inst:
        (first,) = asyncio.run(inst.appliance.backup(full=True))
        assert first.status == "succeeded"
        inst.appliance.close()  # the killed processes must not share our connection
        killed_while_running = 0
        for round_ in range(kills):
            if round_ % 4 == 0:
                inst.sandbox.advance(1)
            mode = ["--full"] if round_ % 3 == 0 else []
            process = subprocess.Popen(
                [*_strongroom(inst.config_path), "backup", "--all", *mode],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, 2.5))
            if process.poll() is None:
                killed_while_running += 1
            process.kill()
            process.wait()
        assert killed_while_running >= kills // 2, "the kills should land while backups run"
        final = subprocess.run(
            [*_strongroom(inst.config_path), "backup", "--all", "--json"], capture_output=True, text=True, timeout=600
        )
        assert final.returncode == 0, final.stderr
        sweep = subprocess.run(
            [*_strongroom(inst.config_path), "backup", "--all", "--full"], capture_output=True, text=True, timeout=600
        )
        assert sweep.returncode == 0, sweep.stderr
        appliance = Appliance(inst.settings)
        try:
            mirror = Mirror(appliance.mirror_path(inst.tenant_id))
            assert_matches_truth(mirror, inst.sandbox.truth(inst.tenant_id))
            repository = appliance.repository(inst.tenant_id)
            repository.check()
            snapshots = repository.snapshots()
            points = appliance.points(inst.tenant_id)
            assert sorted(p.snapshot_id for p in points) == sorted(s.id for s in snapshots)
            assert len({p.snapshot_id for p in points}) == len(points)
            assert appliance.state.locks.holder(inst.tenant_id) is None
        finally:
            appliance.close()

"""The state database on real SQLite files, with real processes for the cross-process guarantees."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from appliance.errors import NotFound, OrganisationLocked, StoreError, UsageError
from appliance.models import OrgStatus, TokenSet
from appliance.settings import Settings
from appliance.store import GrantStatus, JobState, RunStatus, State, Watermark, open_state, state_path
from appliance.store.db import migrate
from appliance.store.locks import current_process, process_alive
from appliance.store.migrations import MIGRATIONS

if TYPE_CHECKING:
    from appliance.xero.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[2]
ACCESS = "access-token-4f1c9e2a7b"
REFRESH = "refresh-token-9d8e7f6a5b"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def state(data_dir: Path) -> Iterator[State]:
    with State.initialise(Settings(data_dir=data_dir)) as opened:
        yield opened


@pytest.fixture
def grant_id(state: State) -> str:
    state.apps.record("default", "client-id-1", "starter")
    return state.grants.create("default", tokens(0), user_id="user-1", user_name="a@example.com").grant_id


@pytest.fixture
def org_id(state: State, grant_id: str) -> str:
    return state.orgs.register("tenant-1", "Demo Company (AU)", app_name="default", grant_id=grant_id).org_id


def tokens(generation: int, previous: str | None = None) -> TokenSet:
    return TokenSet(
        access_token=f"{ACCESS}-{generation}",
        refresh_token=f"{REFRESH}-{generation}",
        expires_at=1_800_000_000.0 + generation,
        scope="offline_access accounting.invoices.read",
        previous_refresh_token=previous,
    )


def spawn(code: str, *args: object) -> subprocess.Popen[str]:
    """A real Python process running `code` against the project (argv[1:] = args)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def expect_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != expected:
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"child said {line!r}, expected {expected!r}; stderr:\n{stderr}")


# --- opening, migrations, files --------------------------------------------------------------


def test_migrates_from_empty_and_reopens_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with open_state(path) as db:
        assert db.schema_version == len(MIGRATIONS)
        tables = {row["name"] for row in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"apps", "grants", "organisations", "repo_keys", "runs", "points", "watermarks", "jobs"} <= tables
        assert "org_locks" in tables
        db.execute("INSERT INTO apps(name, client_id, first_seen, last_seen) VALUES ('a', 'c', 0, 0)")
    with open_state(path) as db:
        assert migrate(db) == 0
        assert db.schema_version == len(MIGRATIONS)
        assert db.scalar("SELECT count(*) FROM apps") == 1


OPEN_CHILD = """
    import sys
    from pathlib import Path
    from appliance.store import open_state

    print("ready", flush=True)
    sys.stdin.readline()
    with open_state(Path(sys.argv[1])) as db:
        print(db.schema_version, db.journal_mode, flush=True)
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "state.db"
    openers = [spawn(OPEN_CHILD, path) for _ in range(4)]
    for opener in openers:
        expect_line(opener, "ready")
    for opener in openers:
        assert opener.stdin is not None
        opener.stdin.write("go\n")
        opener.stdin.flush()
    for opener in openers:
        out, err = opener.communicate(timeout=60)
        assert opener.returncode == 0, err
        assert out.split() == [str(len(MIGRATIONS)), "wal"]


def test_an_appended_migration_is_applied_once_and_then_required(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_state(path).close()
    later = (*MIGRATIONS, "CREATE TABLE test_extra (extra_id TEXT PRIMARY KEY, step TEXT NOT NULL);")
    with open_state(path, migrations=later) as db:
        assert db.schema_version == len(later)
        assert db.scalar("SELECT count(*) FROM test_extra") == 0
    with open_state(path, migrations=later) as db:
        assert migrate(db, later) == 0
    # The older code now meets a newer schema and refuses to touch it.
    with pytest.raises(StoreError, match="newer than this strongroom knows") as caught:
        open_state(path)
    assert caught.value.hint is not None
    assert "upgrade" in caught.value.hint


def test_a_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    broken = (*MIGRATIONS, "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(StoreError, match=f"migration {len(MIGRATIONS) + 1}"):
        open_state(path, migrations=broken)
    with open_state(path) as db:
        assert db.schema_version == len(MIGRATIONS)
        assert db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'") == 0


def test_files_are_private_and_wal_is_on(data_dir: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        with State.initialise(Settings(data_dir=data_dir)) as state:
            state.apps.record("default", "client-id")
            assert state.db.journal_mode == "wal"
            with state.grants.refresh_lock("some-grant"):
                pass
            db_path = state_path(data_dir)
            for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), state.keyring.path):
                assert mode(path) == 0o600, path
            for directory in (data_dir, data_dir / "keys", data_dir / "locks"):
                assert mode(directory) == 0o700, directory
            assert all(mode(p) == 0o600 for p in (data_dir / "locks").iterdir())
    finally:
        os.umask(old_umask)
    # WAL is a property of the file: a plain connection sees it too.
    with open_state(db_path) as db:
        assert db.scalar("PRAGMA journal_mode") == "wal"
        assert db.scalar("PRAGMA foreign_keys") == 1


def test_an_existing_loose_data_dir_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "loose"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    open_state(directory / "state.db").close()
    assert mode(directory) == 0o700
    assert mode(directory / "state.db") == 0o600


def test_apsw_errors_surface_as_store_errors(state: State) -> None:
    with pytest.raises(StoreError, match="refused a change"):
        # Foreign keys are enforced: an organisation needs a known app and grant.
        state.db.execute(
            "INSERT INTO organisations(org_id, name, app_name, grant_id, created_at, updated_at) "
            "VALUES ('x', 'x', 'nope', 'nope', 0, 0)"
        )
    with pytest.raises(StoreError, match="state database error"):
        state.db.query("SELECT * FROM no_such_table")


def test_a_writer_blocked_past_the_busy_timeout_gets_a_store_error(state: State) -> None:
    other = open_state(state.db.path, busy_timeout_ms=50)
    try:
        with state.transaction():
            state.apps.record("first", "c1")
            with pytest.raises(StoreError, match="busy") as caught, other.transaction():
                pass
            assert caught.value.hint is not None
        # Once the first writer commits, the second one gets through and sees its write.
        with other.transaction():
            assert other.scalar("SELECT client_id FROM apps WHERE name = 'first'") == "c1"
    finally:
        other.close()


# --- transactions --------------------------------------------------------------------------


def test_a_failed_block_writes_nothing(state: State, org_id: str) -> None:
    def record_then_fail() -> None:
        with state.transaction():
            state.points.add(org_id, "a" * 64, taken_at=1.0, mode="full")
            state.watermarks.advance(org_id, "Invoices", updated_ms=1_700_000_000_000)
            raise RuntimeError("restic failed after the point was recorded")

    with pytest.raises(RuntimeError):
        record_then_fail()
    assert state.points.list(org_id) == []
    assert state.watermarks.all(org_id) == {}


def test_nested_blocks_are_savepoints(state: State, org_id: str) -> None:
    def inner_block_fails() -> None:
        with state.transaction():
            state.watermarks.advance(org_id, "Invoices", updated_ms=20)
            state.runs.get("missing")

    with state.transaction():
        state.watermarks.advance(org_id, "Contacts", updated_ms=10)
        with pytest.raises(NotFound):
            inner_block_fails()
        state.watermarks.advance(org_id, "Items", updated_ms=30)
    assert sorted(state.watermarks.all(org_id)) == ["Contacts", "Items"]


# --- grants and tokens -----------------------------------------------------------------------


def test_tokens_are_encrypted_at_rest(state: State, grant_id: str, org_id: str) -> None:
    state.grants.save(grant_id, tokens(1, previous=f"{REFRESH}-0"))
    password = state.orgs.repository_password(org_id)
    db_path = state_path(state.data_dir)
    files = [db_path, Path(f"{db_path}-wal")]

    def raw() -> bytes:
        return b"".join(path.read_bytes() for path in files if path.exists())

    for secret in (ACCESS, REFRESH, password):
        assert secret.encode() not in raw()
    loaded = state.grants.load(grant_id)
    assert loaded == tokens(1, previous=f"{REFRESH}-0")
    state.close()
    # After the final checkpoint everything sits in the main file: still nothing in clear.
    assert ACCESS.encode() not in db_path.read_bytes()
    assert REFRESH.encode() not in db_path.read_bytes()
    assert password.encode() not in db_path.read_bytes()
    # And it reads back through a new process-level open.
    with State.open_dir(state.data_dir) as reopened:
        assert reopened.grants.load(grant_id) == loaded
        assert reopened.orgs.repository_password(org_id) == password


def test_grant_rows_and_token_store_contract(state: State, grant_id: str) -> None:
    store: TokenStore = state.grants  # the Xero token manager's protocol, checked by mypy
    assert store.load(grant_id) == tokens(0)
    grant = state.grants.get(grant_id)
    assert (grant.app_name, grant.user_id, grant.status) == ("default", "user-1", GrantStatus.ACTIVE)
    assert grant.scopes == "offline_access accounting.invoices.read"
    assert state.grants.find_for_user("default", "user-1") == grant
    assert state.grants.load("unknown-grant") is None
    with pytest.raises(NotFound):
        state.grants.save("unknown-grant", tokens(1))
    with pytest.raises(NotFound, match="no Xero app"):
        state.grants.create("unrecorded-app", tokens(0))
    empty = state.grants.create("default")
    assert state.grants.load(empty.grant_id) is None
    assert [g.grant_id for g in state.grants.list(app_name="default")] == [grant_id, empty.grant_id]


def test_consent_lost_marks_the_grant_and_its_active_organisations(state: State, grant_id: str, org_id: str) -> None:
    state.orgs.register("tenant-2", "Second", app_name="default", grant_id=grant_id)
    state.orgs.set_status("tenant-2", OrgStatus.DISCONNECTED)
    assert state.consent_lost(grant_id) == [org_id]
    assert state.grants.get(grant_id).status is GrantStatus.NEEDS_CONSENT
    assert state.orgs.get(org_id).status is OrgStatus.NEEDS_CONSENT
    assert state.orgs.get("tenant-2").status is OrgStatus.DISCONNECTED
    # Reconnecting brings the organisation back and keeps what was learned about it.
    state.orgs.update_details(org_id, region="au", country="AU", base_currency="AUD")
    state.orgs.set_integrations(org_id, [{"app": "Dext", "does": "bills"}])
    again = state.orgs.register(org_id, "Demo Company (AU)", app_name="default", grant_id=grant_id)
    assert (again.status, again.region, again.base_currency) == (OrgStatus.ACTIVE, "au", "AUD")
    assert again.integrations == [{"app": "Dext", "does": "bills"}]


def _rotate(state: State, grant_id: str) -> None:
    """What a token refresh does to the store: read, (talk to Xero), write the successor."""
    current = state.grants.load(grant_id)
    assert current is not None
    generation = int(current.refresh_token.rsplit("-", 1)[1])
    os.sched_yield()
    state.grants.save(grant_id, tokens(generation + 1, previous=current.refresh_token))


ROTATE_CHILD = """
    import os, sys
    from pathlib import Path
    from appliance.store import State
    from appliance.models import TokenSet

    data_dir, grant_id, rounds, events = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    state = State.open_dir(Path(data_dir))
    print("ready", flush=True)
    sys.stdin.readline()
    log = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for _ in range(rounds):
        with state.grants.refresh_lock(grant_id, timeout=60):
            os.write(log, f"enter {os.getpid()}\\n".encode())
            current = state.grants.load(grant_id)
            generation = int(current.refresh_token.rsplit("-", 1)[1])
            os.sched_yield()
            nxt = TokenSet(
                access_token=current.access_token.rsplit("-", 1)[0] + f"-{generation + 1}",
                refresh_token=current.refresh_token.rsplit("-", 1)[0] + f"-{generation + 1}",
                expires_at=current.expires_at + 1,
                scope=current.scope,
                previous_refresh_token=current.refresh_token,
            )
            state.grants.save(grant_id, nxt)
            os.write(log, f"exit {os.getpid()}\\n".encode())
    print("done", flush=True)
"""


def test_refresh_lock_serialises_rotations_across_processes(state: State, grant_id: str, tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    workers, rounds = 3, 6
    children = [spawn(ROTATE_CHILD, state.data_dir, grant_id, rounds, events) for _ in range(workers)]
    for child in children:
        expect_line(child, "ready")
    for child in children:  # release them together so they contend for the lock
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        expect_line(child, "done")
        assert child.wait(timeout=60) == 0
    final = state.grants.load(grant_id)
    assert final is not None
    # No rotation was lost: each one started from its predecessor's durable result.
    assert final.refresh_token == f"{REFRESH}-{workers * rounds}"
    assert final.previous_refresh_token == f"{REFRESH}-{workers * rounds - 1}"
    lines = events.read_text().splitlines()
    assert len(lines) == 2 * workers * rounds
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        # Strict alternation: nobody entered while another process was inside.
        assert enter.startswith("enter ")
        assert leave == "exit " + enter.split()[1]
    assert len({line.split()[1] for line in lines}) == workers


def test_refresh_lock_excludes_threads_of_one_process(state: State, grant_id: str) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(10):
                with state.grants.refresh_lock(grant_id, timeout=60):
                    _rotate(state, grant_id)
        except BaseException as error:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = state.grants.load(grant_id)
    assert final is not None
    assert final.refresh_token == f"{REFRESH}-40"


async def test_arefresh_lock_excludes_asyncio_tasks(state: State, grant_id: str) -> None:
    inside = 0
    most_inside = 0

    async def refresher() -> None:
        nonlocal inside, most_inside
        for _ in range(5):
            async with state.grants.arefresh_lock(grant_id, timeout=60):
                inside += 1
                most_inside = max(most_inside, inside)
                await asyncio.to_thread(_rotate, state, grant_id)
                await asyncio.sleep(0)
                inside -= 1

    await asyncio.gather(*(refresher() for _ in range(4)))
    assert most_inside == 1
    final = state.grants.load(grant_id)
    assert final is not None
    assert final.refresh_token == f"{REFRESH}-20"


HOLD_REFRESH_LOCK_CHILD = """
    import sys
    from pathlib import Path
    from appliance.store import State

    state = State.open_dir(Path(sys.argv[1]))
    with state.grants.refresh_lock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.readline()
"""


def test_refresh_lock_times_out_while_held_and_is_freed_by_kill_9(state: State, grant_id: str) -> None:
    holder = spawn(HOLD_REFRESH_LOCK_CHILD, state.data_dir, grant_id)
    try:
        expect_line(holder, "locked")
        with (
            pytest.raises(StoreError, match="refresh lock") as caught,
            state.grants.refresh_lock(grant_id, timeout=0.2),
        ):
            pass
        assert caught.value.hint is not None
        # Another grant's lock is independent.
        with state.grants.refresh_lock("another-grant", timeout=0.2):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with state.grants.refresh_lock(grant_id, timeout=30):
        pass


# --- organisations ----------------------------------------------------------------------------


def test_organisation_fields_and_overrides(state: State, org_id: str) -> None:
    updated = state.orgs.update_details(org_id, region="uk", country="GB", base_currency="GBP")
    assert (updated.region, updated.country, updated.base_currency) == ("uk", "GB", "GBP")
    assert state.orgs.update_details(org_id, region=None).region is None
    state.orgs.set_settings_overrides(org_id, {"retention": {"daily": 14}})
    assert state.orgs.settings_overrides(org_id) == {"retention": {"daily": 14}}
    assert [o.org_id for o in state.orgs.list(status=OrgStatus.ACTIVE)] == [org_id]
    assert state.orgs.list(status=OrgStatus.DISCONNECTED) == []
    with pytest.raises(NotFound):
        state.orgs.get("nope")
    with pytest.raises(NotFound):
        state.orgs.set_status("nope", OrgStatus.ACTIVE)


def test_repository_passwords_are_created_once_per_region(state: State, org_id: str) -> None:
    local = state.orgs.repository_password(org_id)
    assert state.orgs.repository_password(org_id) == local
    offsite = state.orgs.repository_password(org_id, "au")
    assert offsite != local
    assert state.orgs.repository_regions(org_id) == ["au", "local"]
    state.orgs.set_repository_password(org_id, "au", offsite)
    with pytest.raises(StoreError, match="different repository password"):
        state.orgs.set_repository_password(org_id, "au", "something-else")
    with pytest.raises(NotFound):
        state.orgs.repository_password("nope")
    # Deleting the organisation must not silently delete the key to its backups.
    with pytest.raises(StoreError):
        state.db.execute("DELETE FROM organisations WHERE org_id = ?", (org_id,))


# --- organisation locks -----------------------------------------------------------------------


HOLD_ORG_LOCK_CHILD = """
    import sys
    from pathlib import Path
    from appliance.store import State

    state = State.open_dir(Path(sys.argv[1]))
    state.locks.acquire(sys.argv[2], purpose="backup", job_id=7)
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_org_lock_is_exclusive_and_recovers_after_kill_9(state: State, org_id: str) -> None:
    holder = spawn(HOLD_ORG_LOCK_CHILD, state.data_dir, org_id)
    try:
        expect_line(holder, "held")
        with pytest.raises(OrganisationLocked, match=f"job 7 \\(pid {holder.pid}\\)"):
            state.locks.acquire(org_id)
        seen = state.locks.holder(org_id)
        assert seen is not None
        assert (seen.owner_pid, seen.job_id, seen.purpose, seen.alive) == (holder.pid, 7, "backup", True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The holder died without releasing: its row is stale and is taken over.
    with state.locks.hold(org_id, purpose="backup") as mine:
        assert mine.owner_pid == os.getpid()
    assert state.locks.holder(org_id) is None


def test_org_lock_held_by_a_zombie_is_stale(state: State, org_id: str) -> None:
    holder = spawn(HOLD_ORG_LOCK_CHILD, state.data_dir, org_id)
    expect_line(holder, "held")
    holder.send_signal(signal.SIGKILL)
    # Wait for the exit without reaping it, so the pid still exists as a zombie.
    os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert os.path.exists(f"/proc/{holder.pid}")
        assert state.locks.clear_stale() == [org_id]
    finally:
        holder.wait(timeout=30)


def test_org_lock_with_a_reused_pid_is_stale(state: State, org_id: str) -> None:
    pid, start = current_process()
    assert process_alive(pid, start)
    assert not process_alive(pid, "1")  # same pid, different start time: a different process
    state.db.execute(
        "INSERT INTO org_locks(org_id, owner_pid, owner_start, acquired_at) VALUES (?, ?, '1', 0)", (org_id, pid)
    )
    holder = state.locks.acquire(org_id)
    assert holder.owner_start == start


def test_org_lock_excludes_the_same_process_until_released(state: State, org_id: str) -> None:
    with state.locks.hold(org_id, purpose="backup"):
        with pytest.raises(OrganisationLocked):
            state.locks.acquire(org_id)
        assert [h.org_id for h in state.locks.list()] == [org_id]
    assert state.locks.release(org_id) is False
    state.locks.acquire(org_id)
    assert state.locks.release(org_id) is True


# --- jobs -------------------------------------------------------------------------------------


CLAIM_CHILD = """
    import sys
    from pathlib import Path
    from appliance.store import JobState, State

    state = State.open_dir(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()
    while (job := state.jobs.claim_next(kinds=["backup"])) is not None:
        state.jobs.update_progress(job.job_id, {"pages": 1})
        state.jobs.finish(job.job_id, JobState.DONE, result={"by": job.owner_pid})
        print(job.job_id, flush=True)
    print("done", flush=True)
"""


def test_job_claims_are_atomic_across_processes(state: State) -> None:
    queued = [state.jobs.enqueue("backup", params={"n": n}).job_id for n in range(40)]
    state.jobs.enqueue("export")  # another kind: left alone
    workers = [spawn(CLAIM_CHILD, state.data_dir) for _ in range(4)]
    for worker in workers:
        expect_line(worker, "ready")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    claimed: dict[int, list[int]] = {}
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        lines = out.split()
        assert lines[-1] == "done"
        claimed[worker.pid] = [int(x) for x in lines[:-1]]
    everything = [job_id for ids in claimed.values() for job_id in ids]
    assert sorted(everything) == queued  # each job exactly once
    for pid, ids in claimed.items():
        for job_id in ids:
            job = state.jobs.get(job_id)
            assert (job.state, job.owner_pid, job.result, job.attempts) == (JobState.DONE, pid, {"by": pid}, 1)
    assert [job.kind for job in state.jobs.list(state=JobState.QUEUED)] == ["export"]


def test_one_running_job_per_organisation(state: State, org_id: str) -> None:
    first = state.jobs.enqueue("backup", org_id=org_id)
    second = state.jobs.enqueue("check", org_id=org_id)
    fleet = state.jobs.enqueue("retention")
    urgent = state.jobs.enqueue("restore", priority=10, not_before=state.db.now() + 3600)
    claimed = state.jobs.claim_next()
    assert claimed is not None
    assert claimed.job_id == first.job_id
    # The organisation is busy, the urgent job is not due yet: the fleet job is next.
    after = state.jobs.claim_next()
    assert after is not None
    assert after.job_id == fleet.job_id
    assert state.jobs.claim_next() is None
    state.jobs.finish(first.job_id, JobState.DONE)
    last = state.jobs.claim_next()
    assert last is not None
    assert last.job_id == second.job_id
    assert state.jobs.get(urgent.job_id).state is JobState.QUEUED


def test_cancelling_and_finishing_jobs(state: State) -> None:
    queued = state.jobs.enqueue("backup")
    assert state.jobs.request_cancel(queued.job_id).state is JobState.CANCELLED
    running = state.jobs.enqueue("export")
    claimed = state.jobs.claim_next()
    assert claimed is not None
    assert claimed.job_id == running.job_id
    assert state.jobs.update_progress(running.job_id, {"done": 1, "of": 3}) is False
    state.jobs.request_cancel(running.job_id)
    assert state.jobs.update_progress(running.job_id, {"done": 2, "of": 3}) is True
    finished = state.jobs.finish(running.job_id, JobState.CANCELLED, error="cancelled by a person")
    assert (finished.state, finished.progress, finished.error) == (
        JobState.CANCELLED,
        {"done": 2, "of": 3},
        "cancelled by a person",
    )
    with pytest.raises(StoreError, match="not running"):
        state.jobs.finish(running.job_id, JobState.DONE)
    with pytest.raises(StoreError, match="cannot finish as"):
        state.jobs.finish(running.job_id, JobState.QUEUED)


CLAIM_AND_HANG_CHILD = """
    import sys
    from pathlib import Path
    from appliance.store import State

    state = State.open_dir(Path(sys.argv[1]))
    job = state.jobs.claim_next()
    print(f"claimed {job.job_id}", flush=True)
    sys.stdin.readline()
"""


def test_a_job_whose_worker_was_killed_goes_back_to_the_queue(state: State) -> None:
    job = state.jobs.enqueue("backup")
    worker = spawn(CLAIM_AND_HANG_CHILD, state.data_dir)
    expect_line(worker, f"claimed {job.job_id}")
    assert state.jobs.recover_stale() == []  # its worker is alive
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert state.jobs.recover_stale() == [job.job_id]
    requeued = state.jobs.get(job.job_id)
    assert (requeued.state, requeued.owner_pid) == (JobState.QUEUED, None)
    again = state.jobs.claim_next()
    assert again is not None
    assert (again.job_id, again.attempts, again.owner_pid) == (job.job_id, 2, os.getpid())


# --- runs, points, watermarks -----------------------------------------------------------------


def test_run_lifecycle_with_checkpoint_and_resume(state: State, org_id: str) -> None:
    run = state.runs.start(org_id, "full")
    assert run.status is RunStatus.RUNNING
    state.runs.checkpoint(run.run_id, {"done": ["Accounts"], "Invoices": {"page": 3}}, calls=12, bytes=4096)
    paused = state.runs.finish(run.run_id, RunStatus.PAUSED, error="day budget spent")
    assert (paused.calls, paused.bytes, paused.error) == (12, 4096, "day budget spent")
    resumable = state.runs.resumable(org_id)
    assert resumable is not None
    assert resumable.checkpoint == {"done": ["Accounts"], "Invoices": {"page": 3}}
    resumed = state.runs.resume(run.run_id)
    assert (resumed.status, resumed.error, resumed.finished_at) == (RunStatus.RUNNING, None, None)
    done = state.runs.finish(run.run_id, RunStatus.SUCCEEDED, calls=30, bytes=9000)
    assert (done.status, done.checkpoint, done.calls) == (RunStatus.SUCCEEDED, None, 30)
    assert state.runs.resumable(org_id) is None
    with pytest.raises(StoreError, match="cannot be resumed"):
        state.runs.resume(run.run_id)
    with pytest.raises(StoreError):
        state.runs.start(org_id, "weekly")  # type: ignore[arg-type]
    latest = state.runs.latest(org_id, status=RunStatus.SUCCEEDED)
    assert latest is not None
    assert latest.run_id == run.run_id


def test_points_index(state: State, org_id: str) -> None:
    run = state.runs.start(org_id, "full")
    first = state.points.add(
        org_id, "ab12cd34" + "0" * 56, taken_at=100.0, mode="full", run_id=run.run_id, summary={"Invoices": 3}
    )
    second = state.points.add(org_id, "ab12ef56" + "1" * 56, taken_at=200.0, mode="incremental", size_bytes=10)
    assert [p.snapshot_id for p in state.points.list(org_id)] == [first.snapshot_id, second.snapshot_id]
    latest = state.points.latest(org_id)
    assert latest is not None
    assert latest.snapshot_id == second.snapshot_id
    assert state.points.get(org_id, "ab12cd").summary == {"Invoices": 3}
    assert state.points.get(org_id, second.short_id) == second
    with pytest.raises(UsageError, match="ambiguous"):
        state.points.get(org_id, "ab12")
    with pytest.raises(NotFound):
        state.points.get(org_id, "ff")
    with pytest.raises(NotFound):
        state.points.get(org_id, "%")  # LIKE wildcards are literal here
    assert state.points.remove(org_id, [first.snapshot_id, "gone"]) == 1
    assert state.points.list(org_id) == [second]


def test_watermarks_only_move_forward(state: State, org_id: str) -> None:
    mark = state.watermarks.advance(org_id, "Invoices", updated_ms=2_000, full_sweep_at=50.0)
    assert (mark.updated_ms, mark.full_sweep_at, mark.journal_offset) == (2_000, 50.0, None)
    mark = state.watermarks.advance(org_id, "Invoices", updated_ms=1_000)
    assert mark.updated_ms == 2_000
    state.watermarks.save_many(
        org_id,
        {
            "Invoices": Watermark("Invoices", updated_ms=3_000),
            "Journals": Watermark("Journals", journal_offset=500),
        },
    )
    marks = state.watermarks.all(org_id)
    assert (marks["Invoices"].updated_ms, marks["Invoices"].full_sweep_at) == (3_000, 50.0)
    assert marks["Journals"].journal_offset == 500
    assert state.watermarks.reset(org_id, "Journals") == 1
    assert state.watermarks.get(org_id, "Journals") is None
    assert state.watermarks.reset(org_id) == 1

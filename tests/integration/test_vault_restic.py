"""The vault adapter against the real restic binary on temporary repositories.

A fake `restic` script stands in only where real restic cannot be made to do something on demand: exit 3
(root reads any file, so an unreadable source cannot be staged), the exit codes of releases newer than the
installed one, and a restic that ignores SIGINT.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import (
    IncompleteSnapshot,
    RepositoryLocked,
    RepositoryMissing,
    ResticCancelled,
    ResticFailed,
    WrongPassword,
)
from appliance.settings import RetentionPolicy
from appliance.vault import argv, keys, retention
from appliance.vault.repository import Repository
from appliance.vault.runner import Endpoint, Runner

pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed"),
    pytest.mark.timeout(120),
]

PASSWORD = "correct-horse-battery-staple-4242"
ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # a safety net for waits on restic, never an assertion about speed


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()  # one `restic version` per module


def make_repository(tmp_path: Path, runner: Runner, name: str = "repo", password: str = PASSWORD) -> Repository:
    return Repository(str(tmp_path / name), password, cache_dir=tmp_path / f"{name}-cache", runner=runner)


@pytest.fixture
def repo(tmp_path: Path, runner: Runner) -> Repository:
    repository = make_repository(tmp_path, runner)
    repository.init()
    return repository


def write_source(root: Path) -> Path:
    """A small mirror-like tree: a few NDJSON shards and one bigger incompressible attachment."""
    (root / "records" / "Invoices").mkdir(parents=True, exist_ok=True)
    for month in range(1, 13):
        lines = [f'{{"InvoiceID":"{month:02d}-{n:04d}","Total":{n * 3}}}' for n in range(200)]
        (root / "records" / "Invoices" / f"2025-{month:02d}.ndjson").write_text("\n".join(lines) + "\n")
    (root / "attachments").mkdir(exist_ok=True)
    (root / "attachments" / "scan.pdf").write_bytes(os.urandom(2 << 20))
    (root / "manifest.json").write_text('{"schema_version": 1}\n')
    return root


def slow_source(root: Path) -> Path:
    """A directory restic needs many seconds to read: a 16 GiB sparse file (no disk space used; cancelled early)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "sparse.bin", "wb") as handle:
        handle.truncate(16 << 30)
    return root


def lock_files(repository_dir: Path) -> list[str]:
    return sorted(p.name for p in (repository_dir / "locks").iterdir())


def restic_children(parent_pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent_pid and comm == "restic":
            found.append(int(entry.name))
    return found


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


class BackgroundBackup:
    """A real, slow backup in a thread; `progressed` is set once restic reports bytes read (lock taken)."""

    def __init__(self, repository: Repository, source: Path) -> None:
        self.cancel = threading.Event()
        self.progressed = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(repository, source))

    def _run(self, repository: Repository, source: Path) -> None:
        try:
            repository.backup(source, host="slow", tags=["org:slow"], on_progress=self._progress, cancel=self.cancel)
        except BaseException as error:
            self.error = error

    def _progress(self, line: dict[str, Any]) -> None:
        if line.get("bytes_done"):
            self.progressed.set()

    def __enter__(self) -> BackgroundBackup:
        self._thread.start()
        assert self.progressed.wait(WAIT), "restic never reported progress"
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel.set()
        self._thread.join(WAIT)


# --- lifecycle and round trips ---------------------------------------------------------------------------------


def test_version_is_at_least_the_minimum(runner: Runner) -> None:
    assert runner.version() >= argv.MINIMUM


def test_init_creates_a_format_2_repository(tmp_path: Path, runner: Runner) -> None:
    repository = make_repository(tmp_path, runner)
    assert repository.exists() is False
    repository.init()
    assert repository.exists() is True
    assert repository.config()["version"] == 2
    assert repository.snapshots() == []


def _key_files(repository_dir: Path) -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_bytes()) for path in sorted((repository_dir / "keys").iterdir())}


def test_a_local_repository_gets_strongroom_s_cheap_key_which_restic_accepts(
    tmp_path: Path, repo: Repository, runner: Runner
) -> None:
    repo.snapshots()
    files = _key_files(tmp_path / "repo")
    [ours] = [key_id for key_id, document in files.items() if keys.is_lite(document)]
    [restics] = [key_id for key_id, document in files.items() if not keys.is_lite(document)]
    assert files[restics]["p"] * files[restics]["N"] > files[ours]["p"] * files[ours]["N"]
    assert (tmp_path / "repo" / "keys" / ours).stat().st_mode & 0o777 == 0o400  # as restic writes its files
    # restic opens the repository with our key alone: it is a real restic key of the same master key.
    (tmp_path / "repo" / "keys" / restics).rename(tmp_path / "restics-key")
    assert make_repository(tmp_path, runner).snapshots() == []
    # A damaged key of ours costs nothing but the hint: restic falls back to its own key.
    (tmp_path / "restics-key").rename(tmp_path / "repo" / "keys" / restics)
    damaged = tmp_path / "repo" / "keys" / ours
    damaged.chmod(0o600)
    damaged.write_bytes(json.dumps({**files[ours], "data": files[restics]["data"]}).encode())
    again = make_repository(tmp_path, runner)
    assert again.snapshots() == []
    assert len(_key_files(tmp_path / "repo")) == 2  # found as ours (by its marker), not added a second time


def test_no_key_is_added_to_another_user_s_repository(tmp_path: Path, runner: Runner) -> None:
    """root running the CLI on the service user's data must not leave a root-only key file behind: restic, as
    the owner, stops at a key file it cannot read."""
    repository = make_repository(tmp_path, runner)
    repository.init()
    keys_dir = tmp_path / "repo" / "keys"
    [restics] = list(keys_dir.iterdir())
    os.chown(keys_dir, os.geteuid() + 4242, -1)  # as if the service user owned it
    assert make_repository(tmp_path, runner).snapshots() == []
    assert list(keys_dir.iterdir()) == [restics]


def test_second_backup_deduplicates_and_finds_its_parent(tmp_path: Path, repo: Repository) -> None:
    source = write_source(tmp_path / "org-1" / "current")
    first = repo.backup(source, host="org-1", tags=["org:1", "run:1"])
    (source / "records" / "Invoices" / "2025-12.ndjson").write_text('{"InvoiceID":"12-0000","Total":1}\n')
    second = repo.backup(source, host="org-1", tags=["org:1", "run:2"])

    assert len(first.snapshot_id) == 64  # full id, resolved on 0.14 which prints 8 characters
    assert first.files_new == 14
    assert second.files_changed == 1
    assert second.files_unmodified == 13
    assert second.data_added < first.data_added / 10

    snapshots = repo.snapshots(host="org-1", tags=["org:1"])
    assert [s.id for s in snapshots] == [first.snapshot_id, second.snapshot_id]
    assert snapshots[1].parent == first.snapshot_id  # stable host and path: restic found the parent
    assert snapshots[1].paths == [str(source.resolve())]
    assert snapshots[1].tags == ["org:1", "run:2"]
    assert repo.snapshots(tags=["run:2"]) == [snapshots[1]]
    assert repo.snapshots(host="org-2") == []
    # A local repository's snapshot ids are read from its snapshots/ directory, no restic start needed.
    assert repo.local_snapshot_ids() == {first.snapshot_id, second.snapshot_id}
    remote = Repository("s3:http://127.0.0.1:9/bucket", PASSWORD, cache_dir=tmp_path / "cache")
    assert remote.local_snapshot_ids() is None


def test_ls_dump_restore_round_trip(tmp_path: Path, repo: Repository) -> None:
    source = write_source(tmp_path / "src")
    point = repo.backup(source, host="org-1", tags=[])

    nodes = repo.ls(point.snapshot_id, "/records")
    paths = {node["path"] for node in nodes}
    assert "/records/Invoices/2025-01.ndjson" in paths
    assert all(path.startswith("/records") for path in paths)  # snapshot paths do not depend on tmp_path
    assert len(repo.ls(point.snapshot_id)) == 17  # 14 files; records/, records/Invoices/, attachments/

    with open(tmp_path / "scan.out", "wb") as out:
        repo.dump(point.snapshot_id, "/attachments/scan.pdf", out)
    assert (tmp_path / "scan.out").read_bytes() == (source / "attachments" / "scan.pdf").read_bytes()

    archive = io.BytesIO()
    repo.dump(point.snapshot_id, "/records", archive)
    archive.seek(0)
    with tarfile.open(fileobj=archive) as tar:
        assert "records/Invoices/2025-07.ndjson" in tar.getnames()

    target = tmp_path / "restored"
    repo.restore(point.snapshot_id, target)
    for original in source.rglob("*"):
        if original.is_file():
            assert (target / original.relative_to(source)).read_bytes() == original.read_bytes()

    partial = tmp_path / "partial"
    repo.restore(point.snapshot_id, partial, include=["/manifest.json"])
    assert [p.name for p in partial.rglob("*") if p.is_file()] == ["manifest.json"]

    with pytest.raises(ResticFailed, match="not found"):
        repo.dump(point.snapshot_id, "/no/such/file", io.BytesIO())


def test_forget_follows_the_policy_model_then_prune_and_check(tmp_path: Path, repo: Repository) -> None:
    source = tmp_path / "org-1"
    source.mkdir()
    base = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)
    times = [base + timedelta(days=i) for i in range(4)]
    times += [times[-1] + timedelta(hours=5)]  # two points on the last day: only the newer one counts
    ids = []
    for index, moment in enumerate(times):
        (source / "day.bin").write_bytes(os.urandom(64 << 10))  # unique data per point, freed by prune
        ids.append(repo.backup(source, host="org-1", tags=["org:1"], time=moment).snapshot_id)
        (source / f"note-{index}.txt").write_text(str(index))

    policy = RetentionPolicy(daily=2, weekly=0, monthly=0, yearly=0)
    # restic buckets days in the zone the snapshot was stamped in: the local zone of this machine
    predicted = {ids[i] for i in retention.predict_kept([t.astimezone() for t in times], policy)}
    assert predicted == {ids[2], ids[4]}
    protected_id = ids[0]
    before = repo.stats()

    result = repo.forget(policy, host="org-1", keep_ids=[protected_id])

    assert set(result.kept) == predicted | {protected_id}
    assert result.protected == [protected_id]
    assert set(result.removed) == set(ids) - predicted - {protected_id}
    assert "daily snapshot" in result.reasons[ids[-1]]
    assert {s.id for s in repo.snapshots()} == predicted | {protected_id}

    repo.prune()
    after = repo.stats()
    assert after["total_blob_count"] < before["total_blob_count"]
    repo.check(read_data_subset="1/2")

    # A disconnected organisation: even a policy that keeps nothing by date keeps the last point.
    none = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0)
    repo.forget(none, host="org-1", disconnected=True)
    assert [s.id for s in repo.snapshots()] == [ids[-1]]


def test_copy_to_a_second_repository_with_shared_chunker_parameters(tmp_path: Path, runner: Runner) -> None:
    primary = make_repository(tmp_path, runner, "primary")
    primary.init()
    replica = make_repository(tmp_path, runner, "replica", password="another-password-for-the-replica")
    source = write_source(tmp_path / "src")
    point = primary.backup(source, host="org-1", tags=["org:1"])
    primary.backup(write_source(tmp_path / "other"), host="org-2", tags=["org:2"])

    replica.init(copy_chunker_params_from=primary)
    assert replica.config()["chunker_polynomial"] == primary.config()["chunker_polynomial"]
    primary.copy_to(replica, host="org-1")
    primary.copy_to(replica, host="org-1")  # idempotent: already-copied snapshots are skipped

    copied = replica.snapshots()
    assert len(copied) == 1
    assert copied[0].original == point.snapshot_id
    assert copied[0].hostname == "org-1"
    out = io.BytesIO()
    replica.dump(copied[0].id, "/manifest.json", out)
    assert out.getvalue() == (source / "manifest.json").read_bytes()
    replica.check()


# --- errors ------------------------------------------------------------------------------------------------------


def test_wrong_password_is_never_mistaken_for_a_missing_repository(
    tmp_path: Path, repo: Repository, runner: Runner
) -> None:
    intruder = make_repository(tmp_path, runner, password="not-the-password")
    with pytest.raises(WrongPassword):
        intruder.snapshots()
    with pytest.raises(WrongPassword):
        intruder.exists()


def test_missing_repository(tmp_path: Path, runner: Runner) -> None:
    nowhere = make_repository(tmp_path, runner, "nowhere")
    assert nowhere.exists() is False
    with pytest.raises(RepositoryMissing):
        nowhere.snapshots()
    with pytest.raises(RepositoryMissing):
        nowhere.backup(write_source(tmp_path / "src"), host="h", tags=[])


def test_a_running_backup_locks_out_prune_check_and_forget(tmp_path: Path, repo: Repository, runner: Runner) -> None:
    other = make_repository(tmp_path, runner)  # a second client of the same repository
    with BackgroundBackup(repo, slow_source(tmp_path / "slow")) as backup:
        with pytest.raises(RepositoryLocked):
            other.prune()
        with pytest.raises(RepositoryLocked):
            other.check()
        assert other.snapshots() == []  # non-exclusive commands still work
        assert lock_files(tmp_path / "repo")  # the stale-only unlock before prune left the live lock alone
    assert isinstance(backup.error, ResticCancelled)
    assert lock_files(tmp_path / "repo") == []


def test_sigterm_on_014_leaves_a_stale_lock_that_exclusive_commands_clear(
    tmp_path: Path, repo: Repository, runner: Runner
) -> None:
    with BackgroundBackup(repo, slow_source(tmp_path / "slow")) as backup:
        (pid,) = restic_children(os.getpid())
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: backup.error is not None, "the backup to fail")
    assert isinstance(backup.error, ResticFailed | ResticCancelled)
    if not argv.Feature.CLEAN_SIGTERM.available(runner.version()):
        assert lock_files(tmp_path / "repo"), "restic 0.14 was expected to leave its lock on SIGTERM"
    repo.prune()  # RepositoryLocked -> stale-only unlock -> retry
    assert lock_files(tmp_path / "repo") == []
    repo.check()


def test_sigint_cancel_makes_restic_release_its_lock(tmp_path: Path, repo: Repository, runner: Runner) -> None:
    # Through the runner directly: Repository would also run a stale-only unlock after a cancel, which would
    # hide whether restic released the lock itself.
    endpoint = Endpoint(str(tmp_path / "repo"), PASSWORD, tmp_path / "repo-cache")
    cancel = threading.Event()
    seen: list[dict[str, Any]] = []

    def on_json(line: dict[str, Any]) -> None:
        seen.append(line)
        if line.get("bytes_done"):
            assert lock_files(tmp_path / "repo")
            cancel.set()

    with pytest.raises(ResticCancelled, match="cancelled"):
        runner.run(
            argv.backup(runner.version(), host="slow"),
            endpoint,
            cwd=slow_source(tmp_path / "slow"),
            on_json=on_json,
            cancel=cancel,
        )
    assert cancel.is_set()
    assert lock_files(tmp_path / "repo") == []
    assert repo.snapshots() == []  # no partial snapshot either


def test_secrets_stay_out_of_cmdline_and_environ(tmp_path: Path, repo: Repository, monkeypatch: Any) -> None:
    monkeypatch.setenv("RESTIC_PASSWORD", "inherited-restic-password")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "inherited-aws-secret")
    with BackgroundBackup(repo, slow_source(tmp_path / "slow")):
        (pid,) = restic_children(os.getpid())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"--password-file\0/dev/fd/" in cmdline
    assert b"--key-hint\0" in cmdline  # Strongroom's cheap key first (appliance.vault.keys); no secret
    for secret in (PASSWORD.encode(), str(tmp_path / "repo").encode()):
        assert secret not in cmdline
    for secret in (PASSWORD.encode(), b"inherited-restic-password", b"inherited-aws-secret"):
        assert secret not in environ
    assert f"RESTIC_CACHE_DIR={tmp_path / 'repo-cache'}".encode() in environ.split(b"\0")


KILLED_PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from appliance.vault.repository import Repository

    location, source = sys.argv[1], Path(sys.argv[2])
    repository = Repository(location, sys.stdin.readline().strip(), cache_dir=Path(location + "-cache"))

    def progress(line):
        if line.get("bytes_done"):
            print("progress", flush=True)

    repository.backup(source, host="doomed", tags=[], on_progress=progress)
    """
)


def test_kill_9_of_the_python_parent_makes_restic_release_its_lock(tmp_path: Path, repo: Repository) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", KILLED_PARENT, str(tmp_path / "repo"), str(slow_source(tmp_path / "slow"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    try:
        assert parent.stdin is not None
        assert parent.stdout is not None
        parent.stdin.write(PASSWORD + "\n")
        parent.stdin.close()
        assert parent.stdout.readline().strip() == "progress"
        (restic_pid,) = restic_children(parent.pid)
        assert lock_files(tmp_path / "repo")
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: gone(restic_pid), "restic to exit after its parent died")
    finally:
        if parent.poll() is None:
            parent.kill()
    assert lock_files(tmp_path / "repo") == []


# --- exit codes real restic cannot be made to produce here: a fake restic ---------------------------------------

FULL_ID = "0123abcd" + "e" * 56


def fake_restic(tmp_path: Path, version: str, body: str) -> str:
    """A shell script answering `version` like restic `version` and running `body` for everything else."""
    script = tmp_path / f"fake-restic-{version}"
    script.write_text(
        "#!/bin/sh\n"
        f'for arg in "$@"; do if [ "$arg" = version ]; then echo "restic {version} compiled with go1.22"; exit 0; fi; '
        "done\n" + textwrap.dedent(body)
    )
    script.chmod(0o755)
    return str(script)


def test_exit_3_raises_incomplete_snapshot_with_the_full_id(tmp_path: Path) -> None:
    body = f"""
    case " $* " in
      *" backup "*)
        echo '{{"message_type":"status","percent_done":0.5,"bytes_done":10}}'
        echo '{{"message_type":"summary","files_new":1,"data_added":10,"snapshot_id":"0123abcd"}}'
        echo '{{"message_type":"error","error":{{"Op":"open","Path":"/x","Err":13}},"during":"archival"}}' >&2
        echo 'Warning: at least one source file could not be read' >&2
        exit 3 ;;
      *" snapshots "*)
        echo '[{{"id":"{FULL_ID}","short_id":"0123abcd","time":"2025-06-01T02:00:00Z","hostname":"h","paths":["/x"]}}]'
        exit 0 ;;
    esac
    exit 1
    """
    repository = Repository(
        str(tmp_path / "repo"), PASSWORD, cache_dir=tmp_path / "cache", binary=fake_restic(tmp_path, "0.14.0", body)
    )
    progress: list[dict[str, Any]] = []
    with pytest.raises(IncompleteSnapshot, match="could not read") as caught:
        repository.backup(tmp_path, host="h", tags=[], on_progress=progress.append)
    assert caught.value.snapshot_id == FULL_ID
    assert progress == [{"message_type": "status", "percent_done": 0.5, "bytes_done": 10}]


@pytest.mark.parametrize(
    ("code", "expected"), [(10, RepositoryMissing), (11, RepositoryLocked), (12, WrongPassword), (1, ResticFailed)]
)
def test_newer_releases_are_classified_by_exit_code(tmp_path: Path, code: int, expected: type[Exception]) -> None:
    body = f"""
    echo '{{"message_type":"exit_error","code":{code},"message":"told by code {code}"}}' >&2
    exit {code}
    """
    repository = Repository(
        str(tmp_path / "repo"), PASSWORD, cache_dir=tmp_path / "cache", binary=fake_restic(tmp_path, "0.18.0", body)
    )
    with pytest.raises(expected, match=f"told by code {code}"):
        repository.snapshots()


def test_the_fake_reads_our_password_pipe(tmp_path: Path) -> None:
    body = """
    while [ $# -gt 0 ]; do
      if [ "$1" = --password-file ]; then cat "$2" > "$(dirname "$0")/seen-password"; fi
      shift
    done
    echo '[]'
    """
    repository = Repository(
        str(tmp_path / "repo"), PASSWORD, cache_dir=tmp_path / "cache", binary=fake_restic(tmp_path, "0.14.0", body)
    )
    assert repository.snapshots() == []
    assert (tmp_path / "seen-password").read_text() == PASSWORD


def test_timeout_sends_sigint_first(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    body = f"""
    trap 'echo INT >> {signals}; echo "signal interrupt received, cleaning up" >&2; kill $!; exit 130' INT
    trap 'echo TERM >> {signals}; exit 143' TERM
    echo '{{"message_type":"status","percent_done":0.1}}'
    sleep 30 &
    wait $!
    """
    runner = Runner(fake_restic(tmp_path, "0.14.0", body))
    endpoint = Endpoint(str(tmp_path / "repo"), PASSWORD, tmp_path / "cache")
    with pytest.raises(ResticCancelled, match="timed out"):
        runner.run(argv.backup(runner.version(), host="h"), endpoint, cwd=tmp_path, timeout=2)
    assert signals.read_text() == "INT\n"


@pytest.mark.timeout(60)
def test_a_restic_that_ignores_sigint_is_killed_with_its_children(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    body = f"""
    trap 'echo INT >> {signals}' INT
    sleep 30 &
    echo $! > {tmp_path / "grandchild"}
    echo '{{"message_type":"status","percent_done":0.1}}'
    while true; do wait $!; done
    """
    runner = Runner(fake_restic(tmp_path, "0.14.0", body), grace_seconds=0.5)
    endpoint = Endpoint(str(tmp_path / "repo"), PASSWORD, tmp_path / "cache")
    cancel = threading.Event()
    with pytest.raises(ResticCancelled):
        runner.run(argv.snapshots(runner.version()), endpoint, on_json=lambda line: cancel.set(), cancel=cancel)
    assert signals.read_text() == "INT\n"
    # The sleeping grandchild held restic's stdout; the run returned, so the whole process group was killed.
    wait_for(lambda: gone(int((tmp_path / "grandchild").read_text())), "the grandchild to die")


def test_children_left_behind_by_a_finished_restic_do_not_hang_the_runner(tmp_path: Path) -> None:
    body = f"""
    sleep 30 &
    echo $! > {tmp_path / "grandchild"}
    echo '[]'
    exit 0
    """
    runner = Runner(fake_restic(tmp_path, "0.14.0", body))
    endpoint = Endpoint(str(tmp_path / "repo"), PASSWORD, tmp_path / "cache")
    assert runner.run(argv.snapshots(runner.version()), endpoint).stdout == "[]"
    wait_for(lambda: gone(int((tmp_path / "grandchild").read_text())), "the grandchild to die")

"""One restic repository, as the backup engine uses it.

This module owns the high-level operations on a repository (init, backup, list, read back, retention, check,
copy) and the parsing of restic's JSON into `appliance.models` types. It gets its arguments from
`appliance.vault.argv` and runs them through `appliance.vault.runner`; it never starts a process itself and
never puts a password or a repository location on a command line.

It does not serialise access: exclusive operations (forget, prune, check) fail with `RepositoryLocked` while
another restic process works on the repository. Callers run one job per repository at a time (the daemon's
per-organisation queue); restic 0.14 cannot wait for a lock (`--retry-lock` is 0.16+), newer releases wait up
to `lock_wait_seconds`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from appliance.errors import (
    IncompleteSnapshot,
    RepositoryLocked,
    RepositoryMissing,
    ResticCancelled,
    ResticFailed,
    VaultError,
)
from appliance.files import write_whole
from appliance.models import BackupSummary, Snapshot
from appliance.settings import RetentionPolicy
from appliance.vault import argv as restic_argv
from appliance.vault import keys, retention
from appliance.vault.argv import Feature, Version
from appliance.vault.runner import Completed, Endpoint, Runner, mask_location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetResult:
    """What a retention run decided: snapshot ids kept and removed, and why each was kept."""

    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    """Ids the policy would have removed but the caller asked to keep."""
    reasons: dict[str, list[str]] = field(default_factory=dict)
    """Kept snapshot id -> restic's reasons ("daily snapshot", "last snapshot", ...)."""


def _snapshot(data: Mapping[str, Any]) -> Snapshot:
    snapshot_id = str(data["id"])
    return Snapshot(
        id=snapshot_id,
        # `short_id` is deprecated after 0.16 and may disappear; it is always the first 8 hex digits.
        short_id=str(data.get("short_id") or snapshot_id[:8]),
        time=str(data["time"]),
        hostname=str(data.get("hostname", "")),
        paths=list(data.get("paths") or []),
        tags=list(data.get("tags") or []),
        parent=data.get("parent"),
        original=data.get("original"),
    )


def _summary(data: Mapping[str, Any], snapshot_id: str) -> BackupSummary:
    return BackupSummary(
        snapshot_id=snapshot_id,
        files_new=int(data.get("files_new", 0)),
        files_changed=int(data.get("files_changed", 0)),
        files_unmodified=int(data.get("files_unmodified", 0)),
        data_added=int(data.get("data_added", 0)),
        total_files_processed=int(data.get("total_files_processed", 0)),
        total_bytes_processed=int(data.get("total_bytes_processed", 0)),
        total_duration=float(data.get("total_duration", 0.0)),
    )


def _forget_groups(text: str) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Kept ids, removed ids and keep reasons from `forget --json` (a list of host/path groups)."""
    kept: list[str] = []
    removed: list[str] = []
    reasons: dict[str, list[str]] = {}
    for group in _json_document(text) or []:
        keep = group.get("keep") or []
        kept += [str(s["id"]) for s in keep]
        removed += [str(s["id"]) for s in group.get("remove") or []]
        # `reasons` parallels `keep` (restic `ApplyPolicy`); its snapshots carry no id on 0.14.
        for snapshot, reason in zip(keep, group.get("reasons") or [], strict=False):
            reasons[str(snapshot["id"])] = list(reason.get("matches") or [])
    return kept, removed, reasons


def _is_storage_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _json_document(text: str) -> Any:
    """The first JSON document in `text` (restic may follow it with plain text, e.g. `forget --prune`)."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise ResticFailed(f"restic printed no JSON: {text[:200]!r}")
    try:
        document, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError as error:
        raise ResticFailed(f"restic printed invalid JSON: {error}") from error
    return document


_KEY_DERIVATIONS = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="key-derivation")
"""One thread derives keys (adding Strongroom's key: restic's own scrypt, 32 MiB at restic's calibration,
then ours). glibc keeps each thread's freed scrypt memory in that thread's arena: with the derivations on the
jobs' threads, 30 first backups in the fleet bench held 289 MiB at peak against 130 MiB without the key."""


def _lite_key_for(document: dict[str, Any], password: str) -> bytes:
    """Strongroom's key file for the repository whose restic key is `document` (KeyFileError if it does not
    open with `password`)."""
    return keys.seal_key(keys.open_key(document, password), password)


class Repository:
    """A restic repository: one per organisation (per region), format 2 with compression `auto`."""

    def __init__(
        self,
        location: str,
        password: str,
        *,
        cache_dir: Path,
        binary: str = "restic",
        env: Mapping[str, str] | None = None,
        runner: Runner | None = None,
        timeout_seconds: float | None = None,
        lock_wait_seconds: int | None = None,
    ) -> None:
        """`location`: a restic repository (path, `s3:`, `rest:`, `sftp:`, `rclone:`), credentials allowed in it;
        `env`: backend credentials for this repository only; `runner`: share one to detect the version once;
        `timeout_seconds`: per restic call except backup, restore and copy (which take as long as they take)."""
        if not password:
            raise ValueError("a repository needs a password")
        self._endpoint = Endpoint(location=location, password=password, cache_dir=cache_dir, env=dict(env or {}))
        self._runner = runner or Runner(binary)
        self._timeout = timeout_seconds
        self._lock_wait = lock_wait_seconds
        self._hint_known = False
        self._hint_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Repository({mask_location(self._endpoint.location)!r})"

    @property
    def location(self) -> str:
        """The location with any credentials masked (for logs and messages)."""
        return mask_location(self._endpoint.location)

    def version(self) -> Version:
        return self._runner.version()

    def _run(self, args: restic_argv.Argv, **kwargs: Any) -> Completed:
        kwargs.setdefault("timeout", self._timeout)
        try:
            result = self._runner.run(args, self._prepared(), **kwargs)
        except ResticCancelled:
            self._release_after_cancel()
            raise
        if isinstance(result.error, ResticCancelled):
            self._release_after_cancel()
        return result

    def _release_after_cancel(self) -> None:
        # restic 0.14 creates its lock file, sleeps 200 ms, then checks for other locks before it registers the
        # lock for cleanup (`internal/restic/lock.go` newLock, `waitBeforeLockCheck`); a SIGINT in that window
        # exits 130 and leaves the file behind (measured). Its PID is dead now, so a stale-only unlock removes it.
        try:
            self._runner.run(restic_argv.unlock(self.version()), self._endpoint, timeout=self._timeout)
        except VaultError as error:
            log.warning("could not remove stale locks in %s after a cancel: %s", self.location, error)

    def _local_path(self) -> Path | None:
        """The directory of a repository on a local path; None for remote backends (s3:, rest:, sftp:, ...)."""
        path = self._endpoint.location.removeprefix("local:")
        return Path(path) if path.startswith("/") else None  # a local repository is always absolute

    def _prepared(self) -> Endpoint:
        """The endpoint, with the key hint once known: a local repository gets Strongroom's cheap key on first
        use (`appliance.vault.keys`: saves the half-second key derivation of every later restic start)."""
        if not self._hint_known:
            with self._hint_lock:
                if not self._hint_known:
                    hint, self._hint_known = self._lite_key()
                    if hint is not None:
                        self._endpoint = dataclasses.replace(self._endpoint, key_hint=hint)
        return self._endpoint

    def _lite_key(self) -> tuple[str | None, bool]:
        """(id of Strongroom's key, whether that is final). Adds the key when the repository has none yet; not
        final while the repository does not exist. Never fatal: without a hint restic tries every key."""
        root = self._local_path()
        if root is None:
            return None, True
        directory = root / "keys"
        try:
            entries = sorted(entry for entry in directory.iterdir() if _is_storage_id(entry.name))
        except FileNotFoundError:
            return None, False  # not initialised yet
        except OSError as error:
            log.warning("could not read the keys of %s: %s", self.location, error)
            return None, True
        found: list[tuple[Path, dict[str, Any]]] = []
        for entry in entries:
            try:
                document = orjson.loads(entry.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if isinstance(document, dict):
                if keys.is_lite(document):
                    return entry.name, True  # a wrong hint costs nothing: restic then tries every key
                found.append((entry, document))
        try:
            owner = directory.stat().st_uid
        except OSError:
            return None, True
        if owner != os.geteuid():
            # Another user's repository (root running the CLI on the service's data): a key file we wrote
            # would be ours alone, unreadable to the owner, and restic stops at a key it cannot read.
            return None, True
        for entry, document in found:
            try:
                content = _KEY_DERIVATIONS.submit(_lite_key_for, document, self._endpoint.password).result()
            except keys.KeyFileError:
                continue
            key_id = keys.key_id(content)
            try:
                write_whole(directory / key_id, content, mode=entry.stat().st_mode & 0o777)  # 0400, as restic's
            except OSError as error:
                log.warning("could not add Strongroom's key to %s: %s", self.location, error)
                return None, True
            log.info(
                "added Strongroom's key %s to %s (restic starts skip the slow key derivation)",
                key_id[:8],
                self.location,
            )
            return key_id, True
        return None, True  # the password opens no key: restic says so

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True if a repository is there and this password opens it; False if there is none.

        Raises WrongPassword when one exists but the password does not open it: that is never "missing"."""
        try:
            self._run(restic_argv.without_lock(restic_argv.cat_config(self.version())))
        except RepositoryMissing:
            return False
        return True

    def config(self) -> dict[str, Any]:
        """The repository config (`version`, `id`, `chunker_polynomial`)."""
        document = _json_document(self._run(restic_argv.without_lock(restic_argv.cat_config(self.version()))).stdout)
        if not isinstance(document, dict):
            raise ResticFailed("restic cat config did not print an object")
        return document

    def init(self, *, copy_chunker_params_from: Repository | None = None) -> None:
        """Create the repository in format 2. With `copy_chunker_params_from`, share that repository's chunker
        parameters so `copy_to`/`copy` between them deduplicates (restic doc/045_working_with_repos.rst)."""
        self._endpoint.cache_dir.mkdir(parents=True, exist_ok=True)
        source = copy_chunker_params_from._prepared() if copy_chunker_params_from is not None else None
        args = restic_argv.init(self.version(), copy_chunker_params=source is not None)
        self._run(args, source=source)
        log.info("initialised restic repository %s", self.location)

    # --- writing -----------------------------------------------------------------------------------------------

    def backup(
        self,
        source: Path,
        *,
        host: str,
        tags: Sequence[str],
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        cancel: threading.Event | None = None,
        time: datetime | None = None,
    ) -> BackupSummary:
        """Back up the directory `source` as one snapshot whose tree holds its contents at `/`.

        restic runs inside `source` and backs up `.`: the snapshot's `paths` is the absolute `source` (stable per
        organisation, so parent detection and `forget` grouping work; restic 0.14 `cmd_backup.go`
        `findParentSnapshot`) and paths inside the snapshot (`/records/...`) do not depend on where the data
        directory lives. `on_progress` gets restic's `status` lines. `time` backdates the snapshot (tests,
        imports). Raises IncompleteSnapshot (exit 3; its `snapshot_id` names the untrusted snapshot) and
        ResticCancelled when `cancel` is set."""
        source = source.resolve()
        if not source.is_dir():
            raise ResticFailed(f"backup source {source} is not a directory")
        version = self.version()
        args = restic_argv.backup(version, host=host, tags=tags, time=time, retry_lock_seconds=self._lock_wait)

        def forward(line: dict[str, Any]) -> None:
            if on_progress is not None and line.get("message_type") == "status":
                on_progress(line)

        result = self._run(args, cwd=source, on_json=forward, cancel=cancel, check=False, timeout=None)
        summary = result.summary
        error = result.error
        if error is not None and not isinstance(error, IncompleteSnapshot):
            raise error
        if summary is None or not summary.get("snapshot_id"):
            if error is not None:
                raise error
            raise ResticFailed("restic backup finished without a summary line")
        snapshot_id = str(summary["snapshot_id"])
        if not Feature.FULL_SNAPSHOT_ID.available(version) or len(snapshot_id) < 64:
            # 0.14 prints the 8-character short id (docs/restic.md §1.2); record the full one.
            snapshot_id = self._resolve(snapshot_id)
        if isinstance(error, IncompleteSnapshot):
            error.snapshot_id = snapshot_id
            raise error
        return _summary(summary, snapshot_id)

    def local_snapshot_ids(self) -> set[str] | None:
        """The full ids of the snapshots in a repository on a local path, read from its `snapshots/` directory
        without starting restic (each start repeats the key derivation); None for remote backends.

        restic's repository format names every file but `config` by its storage id, and a snapshot's storage
        id is the snapshot id (restic doc/design.rst, "Repository Format" and "Snapshots"); a snapshot file is
        written only once its data is complete, and is never modified."""
        root = self._local_path()
        if root is None:
            return None
        try:
            return {entry.name for entry in (root / "snapshots").iterdir() if _is_storage_id(entry.name)}
        except OSError:
            return None

    def _resolve(self, short_id: str) -> str:
        local = self.local_snapshot_ids()
        if local is not None:
            found = [snapshot_id for snapshot_id in local if snapshot_id.startswith(short_id)]
            if len(found) == 1:
                return found[0]
        matches = [s.id for s in self._snapshots(snapshot_ids=[short_id]) if s.id.startswith(short_id)]
        if len(matches) != 1:
            raise ResticFailed(f"cannot resolve snapshot {short_id}: {len(matches)} matches")
        return matches[0]

    def forget(
        self,
        policy: RetentionPolicy,
        *,
        host: str | None = None,
        keep_ids: Sequence[str] = (),
        disconnected: bool = False,
    ) -> ForgetResult:
        """Apply `policy` (per host and path group) and forget what it does not keep, except `keep_ids`.

        Without `keep_ids` this is one `forget --json` by policy. With them it takes two steps, since restic has
        no "keep this id" flag: a lock-free dry run computes the decision, then the removals minus `keep_ids`
        are forgotten by explicit id. `disconnected` adds `--keep-last 1`: a disconnected organisation's last
        point is never pruned. Call `prune` afterwards to free space (`forget --prune` mixes plain text into the
        JSON on stdout, docs/restic.md)."""
        version = self.version()
        flags = retention.forget_flags(policy, disconnected=disconnected)
        if not keep_ids:
            args = restic_argv.forget(version, keep_flags=flags, host=host, retry_lock_seconds=self._lock_wait)
            kept, removed, reasons = _forget_groups(self._exclusive(args).stdout)
            return ForgetResult(kept=kept, removed=removed, reasons=reasons)
        dry = restic_argv.forget(version, keep_flags=flags, host=host, dry_run=True)
        kept, proposed, reasons = _forget_groups(self._run(dry).stdout)
        removed = retention.protect(proposed, keep_ids)
        protected = [snapshot_id for snapshot_id in proposed if snapshot_id not in removed]
        if removed:
            self._exclusive(restic_argv.forget(version, snapshot_ids=removed, retry_lock_seconds=self._lock_wait))
        log.info("forgot %d snapshot(s) in %s, kept %d", len(removed), self.location, len(kept) + len(protected))
        return ForgetResult(kept=kept + protected, removed=removed, protected=protected, reasons=reasons)

    def prune(self) -> None:
        """Remove data no snapshot references any more (exclusive lock)."""
        self._exclusive(restic_argv.prune(self.version(), retry_lock_seconds=self._lock_wait))

    def check(self, *, read_data_subset: str | None = None) -> None:
        """Verify the repository structure, and a subset of the data if asked (`1/7`, `5%`, `50M`).

        Raises ResticFailed when restic reports errors ("Fatal: repository contains errors")."""
        version = self.version()
        self._exclusive(
            restic_argv.check(version, read_data_subset=read_data_subset, retry_lock_seconds=self._lock_wait)
        )

    def unlock(self) -> None:
        """Remove stale locks only (restic's default): from dead PIDs on this host, or older than 30 minutes."""
        self._run(restic_argv.unlock(self.version()))

    def _exclusive(self, args: restic_argv.Argv) -> Completed:
        # Exclusive commands do not skip stale locks by themselves (0.14 and master `checkForOtherLocks`): after
        # a crash they would fail until someone unlocks. All our locks come from this host, where restic decides
        # staleness by PID liveness, so on RepositoryLocked a stale-only unlock and one retry is safe: a live
        # lock survives the unlock and the retry fails again. (Unlocking first would cost a restic start, about
        # 0.7 s of key derivation, on every call.)
        try:
            return self._run(args)
        except RepositoryLocked:
            self.unlock()
            return self._run(args)

    def copy_to(self, target: Repository, *, host: str | None = None, cancel: threading.Event | None = None) -> None:
        """Copy this repository's snapshots (of `host`, or all) into `target`; already-copied ones are skipped.

        `target` should have been initialised with `copy_chunker_params_from=self`, or copied data will not
        deduplicate against data backed up there directly (measured, docs/restic.md). Setting `cancel` stops
        restic with SIGINT (ResticCancelled); restic copy locks both repositories, so both drop stale locks."""
        try:
            target._run(
                restic_argv.copy(target.version(), host=host), source=self._prepared(), cancel=cancel, timeout=None
            )
        except ResticCancelled:
            self._release_after_cancel()
            raise

    # --- reading -----------------------------------------------------------------------------------------------

    def _snapshots(
        self, *, host: str | None = None, tags: Sequence[str] = (), snapshot_ids: Sequence[str] = ()
    ) -> list[Snapshot]:
        args = restic_argv.snapshots(self.version(), host=host, tags=tags, snapshot_ids=snapshot_ids)
        document = _json_document(self._run(restic_argv.without_lock(args)).stdout)
        return [_snapshot(item) for item in document or []]

    def snapshots(self, *, host: str | None = None, tags: Sequence[str] = ()) -> list[Snapshot]:
        """Snapshots, oldest first, optionally only those of `host` carrying every tag in `tags`."""
        return sorted(self._snapshots(host=host, tags=tags), key=lambda s: s.time)

    def ls(self, snapshot_id: str, path: str | None = None) -> list[dict[str, Any]]:
        """The nodes (files and directories) of a snapshot, or those under `path`, as restic's JSON objects
        (`name`, `type`, `path`, `size`, `mtime`, ...)."""
        nodes: list[dict[str, Any]] = []

        def collect(line: dict[str, Any]) -> None:
            if line.get("struct_type") == "node" or line.get("message_type") == "node":
                nodes.append(line)

        self._run(restic_argv.without_lock(restic_argv.ls(self.version(), snapshot_id, path)), on_json=collect)
        return nodes

    def dump(self, snapshot_id: str, path: str, out: BinaryIO, *, lock: bool = False) -> None:
        """Write one file of a snapshot to `out`, streamed (a directory comes out as a tar). Without restic's
        lock unless `lock` (`argv.without_lock`): a caller whose dump failed may try again with it."""
        args = restic_argv.dump(self.version(), snapshot_id, path)
        self._run(args if lock else restic_argv.without_lock(args), out=out, timeout=None)

    def diff(self, first: str, second: str) -> list[tuple[str, str]]:
        """(modifier, path) for every path that differs from snapshot `first` to `second` (see `argv.diff`)."""
        changes: list[tuple[str, str]] = []

        def collect(line: dict[str, Any]) -> None:
            if line.get("message_type") == "change" and isinstance(line.get("path"), str):
                changes.append((str(line.get("modifier", "")), line["path"]))

        self._run(restic_argv.without_lock(restic_argv.diff(self.version(), first, second)), on_json=collect)
        return changes

    def restore(self, snapshot_id: str, target: Path, *, include: Sequence[str] = ()) -> None:
        """Restore a snapshot (or the paths matching `include`) under `target`."""
        target = target.resolve()
        target.mkdir(parents=True, exist_ok=True)
        args = restic_argv.restore(self.version(), snapshot_id, target=str(target), include=include)
        self._run(args, timeout=None)

    def stats(self, mode: str = "raw-data") -> dict[str, Any]:
        """`restic stats` as a dict (raw-data: `total_size`, `total_file_count`, `total_blob_count`, ...)."""
        document = _json_document(self._run(restic_argv.stats(self.version(), mode=mode)).stdout)
        if not isinstance(document, dict):
            raise ResticFailed("restic stats did not print an object")
        return document

"""Pure argv builders for restic subcommands, one per subcommand, gated on the restic version.

This module owns restic's command-line contract: which flags exist in which release and how Strongroom
spells each subcommand. It returns tuples of strings (the arguments after the binary) and never runs
anything: no subprocess, no environment, no file access. `appliance.vault.runner` prepends the binary and
the secret-carrying options (`secret_options`) and starts the process.

Repository locations and passwords never appear in these tuples: they reach restic through inherited pipes
(`--repository-file /dev/fd/N`, `--password-file /dev/fd/N`), so they are absent from `/proc/<pid>/cmdline`.

Version facts come from restic's CHANGELOG and docs (https://github.com/restic/restic/blob/master/CHANGELOG.md,
`doc/075_scripting.rst`) and from measurements on 0.14.0, summarised in `docs/restic.md`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

Argv = tuple[str, ...]


@dataclass(frozen=True, order=True)
class Version:
    """A restic release, parsed from `restic version` ("restic 0.14.0 compiled with go1.19.8 on linux/amd64")."""

    major: int
    minor: int
    patch: int = 0

    _PATTERN = re.compile(r"restic\s+v?(\d+)\.(\d+)(?:\.(\d+))?")

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse the first line of `restic version`; raises ValueError when it is not restic's banner."""
        match = cls._PATTERN.search(text)
        if not match:
            raise ValueError(f"not a restic version banner: {text[:80]!r}")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MINIMUM = Version(0, 14, 0)
"""The oldest restic Strongroom drives: Debian 12's package. Repository format 2, compression and `copy
--from-repo` all arrived in 0.14.0."""


class Feature(enum.Enum):
    """A restic capability and the first release that has it (borgmatic's `borg/feature.py` pattern)."""

    REPOSITORY_V2 = Version(0, 14, 0)  # `init --repository-version 2`, `--compression` (CHANGELOG 0.14.0, #21)
    COPY_CHUNKER_PARAMS = Version(0, 14, 0)  # `init --copy-chunker-params`, `copy --from-repo` (#3742)
    FULL_SNAPSHOT_ID = Version(0, 15, 0)  # backup's JSON summary has the full id (#2724); 0.14 prints 8 chars
    INIT_JSON = Version(0, 15, 0)  # `init --json` prints {"message_type":"initialized"} (#3124)
    RETRY_LOCK = Version(0, 16, 0)  # `--retry-lock DURATION` (#719)
    SKIP_IF_UNCHANGED = Version(0, 17, 0)  # `backup --skip-if-unchanged` (#662)
    EXIT_CODES_10_11 = Version(0, 17, 0)  # 10 no repository, 11 locked (#956)
    EXIT_CODE_12 = Version(0, 17, 1)  # 12 wrong password (#4959)
    CLEAN_SIGTERM = Version(0, 17, 0)  # SIGTERM releases locks (#4703); on 0.14 it leaves a stale lock
    VERSION_JSON = Version(0, 17, 0)  # `version --json`
    CHECK_JSON = Version(0, 18, 0)  # `check --json` summary (#1378)
    # forget also keeps a group's oldest snapshot while a --keep-* rule has budget left: in 0.17.0's
    # `forget --help`, not in 0.14.0's (inference: the exact release is not pinned down, 0.15 or 0.16 possible).
    FORGET_KEEPS_OLDEST = Version(0, 17, 0)

    def available(self, version: Version) -> bool:
        return version >= self.value


# --- the options that carry secrets ------------------------------------------------------------------------


def fd_path(fd: int) -> str:
    """The path a child process opens to read an inherited file descriptor (Linux)."""
    return f"/dev/fd/{fd}"


def secret_options(
    *,
    repository_fd: int,
    password_fd: int,
    from_repository_fd: int | None = None,
    from_password_fd: int | None = None,
    key_hint: str | None = None,
    from_key_hint: str | None = None,
) -> Argv:
    """Global options pointing restic at inherited pipes for the location and password (both ends of a copy).

    `--repository-file` and `--from-repository-file` exist since 0.11/0.14 and read the location from a file,
    so a URL with credentials (`rest:https://user:pass@host/`, needed on 0.14, which lacks
    `RESTIC_REST_USERNAME`) never lands on the command line [measured on 0.14, docs/restic.md].
    """
    options: list[str] = ["--repository-file", fd_path(repository_fd), "--password-file", fd_path(password_fd)]
    if (from_repository_fd is None) != (from_password_fd is None):
        raise ValueError("the source repository needs both a location and a password")
    if from_repository_fd is not None and from_password_fd is not None:
        options += [
            "--from-repository-file",
            fd_path(from_repository_fd),
            "--from-password-file",
            fd_path(from_password_fd),
        ]
    # A key id is no secret: it names a file in the repository's keys/ directory (`appliance.vault.keys`).
    if key_hint:
        options += ["--key-hint", key_hint]
    if from_key_hint:
        options += ["--from-key-hint", from_key_hint]
    return tuple(options)


def _retry_lock(version: Version, seconds: int | None) -> list[str]:
    # 0.14 has no --retry-lock: the caller retries itself (RepositoryLocked) instead.
    if seconds and Feature.RETRY_LOCK.available(version):
        return ["--retry-lock", f"{int(seconds)}s"]
    return []


def _tag_list(tags: Sequence[str]) -> str:
    # One `--tag a,b` means "has a AND b"; several `--tag` flags mean OR (restic help snapshots).
    for tag in tags:
        if not tag or "," in tag:
            raise ValueError(f"restic tags cannot be empty or contain commas: {tag!r}")
    return ",".join(tags)


def _snapshot_id(snapshot_id: str) -> str:
    if snapshot_id != "latest" and not re.fullmatch(r"[0-9a-f]{8,64}", snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    return snapshot_id


def _snapshot_path(path: str) -> str:
    # Paths inside a snapshot are absolute and '/'-separated; a leading '-' would read as a flag.
    if not path.startswith("/"):
        raise ValueError(f"snapshot paths are absolute: {path!r}")
    return path


# --- one builder per subcommand ------------------------------------------------------------------------------


def version_cmd(version: Version | None = None) -> Argv:
    """`restic version`: plain text on every release (we parse the banner; `--json` only since 0.17)."""
    return ("version",)


def init(version: Version, *, copy_chunker_params: bool = False) -> Argv:
    """`init` a repository in format 2 (compression). With `copy_chunker_params` the source repository (given by
    `secret_options(from_...)`) lends its chunker polynomial, so data copied into this one deduplicates against
    data backed up straight into it (measured: 2.8 KB instead of 51 MB, docs/restic.md)."""
    argv = ["init", "--repository-version", "2"]
    if copy_chunker_params:
        argv.append("--copy-chunker-params")
    if Feature.INIT_JSON.available(version):
        argv.append("--json")
    return tuple(argv)


def without_lock(args: Argv) -> Argv:
    """`--no-lock` before a command that only reads. Every locking restic 0.14 command writes its lock file,
    sleeps 200 ms, then checks for other locks (`internal/restic/lock.go` `waitBeforeLockCheck`): 0.2 s of
    each `snapshots`, `cat config`, `dump` or `diff` (measured: `cat config` 0.27 s -> 0.07 s). A reader
    needs no lock for correctness: restic verifies every blob it reads, so a prune running meanwhile can only
    make the read fail (a pack gone), never return other data; callers that must not fail retry with it."""
    return ("--no-lock", *args)


def cat_config(version: Version) -> Argv:
    """`cat config`: JSON on every release; succeeds only if the repository exists and the password opens it."""
    return ("cat", "config")


def backup(
    version: Version,
    *,
    host: str,
    tags: Sequence[str] = (),
    paths: Sequence[str] = (".",),
    time: datetime | None = None,
    skip_if_unchanged: bool = False,
    compression: str = "auto",
    retry_lock_seconds: int | None = None,
) -> Argv:
    """`backup --json` of `paths` (default `.`: the runner starts restic inside the source directory, so the
    snapshot tree holds the directory's contents at `/` whatever its absolute path, while the snapshot's
    `paths` stay the absolute source path that parent detection and `forget` grouping key on).

    `skip_if_unchanged` is dropped before 0.17, where restic has no such flag: the cost is one extra
    snapshot, not a failure."""
    if not host or host.startswith("-"):
        raise ValueError(f"invalid host: {host!r}")
    if compression not in ("auto", "off", "max"):
        raise ValueError(f"invalid compression mode: {compression!r}")
    argv = ["backup", "--json", "--host", host, "--compression", compression]
    if tags:
        argv += ["--tag", _tag_list(tags)]
    if time is not None:
        # restic parses "2006-01-02 15:04:05" in the local zone (`cmd_backup.go`, time.ParseInLocation); the
        # runner passes TZ through, so an aware time converted to this process's local zone means the same instant.
        local = time.astimezone() if time.tzinfo is not None else time
        argv += ["--time", local.strftime("%Y-%m-%d %H:%M:%S")]
    if skip_if_unchanged and Feature.SKIP_IF_UNCHANGED.available(version):
        argv.append("--skip-if-unchanged")
    argv += _retry_lock(version, retry_lock_seconds)
    argv.append("--")
    argv += list(paths)
    return tuple(argv)


def snapshots(
    version: Version,
    *,
    host: str | None = None,
    tags: Sequence[str] = (),
    snapshot_ids: Sequence[str] = (),
) -> Argv:
    """`snapshots --json`: one JSON array (`[]` when nothing matches)."""
    argv = ["snapshots", "--json"]
    if host:
        argv += ["--host", host]
    if tags:
        argv += ["--tag", _tag_list(tags)]
    argv += [_snapshot_id(s) for s in snapshot_ids]
    return tuple(argv)


def forget(
    version: Version,
    *,
    keep_flags: Sequence[str] = (),
    host: str | None = None,
    snapshot_ids: Sequence[str] = (),
    dry_run: bool = False,
    retry_lock_seconds: int | None = None,
) -> Argv:
    """`forget --json` by policy (`keep_flags` from `appliance.vault.retention`) or by explicit ids.

    Never with `--prune`: on 0.14 (and per the docs still) the JSON is then followed by plain prune text on the
    same stdout. A dry run also takes `--no-lock` so it does not need the exclusive lock (0.14
    `cmd_forget.go`)."""
    if bool(keep_flags) == bool(snapshot_ids):
        raise ValueError("forget takes either a policy or snapshot ids, not both or neither")
    argv = []
    if dry_run:
        argv.append("--no-lock")
    argv += ["forget", "--json"]
    if keep_flags:
        if len(keep_flags) % 2:
            raise ValueError(f"forget policy flags come in pairs: {keep_flags!r}")
        for flag, value in zip(keep_flags[::2], keep_flags[1::2], strict=True):
            if not (flag.startswith("--keep-") or flag == "--group-by") or value.startswith("-"):
                raise ValueError(f"not a forget policy flag: {flag!r} {value!r}")
        argv += list(keep_flags)
    if host:
        argv += ["--host", host]
    if dry_run:
        argv.append("--dry-run")
    argv += _retry_lock(version, retry_lock_seconds)
    if snapshot_ids:
        argv.append("--")
        argv += [_snapshot_id(s) for s in snapshot_ids]
    return tuple(argv)


def prune(version: Version, *, max_unused: str | None = None, retry_lock_seconds: int | None = None) -> Argv:
    """`prune` (text only on every release); compression auto for repacked data."""
    argv = ["prune", "--compression", "auto"]
    if max_unused is not None:
        if not re.fullmatch(r"\d+(\.\d+)?%|\d+[kKmMgGtT]?|unlimited", max_unused):
            raise ValueError(f"invalid --max-unused: {max_unused!r}")
        argv += ["--max-unused", max_unused]
    argv += _retry_lock(version, retry_lock_seconds)
    return tuple(argv)


_SUBSET = re.compile(r"[1-9]\d*/[1-9]\d*|\d+(\.\d+)?%|\d+[kKmMgGtT]?")


def check(version: Version, *, read_data_subset: str | None = None, retry_lock_seconds: int | None = None) -> Argv:
    """`check`, optionally reading a subset of the data packs: `n/t` (rotate weekly with `1/7`...`7/7`), `x%`
    or a size such as `50M` — all three accepted by 0.14 (measured)."""
    argv = ["check"]
    if read_data_subset is not None:
        if not _SUBSET.fullmatch(read_data_subset):
            raise ValueError(f"invalid --read-data-subset: {read_data_subset!r}")
        if "/" in read_data_subset:
            n, t = (int(x) for x in read_data_subset.split("/"))
            if n > t:
                raise ValueError(f"invalid --read-data-subset: {read_data_subset!r}")
        argv += ["--read-data-subset", read_data_subset]
    if Feature.CHECK_JSON.available(version):
        argv.append("--json")
    argv += _retry_lock(version, retry_lock_seconds)
    return tuple(argv)


def ls(version: Version, snapshot_id: str, path: str | None = None, *, recursive: bool = True) -> Argv:
    """`ls --json`: a snapshot line, then one line per node. A path filter lists what is under it
    (`--recursive` lets the filter descend into subfolders; without it only direct children show)."""
    argv = ["ls", "--json"]
    if path is not None and recursive:
        argv.append("--recursive")
    argv += ["--", _snapshot_id(snapshot_id)]
    if path is not None:
        argv.append(_snapshot_path(path))
    return tuple(argv)


def dump(version: Version, snapshot_id: str, path: str, *, archive: str | None = None) -> Argv:
    """`dump` raw bytes of one file to stdout (a directory comes out as tar, or zip with `archive="zip"`,
    available since 0.12)."""
    argv = ["dump"]
    if archive is not None:
        if archive not in ("tar", "zip"):
            raise ValueError(f"invalid archive format: {archive!r}")
        argv += ["--archive", archive]
    argv += ["--", _snapshot_id(snapshot_id), _snapshot_path(path)]
    return tuple(argv)


def diff(version: Version, first: str, second: str) -> Argv:
    """`diff --json FIRST SECOND`: one `{"message_type":"change","path":...,"modifier":...}` line per changed
    path (`+` added, `-` removed, `M` content, `U` metadata only, `T` type; directories end in `/`), then one
    `statistics` line. Reads only the two snapshots' trees, no file contents (measured on 0.14.0)."""
    return ("diff", "--json", "--", _snapshot_id(first), _snapshot_id(second))


def restore(version: Version, snapshot_id: str, *, target: str, include: Sequence[str] = ()) -> Argv:
    """`restore` into `target` (absolute), optionally only paths matching `include` patterns."""
    if not target.startswith("/"):
        raise ValueError(f"restore target must be absolute: {target!r}")
    argv = ["restore", "--target", target]
    for pattern in include:
        if not pattern:
            raise ValueError("empty include pattern")
        argv += ["--include", pattern]
    argv += ["--", _snapshot_id(snapshot_id)]
    return tuple(argv)


def stats(version: Version, *, mode: str = "raw-data", snapshot_ids: Sequence[str] = ()) -> Argv:
    """`stats --json --mode MODE` (raw-data: what the repository stores; restore-size: what a restore writes)."""
    if mode not in ("restore-size", "files-by-contents", "blobs-per-file", "raw-data"):
        raise ValueError(f"invalid stats mode: {mode!r}")
    return ("stats", "--json", "--mode", mode, *(_snapshot_id(s) for s in snapshot_ids))


def unlock(version: Version, *, remove_all: bool = False) -> Argv:
    """`unlock`: by default removes stale locks only (older than 30 min, or from a dead PID on this host;
    0.14 `internal/restic/lock.go` `Stale`). `remove_all` also removes live locks: never automatic."""
    return ("unlock", "--remove-all") if remove_all else ("unlock",)


def copy(
    version: Version, *, host: str | None = None, tags: Sequence[str] = (), snapshot_ids: Sequence[str] = ()
) -> Argv:
    """`copy` snapshots from the source repository (`secret_options(from_...)`) into the repository. Text only;
    idempotent: snapshots already copied (tracked by their `original` field) are skipped (measured on 0.14)."""
    argv = ["copy", "--compression", "auto"]
    if host:
        argv += ["--host", host]
    if tags:
        argv += ["--tag", _tag_list(tags)]
    if snapshot_ids:
        argv.append("--")
        argv += [_snapshot_id(s) for s in snapshot_ids]
    return tuple(argv)

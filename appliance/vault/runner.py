"""The restic runner: the only place in Strongroom that starts a subprocess.

It owns how restic is started and stopped, and what its exit means:
- an explicit environment for every call (nothing inherited from `RESTIC_*`/`AWS_*`; a per-repository
  `RESTIC_CACHE_DIR`; backend credentials passed in by the caller for that call only);
- secrets through inherited pipes: the repository location and password are written into anonymous pipes and
  restic reads them from `/dev/fd/N` (`--repository-file`, `--password-file`, and the `--from-*` twins for
  `copy`), so they never appear in `/proc/<pid>/cmdline` or `/proc/<pid>/environ` (borgmatic's
  `BORG_PASSPHRASE_FD` trick; measured on restic 0.14 in docs/restic.md);
- stdout JSON lines streamed to a callback (progress), stdout bytes streamed to a file (`dump`), stderr captured
  with restic's `\\x1b[2K` line-clearing removed (0.14 writes it even when stderr is not a TTY);
- cancellation and timeouts by SIGINT, then SIGKILL after a grace period: SIGINT makes restic remove its lock
  and exit 130, while SIGTERM on 0.14 kills it outright and leaves a stale lock that blocks forget, prune and
  check (measured; fixed in 0.17, restic#4703);
- the child's parent-death signal is SIGINT (prctl PR_SET_PDEATHSIG), so a `kill -9` of Strongroom still makes
  restic clean up and release its lock;
- exit codes mapped to `appliance.errors` (by code on restic >= 0.17.1, by stderr text on older releases,
  which exit 1 for nearly everything).

It must not build restic arguments itself (that is `appliance.vault.argv`) nor interpret their JSON beyond
finding the `summary` line (that is `appliance.vault.repository`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from appliance import logs
from appliance.errors import (
    ConfigError,
    IncompleteSnapshot,
    RepositoryLocked,
    RepositoryMissing,
    ResticCancelled,
    ResticFailed,
    ResticMissing,
    VaultError,
    WrongPassword,
)
from appliance.vault import argv as restic_argv
from appliance.vault.argv import Argv, Feature, Version

log = logging.getLogger(__name__)

# Variables restic may need from our own environment; everything else (notably RESTIC_* and AWS_*) is dropped.
# HOME: ssh (sftp backend) reads ~/.ssh; TZ: `--time` and snapshot times use the local zone.
_PASSTHROUGH = (
    "PATH",
    "HOME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LC_ALL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
# Variables the runner sets itself; a caller's backend env must not override them (a password or location
# there would sit in /proc/<pid>/environ, and a second password source is fatal in restic).
_RESERVED = re.compile(r"RESTIC_(PASSWORD|REPOSITORY|FROM_|CACHE_DIR|KEY_HINT)")
_DEFAULT_ENV = {
    # restic prints JSON status lines at 60 per second when --json is on (0.14 `calculateProgressInterval`);
    # two a second is plenty for a progress bar and keeps the pipe quiet.
    "RESTIC_PROGRESS_FPS": "2",
}
_PIPE_LIMIT = 60_000  # below the 64 KiB Linux pipe buffer: the secret is written before restic starts
_CLEAR_LINE = "\x1b[2K"

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LEFTOVER_GRACE = 2.0  # seconds restic's children may hold its output after it exited


@dataclass(frozen=True)
class Endpoint:
    """One repository as restic must be told about it: passed only through pipes and the child's env."""

    location: str
    password: str
    cache_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """Backend credentials for this repository (e.g. AWS_ACCESS_KEY_ID), given to restic for the call only."""
    key_hint: str | None = None
    """The id of the key restic should try first (Strongroom's cheap key, `appliance.vault.keys`)."""

    def __post_init__(self) -> None:
        # Registered once, when the endpoint is made, so that any log line (ours or a restic message we relay)
        # masks the password and a password embedded in the URL.
        logs.register_secret(self.password)
        for match in _URL_CREDENTIALS.finditer(self.location):
            logs.register_secret(match.group(0)[len(match.group(1)) : -1])

    def __repr__(self) -> str:  # never print the password or a URL with credentials
        return f"Endpoint({mask_location(self.location)!r})"


@dataclass
class Completed:
    """What a finished restic call produced."""

    argv: Argv
    returncode: int
    stdout: str
    """Text of stdout lines not handed to `on_json` (empty for `dump`)."""
    stderr: str
    summary: dict[str, Any] | None = None
    """The last JSON line with `message_type == "summary"` (backup)."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    """JSON error lines restic wrote to stderr (`message_type` `error` or `exit_error`)."""
    error: VaultError | None = None
    """What the exit means (None: success); raised by `Runner.run` unless `check=False`."""


_URL_CREDENTIALS = re.compile(r"(://[^/@:\s]*:)[^/@\s]+@")


def mask_location(location: str) -> str:
    """A repository location fit for logs: `rest:https://user:secret@host/` -> `rest:https://user:***@host/`."""
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + logs.MASK + "@", location)


def build_env(endpoints: Sequence[Endpoint], *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment for a restic call (pure apart from reading `base`, default `os.environ`).

    Both ends of a `copy` share one environment, so restic's S3 backend sees one set of AWS_* keys for both
    (restic doc/045_working_with_repos.rst): conflicting values are refused here instead of failing obscurely.
    """
    base = os.environ if base is None else base
    env = {name: base[name] for name in _PASSTHROUGH if name in base}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(_DEFAULT_ENV)
    backend: dict[str, str] = {}
    for endpoint in endpoints:
        for name, value in endpoint.env.items():
            if _RESERVED.match(name):
                raise ConfigError(f"{name} cannot be set in a repository's environment; Strongroom passes it itself")
            if name in backend and backend[name] != value:
                raise ConfigError(
                    f"the two repositories need different values of {name}, but restic has one environment",
                    hint="use the rclone: backend, whose remotes each carry their own credentials",
                )
            backend[name] = value
    env.update(backend)
    if endpoints:
        # The cache belongs to the repository being written (the first endpoint); one per repository, so two
        # organisations never share cached index files.
        env["RESTIC_CACHE_DIR"] = str(endpoints[0].cache_dir)
    return env


def _secret_pipe(secret: str) -> int:
    """A pipe's read end holding `secret`; the write end is closed so restic reads it to EOF."""
    data = secret.encode("utf-8")
    if len(data) > _PIPE_LIMIT:
        raise ConfigError("a repository location or password is too long to pass through a pipe")
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, data)
    finally:
        os.close(write_fd)
    return read_fd


_libc: ctypes.CDLL | None = None


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: SIGINT to restic if the thread that started it dies (kill -9 of Strongroom included).

    PR_SET_PDEATHSIG survives execve (prctl(2)) and fires when the creating *thread* exits; `run` blocks in
    that thread until restic exits, so it fires only if our process dies. The parent-pid check closes the race
    where we die between fork and prctl. Only a libc call and getppid run here: safe after fork."""
    libc = _libc

    def setup() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(130)

    return setup


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        with contextlib.suppress(OSError):
            _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _clean(line: str) -> str:
    return line.replace(_CLEAR_LINE, "").rstrip("\r\n")


# --- exit-code classification ----------------------------------------------------------------------------------

# restic 0.14 exits 1 for most failures; these stderr texts tell them apart (measured, docs/restic.md §1.1).
# Auth failures of REST and S3 backends also say "unable to open config file" / "Is there a repository", so
# they are checked first and reported as failures, not as a missing repository (which would invite `init`).
_AUTH_MARKERS = (
    "unexpected HTTP response (401)",
    "unexpected HTTP response (403)",
    "signature we calculated does not match",
    "unsupported algorithm",
    "Access Denied",
    "InvalidAccessKeyId",
    "connection refused",
    "no such host",
)
_LOCKED_MARKERS = ("repository is already locked", "unable to create lock in backend")
_WRONG_PASSWORD_MARKERS = ("wrong password or no key found",)
_MISSING_MARKERS = ("Is there a repository at the following location?", "unable to open config file")


def _message(stderr: str, errors: Sequence[Mapping[str, Any]]) -> str:
    for error in reversed(errors):
        if error.get("message_type") == "exit_error" and error.get("message"):
            return str(error["message"])
    lines = [line for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal:")]
    return (fatal[-1] if fatal else lines[-1] if lines else "").strip()


def classify(
    command: str,
    returncode: int,
    stderr: str,
    version: Version,
    *,
    interrupted: str | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
) -> VaultError | None:
    """The error a finished restic call means, or None for success.

    `interrupted` is why the runner signalled restic (cancelled, timed out), if it did. Codes 10/11/12 are
    trusted from the release that introduced them (restic doc/075_scripting.rst); 3 means "snapshot created
    but some source files unreadable" for `backup` (and, since 0.19, a failed removal in `forget`)."""
    if returncode == 0 and interrupted is None:
        return None
    message = logs.mask(_message(stderr, errors)) or f"restic {command} exited with {returncode}"
    if interrupted is not None and returncode != 0:
        return ResticCancelled(f"restic {command} {interrupted}", hint="the repository lock was released by restic")
    if returncode in (130, -signal.SIGINT):
        return ResticCancelled(f"restic {command} was interrupted")
    if returncode == 3:
        if command == "backup":
            return IncompleteSnapshot(
                f"restic could not read some source files: {message}",
                hint="the snapshot exists but is incomplete; do not treat it as a backup point",
            )
        return ResticFailed(f"restic {command} partly failed: {message}")
    if Feature.EXIT_CODES_10_11.available(version):
        if returncode == 10:
            return RepositoryMissing(message, hint="run `strongroom init` for this organisation's repository")
        if returncode == 11:
            return RepositoryLocked(message, hint="another restic process is using the repository; retry later")
    if Feature.EXIT_CODE_12.available(version) and returncode == 12:
        return WrongPassword(message, hint="the stored repository password does not open this repository")
    if returncode == 1:
        if any(marker in stderr for marker in _LOCKED_MARKERS):
            return RepositoryLocked(message, hint="another restic process is using the repository; retry later")
        if any(marker in stderr for marker in _WRONG_PASSWORD_MARKERS):
            return WrongPassword(message, hint="the stored repository password does not open this repository")
        if any(marker in stderr for marker in _AUTH_MARKERS):
            return ResticFailed(message, hint="check the repository URL and the backend credentials")
        if any(marker in stderr for marker in _MISSING_MARKERS):
            return RepositoryMissing(message, hint="run `strongroom init` for this organisation's repository")
    if returncode < 0:
        return ResticFailed(f"restic {command} was killed by signal {-returncode}")
    return ResticFailed(message)


# --- the runner --------------------------------------------------------------------------------------------------


class Runner:
    """Starts restic. One instance per binary; safe to use from several threads (one call per thread)."""

    def __init__(self, binary: str = "restic", *, grace_seconds: float = 15.0) -> None:
        self.binary = binary
        self.grace_seconds = grace_seconds
        self._version: Version | None = None
        self._version_lock = threading.Lock()

    def version(self) -> Version:
        """The restic release (from `restic version`, cached). Raises ResticMissing if absent or too old."""
        with self._version_lock:
            if self._version is None:
                result = self._execute(restic_argv.version_cmd(), endpoints=(), version=restic_argv.MINIMUM)
                if result.error is not None:
                    raise ResticMissing(f"{self.binary} version failed: {result.error}")
                try:
                    found = Version.parse(result.stdout)
                except ValueError as error:
                    raise ResticMissing(f"{self.binary} does not look like restic: {error}") from error
                if found < restic_argv.MINIMUM:
                    raise ResticMissing(
                        f"restic {found} is too old; Strongroom needs {restic_argv.MINIMUM} or newer",
                        hint="install restic from your distribution's packages (Debian 12 ships 0.14.0)",
                    )
                self._version = found
            return self._version

    def run(
        self,
        args: Argv,
        repository: Endpoint,
        *,
        source: Endpoint | None = None,
        cwd: Path | None = None,
        on_json: Callable[[dict[str, Any]], None] | None = None,
        out: BinaryIO | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> Completed:
        """Run `restic <secret options> <args>` against `repository` (and `source` for copy/init). With `check`
        (default) the mapped error is raised unless restic succeeded; otherwise it is in `Completed.error`.
        See `_execute` for the streaming options."""
        version = self.version()
        endpoints = (repository,) if source is None else (repository, source)
        result = self._execute(
            args,
            endpoints=endpoints,
            version=version,
            cwd=cwd,
            on_json=on_json,
            out=out,
            cancel=cancel,
            timeout=timeout,
        )
        if check and result.error is not None:
            raise result.error
        return result

    def _execute(
        self,
        args: Argv,
        *,
        endpoints: Sequence[Endpoint],
        version: Version,
        cwd: Path | None = None,
        on_json: Callable[[dict[str, Any]], None] | None = None,
        out: BinaryIO | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Completed:
        """Start restic, stream its output, stop it on `cancel`/`timeout`, and classify the exit.

        - `on_json`: each stdout line that is a JSON object goes to this callback (in the calling thread) and is
          not kept; other lines are kept in `Completed.stdout`. A `summary` line is kept either way.
        - `out`: stdout bytes are copied there in chunks (for `dump`: big files never sit in memory).
        """
        command = next((a for a in args if not a.startswith("-")), args[0] if args else "")
        secret_fds: list[int] = []
        parent_fds: list[int] = []  # read ends we keep (stdout, stderr)
        child_fds: list[int] = []  # write ends for restic's stdout and stderr
        try:
            for endpoint in endpoints:
                secret_fds += [_secret_pipe(endpoint.location), _secret_pipe(endpoint.password)]
            secret_args: Argv = ()
            if secret_fds:
                secret_args = restic_argv.secret_options(
                    repository_fd=secret_fds[0],
                    password_fd=secret_fds[1],
                    from_repository_fd=secret_fds[2] if len(secret_fds) > 2 else None,
                    from_password_fd=secret_fds[3] if len(secret_fds) > 2 else None,
                    key_hint=endpoints[0].key_hint,
                    from_key_hint=endpoints[1].key_hint if len(endpoints) > 1 else None,
                )
            full_argv: Argv = (self.binary, *secret_args, *args)
            env = build_env(endpoints)
            where = " ".join(mask_location(e.location) for e in endpoints)
            log.debug("running %s [repository %s]", logs.mask(" ".join(full_argv)), where or "-")
            # Our own pipes for stdout and stderr, whose read ends restic also inherits (and never uses): if we
            # die, the pipes keep a reader, so restic's "cleaning up" message cannot hit a broken pipe. Go kills a
            # program with SIGPIPE on a write to a broken fd 1 or 2 (https://pkg.go.dev/os/signal, "SIGPIPE"),
            # which happens before restic removes its lock: measured, a kill -9 of Strongroom then left one.
            for _ in range(2):
                read_end, write_end = os.pipe()
                parent_fds.append(read_end)
                child_fds.append(write_end)
            if out is not None:
                widen_pipe(parent_fds[0])
            if shutil.which(self.binary) is None:
                raise ResticMissing(
                    f"restic binary {self.binary!r} not found",
                    hint="install restic (Debian: apt-get install restic) or set restic_binary",
                )
            # The parent-death signal is set by util-linux's `setpriv` just before it execs restic: Python code
            # in a preexec_fn runs after fork in a multi-threaded process, where a lock another thread held at
            # fork time can deadlock the child before exec (seen: Popen never returned under the daemon's and
            # the backup's threads). Without setpriv we fall back to the preexec_fn.
            setpriv = shutil.which("setpriv")
            launch = (setpriv, "--pdeathsig", "INT", "--", *full_argv) if setpriv else full_argv
            _load_libc()
            try:
                process = subprocess.Popen(  # the one subprocess call in Strongroom
                    launch,
                    stdin=subprocess.DEVNULL,  # restic would otherwise prompt for a password on stdin
                    stdout=child_fds[0],
                    stderr=child_fds[1],
                    env=env,
                    cwd=cwd,
                    pass_fds=(*secret_fds, *parent_fds),
                    start_new_session=True,  # a terminal's Ctrl-C reaches us; we forward SIGINT ourselves
                    preexec_fn=None if setpriv else _child_setup(os.getpid()),  # prctl only: see _child_setup
                )
            except FileNotFoundError as error:
                raise ResticMissing(
                    f"restic binary {self.binary!r} not found",
                    hint="install restic (Debian: apt-get install restic) or set restic_binary",
                ) from error
            except PermissionError as error:
                raise ResticMissing(f"restic binary {self.binary!r} is not executable") from error
            stdout = os.fdopen(parent_fds[0], "rb")
            stderr = os.fdopen(parent_fds[1], "rb")
            parent_fds.clear()  # owned by the file objects now
        finally:
            for fd in (*secret_fds, *child_fds, *parent_fds):
                os.close(fd)
        return self._supervise(process, stdout, stderr, full_argv, command, version, on_json, out, cancel, timeout)

    def _supervise(
        self,
        process: subprocess.Popen[bytes],
        stdout: BinaryIO,
        stderr: BinaryIO,
        full_argv: Argv,
        command: str,
        version: Version,
        on_json: Callable[[dict[str, Any]], None] | None,
        out: BinaryIO | None,
        cancel: threading.Event | None,
        timeout: float | None,
    ) -> Completed:
        stderr_lines: list[str] = []
        errors: list[dict[str, Any]] = []
        finished = threading.Event()
        interrupted: list[str] = []

        def read_stderr() -> None:
            for raw in stderr:
                line = _clean(raw.decode("utf-8", "replace"))
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        decoded = json.loads(line)
                        if isinstance(decoded, dict):
                            errors.append(decoded)
                stderr_lines.append(line)

        def watch() -> None:
            deadline = None if timeout is None else time.monotonic() + timeout
            exited_at: float | None = None
            while not finished.is_set():
                if cancel is not None and cancel.is_set():
                    interrupted.append("was cancelled")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    interrupted.append(f"timed out after {timeout:g} s")
                    break
                if process.poll() is not None:
                    # restic is gone but its output pipes are still open: a child it started (ssh, rclone)
                    # outlived it and holds them. Nothing of value is left in its session.
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > _LEFTOVER_GRACE:
                        log.warning("restic %s exited but left processes holding its output; killing them", command)
                        _kill_group(process.pid)
                        return
                finished.wait(0.05)
            else:
                return
            self._interrupt(process, finished)

        stderr_thread = threading.Thread(target=read_stderr, name=f"restic-{command}-stderr", daemon=True)
        watch_thread = threading.Thread(target=watch, name=f"restic-{command}-watch", daemon=True)
        stderr_thread.start()
        watch_thread.start()
        stdout_lines: list[str] = []
        summary: dict[str, Any] | None = None
        try:
            if out is not None:
                while chunk := stdout.read(1 << 20):
                    out.write(chunk)
            else:
                for raw in stdout:
                    line = _clean(raw.decode("utf-8", "replace"))
                    decoded: Any = None
                    if line.startswith("{"):
                        with contextlib.suppress(ValueError):
                            decoded = json.loads(line)
                    if isinstance(decoded, dict):
                        if decoded.get("message_type") == "summary":
                            summary = decoded
                        if on_json is not None:
                            on_json(decoded)
                            continue
                    stdout_lines.append(line)
            process.wait()
        except BaseException:
            # A failing callback or output file, or KeyboardInterrupt: stop restic the clean way, then re-raise.
            interrupted.append("was stopped by its caller")
            self._interrupt(process, finished)
            raise
        finally:
            finished.set()
            watch_thread.join()
            stderr_thread.join(timeout=5)
            stdout.close()
            stderr.close()
        stderr_text = "\n".join(stderr_lines)
        if stderr_text:
            log.debug("restic %s stderr: %s", command, logs.mask(stderr_text[-2000:]))
        return Completed(
            argv=full_argv,
            returncode=process.returncode,
            stdout="\n".join(stdout_lines),
            stderr=stderr_text,
            summary=summary,
            errors=errors,
            error=classify(
                command,
                process.returncode,
                stderr_text,
                version,
                interrupted=interrupted[0] if interrupted else None,
                errors=errors,
            ),
        )

    def _interrupt(self, process: subprocess.Popen[bytes], finished: threading.Event) -> None:
        """SIGINT (restic removes its lock and exits 130), then SIGKILL of its process group after the grace."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(self.grace_seconds)
            except subprocess.TimeoutExpired:
                log.warning("restic did not stop %g s after SIGINT; killing it (its lock may stay)", self.grace_seconds)
        # Kill whatever is left in restic's session (restic itself after the grace, or children it started), so
        # nothing keeps our pipes open. The group outlives a reaped leader only while it has members.
        _kill_group(process.pid)
        process.wait()


PIPE_BYTES = 1 << 20
"""Capacity asked for pipes that stream bulk data (Linux's default unprivileged maximum,
/proc/sys/fs/pipe-max-size). With the default 64 KiB, a thread copying restic's `dump` output gets the GIL
back from a CPU-bound consumer only every switch interval (5 ms), so it moved at most 64 KiB per 5 ms and a
point's tar took twice as long to arrive (measured: a cold open of a medium organisation, dump 1.8 s and
build 2.2 s, took 4.1 s instead of overlapping)."""


def widen_pipe(fd: int) -> None:
    """Ask for a `PIPE_BYTES` pipe buffer (Linux); elsewhere, or when refused, keep the default."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)

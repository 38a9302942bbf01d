"""Per-organisation run locks (the `org_locks` table) and process liveness.

Two jobs must never run on one organisation at once, even from two processes (the daemon and a
`strongroom backup` typed over SSH). A lock is a row naming its holder: pid, the process's start time
and the job. Taking it is an INSERT inside `BEGIN IMMEDIATE`, so exactly one process wins.

A row whose holder is dead is stale and is taken over: the holder died without cleaning up (`kill -9`,
OOM, power loss), and its row must not block the organisation forever. "Dead" means no process with
that pid, a zombie, or a process with that pid but a different start time (the pid was reused). Start
times come from `/proc/<pid>/stat` (field 22, proc(5)); without /proc only the pid is checked.

Rows make the holder visible (`holder()`: which job and pid), which a kernel lock could not.
This module assumes one host: the state database lives on local disk, never on a network share.
It must not run jobs or decide what to lock (the daemon and use cases do).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.errors import OrganisationLocked
from appliance.store.db import Row, StateDB

log = logging.getLogger(__name__)


# --- process identity ----------------------------------------------------------------------


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if unknown or a zombie/dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def current_process() -> tuple[int, str | None]:
    """(pid, start time) of this process, as stored in lock and job rows."""
    pid = os.getpid()
    return pid, process_start_time(pid)


def process_alive(pid: int, start_time: str | None) -> bool:
    """Whether the process that wrote (pid, start_time) still runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as error:
        if error.errno == errno.ESRCH:
            return False
        # EPERM: it exists but belongs to someone else; fall through to the start-time check.
    if not os.path.exists("/proc/self/stat"):
        return True
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


# --- organisation locks --------------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    org_id: str
    owner_pid: int
    owner_start: str | None
    job_id: int | None
    purpose: str
    acquired_at: float

    @property
    def alive(self) -> bool:
        return process_alive(self.owner_pid, self.owner_start)


def _holder(row: Row) -> LockHolder:
    return LockHolder(
        org_id=row["org_id"],
        owner_pid=row["owner_pid"],
        owner_start=row["owner_start"],
        job_id=row["job_id"],
        purpose=row["purpose"],
        acquired_at=row["acquired_at"],
    )


class OrgLocks:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def acquire(self, org_id: str, *, purpose: str = "", job_id: int | None = None) -> LockHolder:
        """Take the organisation's lock or raise `OrganisationLocked` naming the live holder.

        The lock belongs to this process: another thread of the same process is refused too.
        """
        pid, start = current_process()
        with self.db.transaction():
            existing = self.holder(org_id)
            if existing is not None:
                if existing.alive:
                    what = f"job {existing.job_id}" if existing.job_id is not None else existing.purpose or "a run"
                    raise OrganisationLocked(
                        f"organisation {org_id} is busy: {what} (pid {existing.owner_pid}) holds it",
                        hint="wait for it to finish, or cancel that job",
                    )
                log.warning(
                    "taking over the lock of organisation %s from pid %d, which is gone", org_id, existing.owner_pid
                )
                self.db.execute("DELETE FROM org_locks WHERE org_id = ?", (org_id,))
            self.db.execute(
                "INSERT INTO org_locks(org_id, owner_pid, owner_start, job_id, purpose, acquired_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (org_id, pid, start, job_id, purpose, self.db.now()),
            )
            holder = self.holder(org_id)
        assert holder is not None
        return holder

    def release(self, org_id: str) -> bool:
        """Drop this process's lock on the organisation; False if it did not hold it."""
        pid, _ = current_process()
        return bool(self.db.execute("DELETE FROM org_locks WHERE org_id = ? AND owner_pid = ?", (org_id, pid)))

    @contextlib.contextmanager
    def hold(self, org_id: str, *, purpose: str = "", job_id: int | None = None) -> Iterator[LockHolder]:
        """`acquire` for the duration of a block, released even when the block fails."""
        holder = self.acquire(org_id, purpose=purpose, job_id=job_id)
        try:
            yield holder
        finally:
            self.release(org_id)

    def holder(self, org_id: str) -> LockHolder | None:
        row = self.db.query_one("SELECT * FROM org_locks WHERE org_id = ?", (org_id,))
        return _holder(row) if row else None

    def list(self) -> list[LockHolder]:
        return [_holder(row) for row in self.db.query("SELECT * FROM org_locks ORDER BY org_id")]

    def clear_stale(self) -> builtins.list[str]:
        """Delete every lock whose holder is dead (the daemon calls this at start); returns their org ids."""
        with self.db.transaction():
            stale = [holder.org_id for holder in self.list() if not holder.alive]
            for org_id in stale:
                self.db.execute("DELETE FROM org_locks WHERE org_id = ?", (org_id,))
        return stale

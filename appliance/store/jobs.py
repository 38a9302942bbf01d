"""The job queue (the `jobs` table): long work recorded in the state database so it survives a dropped session.

The CLI and TUI `enqueue` jobs (backup, replication, retention, check, export, restore); the daemon, or
the CLI itself when no daemon runs, `claim_next` one, reports `update_progress` (which doubles as the
heartbeat and answers whether a cancel was requested) and `finish`es it.

`claim_next` is atomic across processes: it selects and marks the job inside one `BEGIN IMMEDIATE`
transaction, so two workers never claim the same job. It also never hands out a job for an
organisation that already has a running job (the organisation lock in `locks.py` enforces the same
thing for work that does not go through the queue). A running job whose owner process died is put
back in the queue by `recover_stale` (the daemon calls it at start and now and then).

It must not run jobs or know their kinds' parameters (the daemon and use cases do).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from appliance.errors import NotFound, StoreError
from appliance.store.db import Row, StateDB, from_json, to_json
from appliance.store.locks import current_process, process_alive


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class Job:
    job_id: int
    kind: str
    org_id: str | None
    params: dict[str, Any]
    state: JobState
    progress: dict[str, Any]
    result: Any
    error: str | None
    priority: int
    not_before: float | None
    attempts: int
    cancel_requested: bool
    owner_pid: int | None
    owner_start: str | None
    created_at: float
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None


def _job(row: Row) -> Job:
    return Job(
        job_id=row["job_id"],
        kind=row["kind"],
        org_id=row["org_id"],
        params=from_json(row["params"], {}),
        state=JobState(row["state"]),
        progress=from_json(row["progress"], {}),
        result=from_json(row["result"]),
        error=row["error"],
        priority=row["priority"],
        not_before=row["not_before"],
        attempts=row["attempts"],
        cancel_requested=bool(row["cancel_requested"]),
        owner_pid=row["owner_pid"],
        owner_start=row["owner_start"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        finished_at=row["finished_at"],
    )


class Jobs:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def enqueue(
        self,
        kind: str,
        *,
        org_id: str | None = None,
        params: dict[str, Any] | None = None,
        priority: int = 0,
        not_before: float | None = None,
    ) -> Job:
        """Queue a job; higher `priority` first, then oldest first; not before `not_before` (UNIX time)."""
        job_id = self.db.insert(
            "INSERT INTO jobs(kind, org_id, params, state, priority, not_before, created_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            (kind, org_id, to_json(params or {}), priority, not_before, self.db.now()),
        )
        return self.get(job_id)

    def claim_next(self, *, kinds: Iterable[str] | None = None) -> Job | None:
        """Atomically take the next runnable job for this process (None when nothing is runnable)."""
        kind_list = list(kinds) if kinds is not None else None
        kind_filter = ""
        params: list[Any] = [self.db.now()]
        if kind_list is not None:
            if not kind_list:
                return None
            kind_filter = f"AND kind IN ({', '.join('?' for _ in kind_list)})"
            params.extend(kind_list)
        pid, start = current_process()
        with self.db.transaction():
            row = self.db.query_one(
                "SELECT job_id FROM jobs AS queued WHERE state = 'queued' "
                "AND (not_before IS NULL OR not_before <= ?) "
                f"{kind_filter} "
                "AND (org_id IS NULL OR NOT EXISTS "
                "     (SELECT 1 FROM jobs AS busy WHERE busy.org_id = queued.org_id AND busy.state = 'running')) "
                "ORDER BY priority DESC, job_id LIMIT 1",
                params,
            )
            if row is None:
                return None
            now = self.db.now()
            self.db.execute(
                "UPDATE jobs SET state = 'running', owner_pid = ?, owner_start = ?, started_at = ?, "
                "heartbeat_at = ?, attempts = attempts + 1 WHERE job_id = ?",
                (pid, start, now, now, row["job_id"]),
            )
            return self.get(row["job_id"])

    def update_progress(self, job_id: int, progress: dict[str, Any]) -> bool:
        """Record progress and a heartbeat; returns True if someone asked to cancel the job."""
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE jobs SET progress = ?, heartbeat_at = ? WHERE job_id = ? AND state = 'running'",
                (to_json(progress), self.db.now(), job_id),
            )
            if not changed:
                self._refuse_not_running(job_id)
            return bool(self.db.scalar("SELECT cancel_requested FROM jobs WHERE job_id = ?", (job_id,)))

    def finish(self, job_id: int, state: JobState, *, result: Any = None, error: str | None = None) -> Job:
        """End a running job as done, failed or cancelled."""
        state = JobState(state)
        if state not in FINAL_STATES:
            raise StoreError(f"a job cannot finish as {state.value!r}")
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE jobs SET state = ?, result = ?, error = ?, finished_at = ? "
                "WHERE job_id = ? AND state = 'running'",
                (state.value, to_json(result) if result is not None else None, error, self.db.now(), job_id),
            )
            if not changed:
                self._refuse_not_running(job_id)
            return self.get(job_id)

    def request_cancel(self, job_id: int) -> Job:
        """Cancel a queued job now; ask a running one to stop (its worker sees it in `update_progress`)."""
        with self.db.transaction():
            job = self.get(job_id)
            if job.state is JobState.QUEUED:
                self.db.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = ? WHERE job_id = ?",
                    (self.db.now(), job_id),
                )
            elif job.state is JobState.RUNNING:
                self.db.execute("UPDATE jobs SET cancel_requested = 1 WHERE job_id = ?", (job_id,))
            return self.get(job_id)

    def recover_stale(self, *, max_attempts: int | None = None) -> list[int]:
        """Requeue running jobs whose owner process is gone (or fail them after `max_attempts`)."""
        recovered: list[int] = []
        with self.db.transaction():
            for job in self.list(state=JobState.RUNNING):
                if job.owner_pid is not None and process_alive(job.owner_pid, job.owner_start):
                    continue
                if job.cancel_requested:
                    new_state, error = JobState.CANCELLED, "its worker died after a cancel was requested"
                elif max_attempts is not None and job.attempts >= max_attempts:
                    new_state, error = JobState.FAILED, f"its worker died {job.attempts} times"
                else:
                    new_state, error = JobState.QUEUED, None
                self.db.execute(
                    "UPDATE jobs SET state = ?, error = ?, owner_pid = NULL, owner_start = NULL, "
                    "finished_at = CASE WHEN ? = 'queued' THEN NULL ELSE ? END WHERE job_id = ?",
                    (new_state.value, error, new_state.value, self.db.now(), job.job_id),
                )
                recovered.append(job.job_id)
        return recovered

    def find(self, job_id: int) -> Job | None:
        row = self.db.query_one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return _job(row) if row else None

    def get(self, job_id: int) -> Job:
        job = self.find(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def list(
        self, *, state: JobState | None = None, org_id: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[Job]:
        rows = self.db.query(
            "SELECT * FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR org_id = ?2) "
            "AND (?3 IS NULL OR kind = ?3) ORDER BY job_id LIMIT ?4",
            (state.value if state else None, org_id, kind, limit),
        )
        return [_job(row) for row in rows]

    def _refuse_not_running(self, job_id: int) -> None:
        job = self.get(job_id)
        raise StoreError(f"job {job_id} is {job.state.value}, not running")

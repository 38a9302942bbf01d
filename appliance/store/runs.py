"""Backup runs (the `runs` table): one attempt to take a backup point of one organisation.

A run records its mode, status, the API calls and bytes it spent, its error, and a checkpoint (JSON the
backup use case defines: which endpoints and pages are done) so a run stopped by an exhausted day budget,
a signal or a crash resumes where it stopped instead of starting over (issue 3, "Read").

Statuses: `running`, `succeeded`, `failed`, `paused` (checkpointed on purpose, e.g. the day budget ran
out; resume after the reset) and `interrupted` (stopped by a signal). A `running` row whose process died
is simply a run to resume; `resumable()` finds it.

It must not decide what a checkpoint means or when to resume.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import NotFound, StoreError
from appliance.store.db import Row, StateDB, from_json, to_json

Mode = Literal["full", "incremental"]


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"


RESUMABLE = (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class Run:
    run_id: str
    org_id: str
    job_id: int | None
    mode: Mode
    status: RunStatus
    started_at: float
    finished_at: float | None
    calls: int
    bytes: int
    error: str | None
    checkpoint: dict[str, Any] | None


def _run(row: Row) -> Run:
    return Run(
        run_id=row["run_id"],
        org_id=row["org_id"],
        job_id=row["job_id"],
        mode=row["mode"],
        status=RunStatus(row["status"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        calls=row["calls"],
        bytes=row["bytes"],
        error=row["error"],
        checkpoint=from_json(row["checkpoint"]),
    )


def new_run_id(now: float) -> str:
    """Sortable and unique without coordination (a restic tag and a log field): `20260301T020000Z-3f9a1c`."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class Runs:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def start(self, org_id: str, mode: Mode, *, job_id: int | None = None, run_id: str | None = None) -> Run:
        now = self.db.now()
        if mode not in ("full", "incremental"):
            raise StoreError(f"unknown run mode {mode!r}")
        run_id = run_id or new_run_id(now)
        self.db.execute(
            "INSERT INTO runs(run_id, org_id, job_id, mode, status, started_at) VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, org_id, job_id, mode, now),
        )
        return self.get(run_id)

    def checkpoint(
        self, run_id: str, checkpoint: dict[str, Any], *, calls: int | None = None, bytes: int | None = None
    ) -> None:
        """Save resume state (and the usage so far) in one durable commit."""
        changed = self.db.execute(
            "UPDATE runs SET checkpoint = ?, calls = COALESCE(?, calls), bytes = COALESCE(?, bytes) WHERE run_id = ?",
            (to_json(checkpoint), calls, bytes, run_id),
        )
        if not changed:
            raise NotFound(f"no run {run_id!r}")

    def resume(self, run_id: str, *, job_id: int | None = None) -> Run:
        """Mark a paused or interrupted run as running again (its checkpoint is kept)."""
        changed = self.db.execute(
            "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, job_id = COALESCE(?, job_id) "
            "WHERE run_id = ? AND status IN ('running', 'paused', 'interrupted')",
            (job_id, run_id),
        )
        if not changed:
            raise StoreError(f"run {run_id!r} cannot be resumed", hint="only paused or interrupted runs resume")
        return self.get(run_id)

    def finish(
        self,
        run_id: str,
        status: RunStatus,
        *,
        calls: int | None = None,
        bytes: int | None = None,
        error: str | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> Run:
        """End (or pause) a run. A succeeded run drops its checkpoint: there is nothing left to resume."""
        status = RunStatus(status)
        if status is RunStatus.RUNNING:
            raise StoreError("a run cannot finish as running")
        keep = status is not RunStatus.SUCCEEDED
        changed = self.db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, calls = COALESCE(?, calls), bytes = COALESCE(?, bytes), "
            "error = ?, checkpoint = CASE WHEN ? THEN COALESCE(?, checkpoint) ELSE NULL END WHERE run_id = ?",
            (
                status.value,
                self.db.now(),
                calls,
                bytes,
                error,
                keep,
                to_json(checkpoint) if checkpoint is not None else None,
                run_id,
            ),
        )
        if not changed:
            raise NotFound(f"no run {run_id!r}")
        return self.get(run_id)

    def find(self, run_id: str) -> Run | None:
        row = self.db.query_one("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _run(row) if row else None

    def get(self, run_id: str) -> Run:
        run = self.find(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        return run

    def list(self, org_id: str | None = None, *, status: RunStatus | None = None, limit: int = 100) -> list[Run]:
        """Newest first."""
        rows = self.db.query(
            "SELECT * FROM runs WHERE (?1 IS NULL OR org_id = ?1) AND (?2 IS NULL OR status = ?2) "
            "ORDER BY started_at DESC, run_id DESC LIMIT ?3",
            (org_id, status.value if status else None, limit),
        )
        return [_run(row) for row in rows]

    def calls_since(self, since: float) -> dict[str, int]:
        """Xero calls per organisation by runs started since `since` (UNIX seconds): the day budget spent."""
        rows = self.db.query(
            "SELECT org_id, sum(calls) AS calls FROM runs WHERE started_at >= ? GROUP BY org_id", (since,)
        )
        return {row["org_id"]: int(row["calls"] or 0) for row in rows}

    def latest(self, org_id: str, *, status: RunStatus | None = None) -> Run | None:
        runs = self.list(org_id, status=status, limit=1)
        return runs[0] if runs else None

    def resumable(self, org_id: str) -> Run | None:
        """The newest unfinished run with a checkpoint, if the newest run is one (else start afresh)."""
        run = self.latest(org_id)
        if run is not None and run.status in RESUMABLE and run.checkpoint is not None:
            return run
        return None

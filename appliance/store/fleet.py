"""Fleet bookkeeping for the daemon: its heartbeat row, per-organisation scheduling facts, replica state,
maintenance times and sent alerts (tables `daemon`, `fleet`, `replicas`, `maintenance`, `alerts_sent`).

Also the two job-queue operations the daemon needs beyond `appliance.store.jobs`: claiming one named job
(the CLI running the job it just queued, the daemon starting the job the scheduler chose) and putting a
running job back in the queue when it stopped at a checkpoint (SIGTERM), so it resumes on the next start.

It must not decide anything (the scheduler and the daemon do) and must not call Xero or restic.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from appliance.store.db import Row, StateDB, to_json
from appliance.store.jobs import Job, Jobs
from appliance.store.locks import current_process, process_alive

DAEMON_NAME = "strongroom"


@dataclass(frozen=True)
class DaemonRow:
    owner_pid: int
    owner_start: str | None
    started_at: float
    heartbeat_at: float
    status: str

    @property
    def alive(self) -> bool:
        return process_alive(self.owner_pid, self.owner_start)


@dataclass(frozen=True)
class FleetEntry:
    """What the scheduler needs to know about one organisation beyond its points."""

    org_id: str
    last_attempt_at: float | None
    last_status: str | None
    failures: int
    """Consecutive failed backups (0 after a success)."""
    paused_until: float | None
    """A run paused on the day budget resumes after this (UNIX time)."""
    last_calls: int | None
    """API calls of the last finished backup: the scheduler's estimate for the next."""
    last_error: str | None


@dataclass(frozen=True)
class ReplicaState:
    org_id: str
    region: str
    replicated_through: float | None
    """`taken_at` of the newest local point the replica is known to hold."""
    replicated_at: float | None
    snapshots: int
    error: str | None


def _fleet(row: Row) -> FleetEntry:
    return FleetEntry(
        org_id=row["org_id"],
        last_attempt_at=row["last_attempt_at"],
        last_status=row["last_status"],
        failures=row["failures"],
        paused_until=row["paused_until"],
        last_calls=row["last_calls"],
        last_error=row["last_error"],
    )


def _replica(row: Row) -> ReplicaState:
    return ReplicaState(
        org_id=row["org_id"],
        region=row["region"],
        replicated_through=row["replicated_through"],
        replicated_at=row["replicated_at"],
        snapshots=row["snapshots"],
        error=row["error"],
    )


class Fleet:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    # --- the daemon's own row ------------------------------------------------------------------

    def register_daemon(self) -> None:
        """Record this process as the running daemon (replacing a dead one's row)."""
        pid, start = current_process()
        now = self.db.now()
        self.db.execute(
            "INSERT INTO daemon(name, owner_pid, owner_start, started_at, heartbeat_at, status) "
            "VALUES (?, ?, ?, ?, ?, 'starting') ON CONFLICT(name) DO UPDATE SET owner_pid = excluded.owner_pid, "
            "owner_start = excluded.owner_start, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, status = excluded.status",
            (DAEMON_NAME, pid, start, now, now),
        )

    def daemon_heartbeat(self, status: str) -> None:
        pid, _ = current_process()
        self.db.execute(
            "UPDATE daemon SET heartbeat_at = ?, status = ? WHERE name = ? AND owner_pid = ?",
            (self.db.now(), status, DAEMON_NAME, pid),
        )

    def unregister_daemon(self) -> None:
        pid, _ = current_process()
        self.db.execute("DELETE FROM daemon WHERE name = ? AND owner_pid = ?", (DAEMON_NAME, pid))

    def daemon(self) -> DaemonRow | None:
        row = self.db.query_one("SELECT * FROM daemon WHERE name = ?", (DAEMON_NAME,))
        if row is None:
            return None
        return DaemonRow(row["owner_pid"], row["owner_start"], row["started_at"], row["heartbeat_at"], row["status"])

    def running_daemon(self) -> DaemonRow | None:
        """The daemon row if its process is alive (a `kill -9`ed daemon leaves a row that does not count)."""
        row = self.daemon()
        return row if row is not None and row.alive else None

    # --- per-organisation scheduling facts -----------------------------------------------------

    def record_backup(
        self,
        org_id: str,
        status: str,
        *,
        calls: int | None,
        error: str | None = None,
        paused_until: float | None = None,
    ) -> FleetEntry:
        """Note a finished backup attempt: success resets the failure count, failure increments it."""
        now = self.db.now()
        failed = status not in ("succeeded", "paused", "interrupted", "locked")
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO fleet(org_id, last_attempt_at, last_status, failures, paused_until, last_calls, "
                "last_error, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?2) ON CONFLICT(org_id) DO UPDATE SET "
                "last_attempt_at = ?2, last_status = ?3, "
                "failures = CASE WHEN ?8 THEN fleet.failures + 1 WHEN ?3 = 'succeeded' THEN 0 ELSE fleet.failures END, "
                "paused_until = ?5, last_calls = CASE WHEN ?3 = 'succeeded' THEN ?6 ELSE fleet.last_calls END, "
                "last_error = ?7, updated_at = ?2",
                (org_id, now, status, 1 if failed else 0, paused_until, calls, error, failed),
            )
            entry = self.entry(org_id)
        assert entry is not None
        return entry

    def entry(self, org_id: str) -> FleetEntry | None:
        row = self.db.query_one("SELECT * FROM fleet WHERE org_id = ?", (org_id,))
        return _fleet(row) if row else None

    def entries(self) -> dict[str, FleetEntry]:
        return {row["org_id"]: _fleet(row) for row in self.db.query("SELECT * FROM fleet")}

    def last_points(self) -> dict[str, float]:
        """Organisation id -> `taken_at` of its newest point, in one query (the fleet may be 5,000 strong)."""
        rows = self.db.query("SELECT org_id, MAX(taken_at) AS taken_at FROM points GROUP BY org_id")
        return {row["org_id"]: row["taken_at"] for row in rows}

    # --- replicas ------------------------------------------------------------------------------

    def record_replica(
        self,
        org_id: str,
        region: str,
        *,
        replicated_through: float | None,
        snapshots: int,
        error: str | None = None,
    ) -> None:
        now = self.db.now()
        if error is not None:
            self.db.execute(
                "INSERT INTO replicas(org_id, region, snapshots, error, updated_at) VALUES (?, ?, 0, ?, ?) "
                "ON CONFLICT(org_id, region) DO UPDATE SET error = excluded.error, updated_at = excluded.updated_at",
                (org_id, region, error, now),
            )
            return
        self.db.execute(
            "INSERT INTO replicas(org_id, region, replicated_through, replicated_at, snapshots, error, updated_at) "
            "VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT(org_id, region) DO UPDATE SET "
            "replicated_through = excluded.replicated_through, replicated_at = excluded.replicated_at, "
            "snapshots = excluded.snapshots, error = NULL, updated_at = excluded.updated_at",
            (org_id, region, replicated_through, now, snapshots, now),
        )

    def replicas(self, org_id: str | None = None) -> builtins.list[ReplicaState]:
        rows = self.db.query(
            "SELECT * FROM replicas WHERE (?1 IS NULL OR org_id = ?1) ORDER BY org_id, region", (org_id,)
        )
        return [_replica(row) for row in rows]

    def replication_lag(self, org_id: str, region: str, now: float) -> float:
        """Seconds the oldest local point not yet in the region has waited (0 when the replica is current)."""
        replica = self.db.query_one(
            "SELECT replicated_through FROM replicas WHERE org_id = ? AND region = ?", (org_id, region)
        )
        through = replica["replicated_through"] if replica else None
        waiting = self.db.scalar(
            "SELECT MIN(taken_at) FROM points WHERE org_id = ? AND (?2 IS NULL OR taken_at > ?2)", (org_id, through)
        )
        return max(0.0, now - waiting) if waiting is not None else 0.0

    # --- maintenance (retention, check) --------------------------------------------------------

    def record_maintenance(self, org_id: str, region: str, task: str, *, ok: bool, error: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO maintenance(org_id, region, task, last_at, ok, error) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(org_id, region, task) DO UPDATE SET last_at = excluded.last_at, ok = excluded.ok, "
            "error = excluded.error",
            (org_id, region, task, self.db.now(), int(ok), error),
        )

    def maintenance_times(self, task: str) -> dict[str, float]:
        """Organisation id -> when `task` last ran on its local repository."""
        rows = self.db.query("SELECT org_id, last_at FROM maintenance WHERE task = ? AND region = 'local'", (task,))
        return {row["org_id"]: row["last_at"] for row in rows}

    # --- alerts --------------------------------------------------------------------------------

    def alert_due(self, alert_key: str, repeat_after: float) -> bool:
        """Whether an alert with this key was not sent within `repeat_after` seconds."""
        sent = self.db.scalar("SELECT sent_at FROM alerts_sent WHERE alert_key = ?", (alert_key,))
        return sent is None or self.db.now() - sent >= repeat_after

    def record_alert(self, alert_key: str, event: str, org_id: str | None, *, delivered: bool) -> None:
        self.db.execute(
            "INSERT INTO alerts_sent(alert_key, event, org_id, sent_at, delivered) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(alert_key) DO UPDATE SET sent_at = excluded.sent_at, delivered = excluded.delivered, "
            "repeats = alerts_sent.repeats + 1",
            (alert_key, event, org_id, self.db.now(), int(delivered)),
        )

    # --- job queue extras ----------------------------------------------------------------------

    def claim_job(self, job_id: int) -> Job | None:
        """Take one named queued job for this process; None if it is gone, not queued, or its organisation
        already has a running job (same rule as `Jobs.claim_next`)."""
        pid, start = current_process()
        now = self.db.now()
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE jobs SET state = 'running', owner_pid = ?, owner_start = ?, started_at = ?, heartbeat_at = ?, "
                "attempts = attempts + 1 WHERE job_id = ? AND state = 'queued' AND (org_id IS NULL OR NOT EXISTS "
                "(SELECT 1 FROM jobs AS busy WHERE busy.org_id = jobs.org_id AND busy.state = 'running'))",
                (pid, start, now, now, job_id),
            )
            return Jobs(self.db).get(job_id) if changed else None

    def requeue(self, job_id: int, *, progress: dict[str, Any] | None = None, not_before: float | None = None) -> bool:
        """Put a running job of this process back in the queue (stopped at a checkpoint; resumes later, not
        before `not_before` when given)."""
        pid, _ = current_process()
        return bool(
            self.db.execute(
                "UPDATE jobs SET state = 'queued', owner_pid = NULL, owner_start = NULL, "
                "progress = COALESCE(?, progress), not_before = COALESCE(?, not_before) "
                "WHERE job_id = ? AND state = 'running' AND owner_pid = ?",
                (None if progress is None else to_json(progress), not_before, job_id, pid),
            )
        )

    def queued_for(self, org_id: str, kind: str) -> Job | None:
        row = self.db.query_one(
            "SELECT job_id FROM jobs WHERE org_id = ? AND kind = ? AND state IN ('queued', 'running') "
            "ORDER BY job_id LIMIT 1",
            (org_id, kind),
        )
        return Jobs(self.db).get(row["job_id"]) if row else None

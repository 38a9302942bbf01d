"""Fleet reads for front ends: every organisation's health in one query, one organisation's timeline, and
the connect flow as a front end drives it step by step.

The terminal UI shows 5,000 organisations at a glance and must draw in well under a second, so
`FleetService.status()` answers with ONE aggregate SQL query over the state database (points, runs, jobs and, once
the damage-detection issue has created it, findings) instead of a query per organisation, and returns plain
frozen dataclasses a front end can sort and filter in memory.

Health is decided here, not in the TUI, so the CLI, the daemon's alerts and the TUI agree on what "stale"
means. `ConnectFlow` wraps the OAuth adapter (authorize URL, loopback receiver, pasted redirect) so the TUI
can walk a person through consent without importing `appliance.xero`.

Long work goes through the job queue: `enqueue` for a running daemon, or `run_here` (the daemon's own
`JobRunner`, in this process) when there is none, so a job behaves the same whoever runs it. It must not talk
to restic or Xero itself; it writes only what a person edits (the integrations register) and jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import OrganisationLocked, UsageError
from appliance.models import Organisation, OrgStatus
from appliance.service import Appliance
from appliance.settings import RetentionPolicy, XeroApp
from appliance.store.jobs import JobState
from appliance.xero.oauth import CallbackReceiver, PendingAuthorization, parse_redirect, ssh_forward_hint

Clock = Callable[[], float]

DAY = 86_400.0
DEFAULT_INTERVAL = DAY
"""How often an organisation is due: once a day, the schedule every organisation gets by default."""
DEFAULT_STALE_AFTER = 1.5 * DAY
"""A last good point older than this is stale: a daily backup was missed (with half a day of slack for a
night window that moved or a run that paused on the day budget and resumed after Xero's reset)."""
FAILING_AFTER = 1
"""Failed runs in a row (since the last success) that make an organisation "failing"."""


class Health(enum.StrEnum):
    """One organisation at a glance; the order is the order of urgency (most urgent first)."""

    NEEDS_CONSENT = "needs_consent"
    FAILING = "failing"
    STALE = "stale"
    HEALTHY = "healthy"


HEALTH_ORDER = {health: rank for rank, health in enumerate(Health)}


@dataclass(frozen=True)
class OrgHealth:
    """One row of the fleet dashboard."""

    org_id: str
    name: str
    status: OrgStatus
    health: Health
    region: str | None
    country: str | None
    last_point_at: float | None
    """When the newest backup point was taken (UNIX seconds); None if there is none yet."""
    last_point_id: str | None
    points: int
    next_due_at: float | None
    """When the next backup is due: a queued job's start time, or the last point plus the interval."""
    failures: int
    """Failed runs since the last successful one."""
    last_error: str | None
    findings: int
    """Open (unacknowledged) damage findings."""
    replication_lag: float | None
    """Seconds the offsite copy is behind the primary; None until replication is configured."""
    job_state: str | None
    """`queued` or `running` when a job for this organisation is waiting or in progress."""

    def age(self, now: float) -> float | None:
        return None if self.last_point_at is None else max(0.0, now - self.last_point_at)


@dataclass(frozen=True)
class FleetTotals:
    organisations: int
    healthy: int
    stale: int
    failing: int
    needs_consent: int
    findings: int

    @classmethod
    def of(cls, rows: Iterable[OrgHealth]) -> FleetTotals:
        counts = dict.fromkeys(Health, 0)
        organisations = findings = 0
        for row in rows:
            organisations += 1
            counts[row.health] += 1
            findings += row.findings
        return cls(
            organisations=organisations,
            healthy=counts[Health.HEALTHY],
            stale=counts[Health.STALE],
            failing=counts[Health.FAILING],
            needs_consent=counts[Health.NEEDS_CONSENT],
            findings=findings,
        )


@dataclass(frozen=True)
class PointInfo:
    """One backup point on an organisation's timeline (a plain copy of the state row)."""

    snapshot_id: str
    taken_at: float
    mode: str
    records: int
    """Records in the point, all endpoints together."""
    counts: dict[str, int]
    """Records per endpoint."""
    calls: int
    """Xero API calls the run that made this point spent."""
    bytes_downloaded: int
    data_added: int
    """Bytes restic added to the repository for this point (after deduplication)."""
    size_bytes: int | None

    @property
    def short_id(self) -> str:
        return self.snapshot_id[:8]


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    mode: str
    status: str
    started_at: float
    finished_at: float | None
    calls: int
    error: str | None


@dataclass(frozen=True)
class FindingInfo:
    """A damage finding as the organisation screen lists it (read from the findings table when it exists)."""

    finding_id: str
    rule: str
    severity: str
    summary: str
    detected_at: float | None
    snapshot_id: str | None
    last_clean_snapshot_id: str | None
    acknowledged: bool
    point_before: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrgDetail:
    """Everything the organisation screen shows."""

    organisation: Organisation
    health: OrgHealth
    points: list[PointInfo]
    runs: list[RunInfo]
    findings: list[FindingInfo]
    retention: RetentionPolicy
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def last_clean_snapshot_id(self) -> str | None:
        """The newest point no open finding points at (the one to restore from or compare with)."""
        suspects = {f.last_clean_snapshot_id for f in self.findings if not f.acknowledged}
        if suspects - {None}:
            # A finding names its last clean point explicitly; the oldest such claim is the safe one.
            order = {p.snapshot_id: p.taken_at for p in self.points}
            named = [s for s in suspects if s in order]
            if named:
                return min(named, key=lambda s: order[s])
        return self.points[-1].snapshot_id if self.points else None


def _point_info(snapshot_id: str, taken_at: float, mode: str, summary: dict[str, Any], size: int | None) -> PointInfo:
    counts_raw = summary.get("records") or {}
    counts = {str(k): int(v) for k, v in counts_raw.items()} if isinstance(counts_raw, dict) else {}
    return PointInfo(
        snapshot_id=snapshot_id,
        taken_at=taken_at,
        mode=mode,
        records=sum(counts.values()),
        counts=counts,
        calls=int(summary.get("calls") or 0),
        bytes_downloaded=int(summary.get("bytes_downloaded") or 0),
        data_added=int(summary.get("data_added") or 0),
        size_bytes=size,
    )


# One pass over each table, grouped per organisation; the indexes `points_by_time`, `runs_by_org` and
# `jobs_by_org` keep it linear. Measured with 5,000 organisations in bench/tui_dashboard.py.
_STATUS_SQL = """
WITH last_point AS (
    SELECT org_id, MAX(taken_at) AS taken_at, COUNT(*) AS points FROM points GROUP BY org_id
),
last_success AS (
    SELECT org_id, MAX(started_at) AS started_at FROM runs WHERE status = 'succeeded' GROUP BY org_id
),
failures AS (
    SELECT r.org_id, COUNT(*) AS failures, MAX(r.started_at) AS last_failed_at
    FROM runs AS r LEFT JOIN last_success AS s ON s.org_id = r.org_id
    WHERE r.status = 'failed' AND r.started_at > COALESCE(s.started_at, 0)
    GROUP BY r.org_id
),
{replicas_cte}
active_jobs AS (
    SELECT org_id, MAX(state = 'running') AS running, MIN(not_before) AS not_before
    FROM jobs WHERE state IN ('queued', 'running') AND org_id IS NOT NULL GROUP BY org_id
)
SELECT o.org_id, o.name, o.status, o.region, o.country,
       p.taken_at AS last_point_at, p.points,
       (SELECT snapshot_id FROM points AS q WHERE q.org_id = o.org_id ORDER BY taken_at DESC, snapshot_id DESC
        LIMIT 1) AS last_point_id,
       COALESCE(f.failures, 0) AS failures,
       (SELECT error FROM runs AS e WHERE e.org_id = o.org_id AND e.status = 'failed'
        ORDER BY started_at DESC LIMIT 1) AS last_error,
       j.running AS job_running, j.not_before AS job_not_before, (j.org_id IS NOT NULL) AS has_job
       {findings_column}
       {lag_column}
FROM organisations AS o
LEFT JOIN last_point AS p ON p.org_id = o.org_id
LEFT JOIN failures AS f ON f.org_id = o.org_id
LEFT JOIN active_jobs AS j ON j.org_id = o.org_id
{findings_join}
{lag_join}
WHERE ?1 IS NULL OR o.org_id = ?1
ORDER BY o.name COLLATE NOCASE, o.org_id
"""


class FleetService:
    """Fleet-wide reads (and the few writes a person makes from a front end) over one `Appliance`."""

    def __init__(
        self,
        appliance: Appliance,
        *,
        clock: Clock = time.time,
        interval: float = DEFAULT_INTERVAL,
        stale_after: float = DEFAULT_STALE_AFTER,
    ) -> None:
        self.appliance = appliance
        self.clock = clock
        self.interval = interval
        self.stale_after = stale_after

    # --- health ----------------------------------------------------------------------------------------------
    def health_of(
        self, status: OrgStatus, last_point_at: float | None, failures: int, now: float | None = None
    ) -> Health:
        """The one rule for "at a glance": consent first, then failures, then age of the last good point."""
        now = self.clock() if now is None else now
        if status is not OrgStatus.ACTIVE:
            return Health.NEEDS_CONSENT
        if failures >= FAILING_AFTER:
            return Health.FAILING
        if last_point_at is None or now - last_point_at > self.stale_after:
            return Health.STALE
        return Health.HEALTHY

    def _has_table(self, name: str) -> bool:
        """Tables later issues add by migration (findings, replicas) are read only once they exist."""
        db = self.appliance.state.db
        return db.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None

    def status(self, org_id: str | None = None) -> list[OrgHealth]:
        """Every organisation's health, by name (one query, however many organisations), or just `org_id`'s."""
        now = self.clock()
        findings_column = ", 0 AS findings"
        findings_join = ""
        if self._has_table("findings"):
            open_filter = "WHERE acknowledged_at IS NULL"
            findings_column = ", COALESCE(d.findings, 0) AS findings"
            findings_join = (
                f"LEFT JOIN (SELECT org_id, COUNT(*) AS findings FROM findings {open_filter} GROUP BY org_id) AS d "
                "ON d.org_id = o.org_id"
            )
        replicas_cte, lag_column, lag_join = "", ", NULL AS waiting_since, 0 AS has_replica", ""
        if self._has_table("replicas"):
            # The daemon records, per organisation and region, the newest point its replica holds; the lag is
            # how long the oldest point not yet copied has waited (as `strongroom jobs` and alerts compute it).
            replicas_cte = (
                "replica AS (SELECT org_id, MIN(COALESCE(replicated_through, 0)) AS through FROM replicas "
                "GROUP BY org_id),"
            )
            lag_column = (
                ", (SELECT MIN(taken_at) FROM points AS w WHERE w.org_id = o.org_id AND w.taken_at > r.through) "
                "AS waiting_since, (r.org_id IS NOT NULL) AS has_replica"
            )
            lag_join = "LEFT JOIN replica AS r ON r.org_id = o.org_id"
        sql = _STATUS_SQL.format(
            findings_column=findings_column,
            findings_join=findings_join,
            replicas_cte=replicas_cte,
            lag_column=lag_column,
            lag_join=lag_join,
        )
        rows = self.appliance.state.db.query(sql, (org_id,))
        result = []
        for row in rows:
            status = OrgStatus(row["status"])
            last_point_at = row["last_point_at"]
            failures = int(row["failures"])
            if row["has_job"]:
                job_state: str | None = "running" if row["job_running"] else "queued"
                next_due = row["job_not_before"] or now
            else:
                job_state = None
                next_due = max(now, last_point_at + self.interval) if last_point_at is not None else now
            result.append(
                OrgHealth(
                    org_id=row["org_id"],
                    name=row["name"],
                    status=status,
                    health=self.health_of(status, last_point_at, failures, now),
                    region=row["region"],
                    country=row["country"],
                    last_point_at=last_point_at,
                    last_point_id=row["last_point_id"],
                    points=int(row["points"] or 0),
                    next_due_at=next_due if status is OrgStatus.ACTIVE else None,
                    failures=failures,
                    last_error=row["last_error"],
                    findings=int(row["findings"] or 0),
                    replication_lag=(max(0.0, now - row["waiting_since"]) if row.get("waiting_since") else 0.0)
                    if row["has_replica"]
                    else None,
                    job_state=job_state,
                )
            )
        return result

    # --- one organisation ------------------------------------------------------------------------------------
    def organisation(self, org_id: str) -> OrgDetail:
        state = self.appliance.state
        organisation = state.orgs.get(org_id)
        health = next(iter(self.status(org_id)), None)
        if health is None:  # pragma: no cover - get() above already refused unknown ids
            raise UsageError(f"no organisation {org_id!r}")
        points = [
            _point_info(p.snapshot_id, p.taken_at, p.mode, p.summary, p.size_bytes) for p in state.points.list(org_id)
        ]
        runs = [
            RunInfo(r["run_id"], r["mode"], r["status"], r["started_at"], r["finished_at"], r["calls"], r["error"])
            for r in state.db.query(
                "SELECT run_id, mode, status, started_at, finished_at, calls, error FROM runs WHERE org_id = ? "
                "ORDER BY started_at",
                (org_id,),
            )
        ]
        overrides = state.orgs.settings_overrides(org_id)
        retention = self.appliance.settings.retention
        if isinstance(overrides.get("retention"), dict):
            with contextlib.suppress(ValueError):
                retention = retention.model_copy(update=overrides["retention"])
        return OrgDetail(
            organisation=organisation,
            health=health,
            points=points,
            runs=runs,
            findings=self._findings(org_id),
            retention=retention,
            overrides=overrides,
        )

    def _findings(self, org_id: str) -> list[FindingInfo]:
        findings = getattr(self.appliance.state, "findings", None)  # the damage-detection issue's table
        if findings is None or not self._has_table("findings"):
            return []
        return [
            FindingInfo(
                finding_id=str(f.finding_id),
                rule=f.rule,
                severity=f.severity,
                summary=f.summary,
                detected_at=f.created_at,
                snapshot_id=f.point_after,
                last_clean_snapshot_id=f.last_clean_point,
                acknowledged=f.acknowledged_at is not None,
                point_before=f.point_before,
                evidence=dict(f.evidence),
            )
            for f in findings.list(org_id, include_acknowledged=True)
        ]

    def acknowledge_finding(self, finding_id: int, *, by: str = "") -> None:
        self.appliance.state.findings.acknowledge(finding_id, by=by)

    def set_integrations(self, org_id: str, integrations: Sequence[dict[str, Any]]) -> Organisation:
        """Replace the integrations register (the restore checklist turns it into reconnect steps)."""
        cleaned = []
        for entry in integrations:
            name = str(entry.get("name", "")).strip()
            if not name:
                raise UsageError("an integration needs a name")
            cleaned.append({key: value for key, value in entry.items() if value not in (None, "")} | {"name": name})
        state = self.appliance.state
        state.orgs.set_integrations(org_id, cleaned)
        return state.orgs.get(org_id)

    # --- jobs ------------------------------------------------------------------------------------------------
    def daemon_running(self) -> bool:
        """Whether a live daemon will pick queued jobs up (its heartbeat row names a process that is alive)."""
        from appliance.store.fleet import Fleet as DaemonFleet

        return DaemonFleet(self.appliance.state.db).running_daemon() is not None

    def enqueue(self, kind: str, org_ids: Sequence[str], params: dict[str, Any] | None = None) -> list[int]:
        """Queue a job per organisation for the daemon (skipping one already waiting for the same kind).

        Priority 50 is what `strongroom backup` uses when a daemon runs: a person's request goes before the
        scheduler's routine jobs.
        """
        state = self.appliance.state
        queued = []
        with state.transaction():
            for org_id in org_ids:
                if any(job.kind == kind for job in state.jobs.list(state=JobState.QUEUED, org_id=org_id)):
                    continue
                queued.append(state.jobs.enqueue(kind, org_id=org_id, params=params or {}, priority=50).job_id)
        return queued

    def run_here(
        self,
        kind: str,
        org_id: str,
        params: dict[str, Any] | None = None,
        *,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> JobInfo:
        """Record a job and run it in this process through the daemon's own `JobRunner` (no daemon running).

        Safe on a worker thread: unlike `appliance.daemon.jobs.run_in_process` it installs no signal handler
        (only the main thread may); the caller's `cancel` Event stops it the way the daemon's stop does.
        """
        from appliance.daemon.jobs import JobRunner
        from appliance.store.fleet import Fleet as DaemonFleet

        state = self.appliance.state
        job = state.jobs.enqueue(kind, org_id=org_id, params=params or {}, priority=100)
        claimed = DaemonFleet(state.db).claim_job(job.job_id)
        if claimed is None:
            state.jobs.request_cancel(job.job_id)
            raise OrganisationLocked(
                f"organisation {org_id} already has a running job", hint="it may be the daemon's: see `strongroom jobs`"
            )
        runner = JobRunner(
            self.appliance, on_progress=(lambda _job, progress: on_progress(progress)) if on_progress else None
        )
        final = asyncio.run(runner.execute(claimed, cancel or threading.Event()))
        return _job_info(final)

    def run_queued_here(self, job_id: int, *, cancel: threading.Event | None = None) -> JobInfo | None:
        """Run an already queued job in this process when no daemon will (None if someone else claimed it).

        Safe on a worker thread (no signal handler); the caller's `cancel` stops it as the daemon's stop would."""
        from appliance.daemon.jobs import JobRunner
        from appliance.store.fleet import Fleet as DaemonFleet

        claimed = DaemonFleet(self.appliance.state.db).claim_job(job_id)
        if claimed is None:
            return None
        final = asyncio.run(JobRunner(self.appliance).execute(claimed, cancel or threading.Event()))
        return _job_info(final)

    def jobs(self, org_id: str | None = None, *, limit: int = 50) -> list[JobInfo]:
        """Recent jobs, newest first."""
        rows = self.appliance.state.db.query(
            "SELECT job_id FROM jobs WHERE (?1 IS NULL OR org_id = ?1) ORDER BY job_id DESC LIMIT ?2", (org_id, limit)
        )
        return [_job_info(self.appliance.state.jobs.get(row["job_id"])) for row in rows]


@dataclass(frozen=True)
class JobInfo:
    """A job as a front end shows it (a plain copy of the queue's row)."""

    job_id: int
    kind: str
    org_id: str | None
    state: str
    progress: dict[str, Any]
    result: Any
    error: str | None
    created_at: float
    finished_at: float | None


def _job_info(job: Any) -> JobInfo:
    return JobInfo(
        job_id=job.job_id,
        kind=job.kind,
        org_id=job.org_id,
        state=JobState(job.state).value,
        progress=dict(job.progress),
        result=job.result,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


# --- connecting --------------------------------------------------------------------------------------------------


@dataclass
class ConnectFlow:
    """One consent attempt, as a front end walks a person through it over SSH.

    Xero redirects the browser to the app's registered redirect URI on `localhost`, which on an appliance
    reached over SSH is the appliance's loopback, not the laptop's: either the person forwards the port
    (`ssh -L`), or the browser's failed page's address is pasted back (Xero's OAuth 2.0 guide: the code
    arrives as a query parameter of the redirect, https://developer.xero.com/documentation/guides/oauth2/auth-flow).
    """

    appliance: Appliance
    app: XeroApp
    pending: PendingAuthorization

    @classmethod
    def begin(cls, appliance: Appliance, app_name: str | None = None) -> ConnectFlow:
        app, pending = appliance.begin_connect(app_name)
        return cls(appliance, app, pending)

    @property
    def url(self) -> str:
        return self.pending.url

    @property
    def port(self) -> int:
        return urlsplit(self.app.redirect_uri).port or 80

    def ssh_command(self, destination: str = "user@appliance") -> str:
        return ssh_forward_hint(self.port, destination)

    async def wait_for_callback(self, timeout: float) -> str:  # noqa: ASYNC109 - a deadline for a person
        """Listen on the redirect URI's loopback port until the browser arrives; returns the code."""
        async with CallbackReceiver(self.port) as receiver:
            return await receiver.wait(self.pending.state, timeout)

    def code_from_pasted(self, url: str) -> str:
        return parse_redirect(url, self.pending.state)

    async def complete(self, code: str) -> list[Organisation]:
        return await self.appliance.complete_connect(self.app, self.pending, code, state=self.pending.state)

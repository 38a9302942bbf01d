"""What the TUI's screens call: the appliance's use cases behind one small object, plus long-work dispatch.

Screens never build adapters and never touch the state database: they call `Backend`, always from a worker
thread (every method here may block on SQLite, restic or Xero), and turn results into messages.

Long work (backups, exports) is a job, so a dropped SSH session loses nothing: with a daemon running,
`backup_now` only enqueues and the daemon runs the jobs; with none (a laptop, the demo) the same job runs
here through the daemon's own job runner, on the worker thread, reporting progress through a callback.

It must not import Textual (it is tested and benchmarked without an app).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.fleet import Clock, ConnectFlow, FleetService, JobInfo, OrgDetail, OrgHealth
from appliance.models import Organisation
from appliance.points.diff import PointDiff
from appliance.points.queries import Filters, Table
from appliance.points.usecases import PointsService
from appliance.restore import usecases as restore_usecases
from appliance.service import Appliance

ProgressCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[str, int, int], None]
"""Opening a point and exporting report `(phase, done, total)`."""


@dataclass
class Dispatch:
    """How a request for long work went: jobs queued for the daemon, or jobs this process ran to the end."""

    queued_jobs: list[int] = field(default_factory=list)
    finished: list[JobInfo] = field(default_factory=list)

    @property
    def in_process(self) -> bool:
        return not self.queued_jobs


class Backend:
    """The TUI's view of one Strongroom installation."""

    def __init__(self, appliance: Appliance, *, clock: Clock = time.time) -> None:
        self.appliance = appliance
        self.clock = clock
        self.fleet = FleetService(appliance, clock=clock)
        self.points = PointsService(appliance)

    # --- reads -----------------------------------------------------------------------------------------------
    def fleet_status(self) -> list[OrgHealth]:
        return self.fleet.status()

    def organisation(self, org_id: str) -> OrgDetail:
        return self.fleet.organisation(org_id)

    def set_integrations(self, org_id: str, integrations: Sequence[dict[str, Any]]) -> Organisation:
        return self.fleet.set_integrations(org_id, integrations)

    def jobs(self, org_id: str | None = None) -> list[JobInfo]:
        return self.fleet.jobs(org_id)

    def acknowledge_finding(self, finding_id: int) -> None:
        self.fleet.acknowledge_finding(finding_id, by="tui")

    # --- points ----------------------------------------------------------------------------------------------
    def show(
        self,
        org_id: str,
        snapshot_id: str,
        view: str,
        filters: Filters | None = None,
        *,
        progress: StepCallback | None = None,
    ) -> Table:
        """One view of a point (opening it into the query index first if it is not cached)."""
        return self.points.show(org_id, snapshot_id, view, filters, progress=progress)

    def record(self, org_id: str, snapshot_id: str, record_id: str, endpoint: str | None = None) -> dict[str, Any]:
        return self.points.record(org_id, snapshot_id, record_id, endpoint=endpoint)

    def save_attachment(
        self, org_id: str, snapshot_id: str, record_id: str, name: str, out: Path, endpoint: str | None = None
    ) -> Path:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.points.extract_attachment(org_id, snapshot_id, record_id, name, out, endpoint=endpoint)

    def diff(
        self,
        org_id: str,
        before: str,
        after: str,
        *,
        types: list[str] | None = None,
        progress: StepCallback | None = None,
    ) -> PointDiff:
        return self.points.diff(org_id, before, after, types=types, progress=progress)

    def export(
        self,
        org_id: str,
        snapshot_id: str,
        out: Path,
        *,
        view: str | None = None,
        filters: Filters | None = None,
        progress: StepCallback | None = None,
    ) -> dict[str, Any]:
        """The current view as one CSV, or (view None) the whole point as a CSV per table, under `out`.

        Runs in this process on the caller's worker thread: no `export` job kind is registered with the
        daemon's runner yet, so there is nothing a daemon could pick up.
        """
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.points.export(org_id, snapshot_id, out, view=view, filters=filters, progress=progress)

    def export_dir(self, org_id: str, snapshot_id: str) -> Path:
        """Where the TUI writes what a person exports or saves: their home, where `scp` finds it."""
        return Path.home() / "strongroom-exports" / org_id / snapshot_id[:8]

    # --- connect ---------------------------------------------------------------------------------------------
    def begin_connect(self, app_name: str | None = None) -> ConnectFlow:
        return ConnectFlow.begin(self.appliance, app_name)

    # --- long work -------------------------------------------------------------------------------------------
    def run_jobs(
        self,
        kind: str,
        org_ids: Sequence[str],
        params: dict[str, Any] | None = None,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Dispatch:
        """Queue jobs for a running daemon, or run them here one after the other if there is none."""
        if self.fleet.daemon_running():
            return Dispatch(queued_jobs=self.fleet.enqueue(kind, org_ids, params))
        dispatch = Dispatch()
        for org_id in org_ids:
            if cancel is not None and cancel.is_set():
                break
            dispatch.finished.append(self.fleet.run_here(kind, org_id, params, on_progress=progress, cancel=cancel))
        return dispatch

    def backup_now(
        self, org_ids: Sequence[str], *, full: bool = False, progress: ProgressCallback | None = None
    ) -> Dispatch:
        return self.run_jobs("backup", org_ids, {"full": full} if full else {}, progress=progress)

    # --- restore wizard ----------------------------------------------------------------------------------------
    def restore_for(self, org_id: str, snapshot_id: str) -> Any | None:
        """The latest restore of this point that was not cancelled (the wizard resumes it), or None."""
        found = [
            restore
            for restore in restore_usecases.restores(self.appliance, org_id)
            if restore.snapshot_id == snapshot_id and restore.status != "cancelled"
        ]
        return max(found, key=lambda restore: restore.created_at) if found else None

    def plan_restore(self, org_id: str, snapshot_id: str, target_id: str) -> dict[str, Any]:
        return restore_usecases.plan_restore(self.appliance, org_id, snapshot_id, target_id).as_dict()

    def start_restore(self, org_id: str, snapshot_id: str, target_id: str) -> Any:
        """Record the restore (refused on a blocker) and enqueue its `restore` job; returns the restore.

        With no daemon running, the job then runs here (call this on a worker thread): the wizard polls it."""
        restore = restore_usecases.start_restore(self.appliance, org_id, snapshot_id, target_id)
        job = restore_usecases.enqueue_restore(self.appliance, restore.restore_id)
        self._run_here_without_daemon(job.job_id)
        return restore

    def enqueue_restore(self, restore_id: str) -> int:
        job = restore_usecases.enqueue_restore(self.appliance, restore_id, now=True)
        self._run_here_without_daemon(job.job_id)
        return job.job_id

    def _run_here_without_daemon(self, job_id: int) -> None:
        if not self.fleet.daemon_running():
            self.fleet.run_queued_here(job_id)

    def restore_status(self, restore_id: str) -> dict[str, Any]:
        return restore_usecases.status(self.appliance, restore_id)

    def restore_checklist(self, restore_id: str) -> list[Any]:
        return restore_usecases.checklist(self.appliance, restore_id)

    def tick_restore_item(self, restore_id: str, number: int, *, ticked: bool) -> Any:
        return restore_usecases.tick(self.appliance, restore_id, number, ticked=ticked)

    def verify_restore(self, restore_id: str) -> dict[str, Any]:
        return restore_usecases.verify_restore(self.appliance, restore_id).as_dict()

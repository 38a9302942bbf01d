"""Backup points as use cases: what the CLI and the TUI call to open, query, compare and export points and to
read damage findings.

`PointsService` takes an `Appliance` (the composition root) and resolves what a person types: an
organisation by id, id prefix or name, and a point by snapshot id prefix, `latest` or `latest~N` (the Nth
before the latest, as git counts). Long operations take a progress callback `(phase, done, total)`.

It holds no state of its own beyond the appliance, and it never prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from appliance.detect import runner
from appliance.detect.rules import DetectConfig
from appliance.errors import NotFound, UsageError
from appliance.models import Organisation
from appliance.points import diff as diff_module
from appliance.points import export as export_module
from appliance.points import queries
from appliance.points.index import PointIndex, ProgressCallback, is_cached, open_point
from appliance.points.xero_import import export_xero_import
from appliance.service import Appliance
from appliance.store.findings import StoredFinding
from appliance.store.points import BackupPoint

_LATEST_RE = re.compile(r"^latest(?:~(\d+))?$")


class PointsService:
    def __init__(
        self,
        appliance: Appliance,
        *,
        cache_max_bytes: int | None = None,
        detect: DetectConfig | None = None,
    ) -> None:
        self.appliance = appliance
        self.cache_max_bytes = (
            cache_max_bytes if cache_max_bytes is not None else appliance.settings.points_cache_max_bytes
        )
        self.detect_config = detect or DetectConfig()

    @property
    def cache_dir(self) -> Path:
        return self.appliance.settings.effective_cache_dir

    # -- resolving ----------------------------------------------------------------------------------------------
    def resolve(self, org_key: str, point: str) -> tuple[Organisation, BackupPoint]:
        organisation = self.appliance.organisation(org_key)
        points = self.appliance.points(organisation.org_id)
        if not points:
            raise NotFound(f"{organisation.name} has no backup points yet", hint="run `strongroom backup` first")
        match = _LATEST_RE.match(point)
        if match:
            back = int(match.group(1) or 0)
            if back >= len(points):
                raise NotFound(f"{organisation.name} has only {len(points)} backup point(s)")
            return organisation, points[-1 - back]
        return organisation, self.appliance.state.points.get(organisation.org_id, point)

    def is_cached(self, org_key: str, point: str) -> bool:
        organisation, backup_point = self.resolve(org_key, point)
        return is_cached(self.cache_dir, organisation.org_id, backup_point.snapshot_id)

    def open(self, org_key: str, point: str, *, progress: ProgressCallback | None = None) -> PointIndex:
        organisation, backup_point = self.resolve(org_key, point)
        others = sorted(
            (p for p in self.appliance.points(organisation.org_id) if p.snapshot_id != backup_point.snapshot_id),
            key=lambda p: abs(p.taken_at - backup_point.taken_at),
        )
        return open_point(
            self.appliance.repository(organisation.org_id),
            organisation.org_id,
            backup_point.snapshot_id,
            self.cache_dir,
            max_bytes=self.cache_max_bytes,
            progress=progress,
            neighbours=[p.snapshot_id for p in others],
        )

    # -- queries ------------------------------------------------------------------------------------------------
    def show(
        self,
        org_key: str,
        point: str,
        view: str = "summary",
        filters: queries.Filters | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> queries.Table:
        with self.open(org_key, point, progress=progress) as index:
            return queries.run_view(index, view, filters)

    def record(self, org_key: str, point: str, record_id: str, *, endpoint: str | None = None) -> dict[str, Any]:
        with self.open(org_key, point) as index:
            return queries.record(index, record_id, endpoint)

    def extract_attachment(
        self, org_key: str, point: str, record_id: str, name: str, out: Path, *, endpoint: str | None = None
    ) -> Path:
        organisation, _ = self.resolve(org_key, point)
        with self.open(org_key, point) as index:
            repository = self.appliance.repository(organisation.org_id)
            return queries.extract_attachment(index, repository, record_id, name, out, endpoint=endpoint)

    def diff(
        self,
        org_key: str,
        point_a: str,
        point_b: str,
        *,
        types: list[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> diff_module.PointDiff:
        with (
            self.open(org_key, point_a, progress=progress) as before,
            self.open(org_key, point_b, progress=progress) as after,
        ):
            return diff_module.diff_points(before, after, types=types)

    def export(
        self,
        org_key: str,
        point: str,
        out: Path,
        *,
        view: str | None = None,
        filters: queries.Filters | None = None,
        types: list[str] | None = None,
        progress: ProgressCallback | None = None,
        format: str = "csv",
        age_recipient: str | None = None,
    ) -> dict[str, Any]:
        """The whole point (or `types`) as CSVs in the directory `out`; with `view`, that one query result as
        a CSV (`out` a file, or a directory to write `<view>.csv` in). With `age_recipient` the whole-point
        export is one age-encrypted tar archive at `out` instead of a directory."""
        if format not in export_module.FORMATS:
            raise UsageError(f"unknown export format {format!r}", hint=f"one of: {', '.join(export_module.FORMATS)}")
        if format == "xero-import" and (view is not None or age_recipient is not None or types):
            raise UsageError("--format xero-import writes the six import templates of a whole point, unencrypted")
        if age_recipient is not None and view is not None:
            raise UsageError("--age-recipient encrypts a whole-point export, not one view")
        with self.open(org_key, point, progress=progress) as index:
            if view is None:
                if format == "xero-import":
                    return export_xero_import(index, out, progress=progress)
                if age_recipient is not None:
                    return export_module.export_point_encrypted(
                        index, out, age_recipient, types=types, progress=progress
                    )
                return export_module.export_point(index, out, types=types, progress=progress)
            table = queries.run_view(index, view, filters)
            target = out / f"{view}.csv" if out.is_dir() or not out.suffix else out
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            return {"file": str(target), **export_module.export_table(table, target)}

    # -- damage findings ----------------------------------------------------------------------------------------
    def findings(self, org_key: str | None = None, *, include_acknowledged: bool = True) -> list[StoredFinding]:
        org_id = self.appliance.organisation(org_key).org_id if org_key else None
        return self.appliance.state.findings.list(org_id, include_acknowledged=include_acknowledged)

    def acknowledge(self, finding_id: int, *, by: str = "") -> StoredFinding:
        return self.appliance.state.findings.acknowledge(finding_id, by=by)

    def detect_after_backup(self, org_id: str, snapshot_id: str) -> list[StoredFinding]:
        """Run the damage rules on the step to this new point (the daemon calls this after each backup)."""
        return runner.after_backup(
            self.appliance.state,
            self.appliance.repository(org_id),
            self.cache_dir,
            org_id,
            snapshot_id,
            config=self.detect_config,
            max_cache_bytes=self.cache_max_bytes,
        )

    def detect_between(self, org_key: str, point_a: str, point_b: str) -> list[StoredFinding]:
        """Run the rules on any two points (oldest first), e.g. to re-check a step by hand."""
        _, before_point = self.resolve(org_key, point_a)
        _, after_point = self.resolve(org_key, point_b)
        if before_point.taken_at > after_point.taken_at:
            raise UsageError("give the older point first")
        with self.open(org_key, point_a) as before, self.open(org_key, point_b) as after:
            return runner.detect_step(
                self.appliance.state, before, after, taken_at=after_point.taken_at, config=self.detect_config
            )

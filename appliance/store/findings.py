"""Damage findings (the `findings` table) and the activity of each detection step (`detect_steps`).

A finding is what `appliance.detect` concluded about one step from a backup point to the next: its rule,
severity, summary, evidence (JSON: record ids, counts, sums), the suspected start and the last clean point.
Findings are stored once per (organisation, point, rule, fingerprint), so running detection again on the same
step does not duplicate them, and they stay until a person acknowledges them. `detect_steps` keeps each
step's activity counts: the organisation's own baseline for the burst rule.

It must not decide anything: the rules and the runner do. Alerts (notifications) are another module's job.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from typing import Any

from appliance.errors import NotFound
from appliance.store.db import Row, StateDB, from_json, to_json


@dataclass(frozen=True)
class StoredFinding:
    finding_id: int
    org_id: str
    rule: str
    fingerprint: str
    severity: str
    summary: str
    evidence: dict[str, Any]
    point_before: str | None
    point_after: str
    last_clean_point: str | None
    suspected_start: str | None
    created_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _finding(row: Row) -> StoredFinding:
    return StoredFinding(**{**row, "evidence": from_json(row["evidence"], {})})


class Findings:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def add(
        self,
        org_id: str,
        *,
        rule: str,
        severity: str,
        summary: str,
        evidence: dict[str, Any],
        point_after: str,
        point_before: str | None,
        last_clean_point: str | None,
        suspected_start: str | None,
        fingerprint: str = "",
        now: float | None = None,
    ) -> StoredFinding:
        """Record a finding (idempotent per organisation, point, rule and fingerprint: a re-run updates it)."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO findings(org_id, rule, fingerprint, severity, summary, evidence, point_before,"
                " point_after, last_clean_point, suspected_start, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(org_id, point_after, rule, fingerprint) DO UPDATE SET severity = excluded.severity,"
                " summary = excluded.summary, evidence = excluded.evidence, point_before = excluded.point_before,"
                " last_clean_point = excluded.last_clean_point, suspected_start = excluded.suspected_start",
                (
                    org_id,
                    rule,
                    fingerprint,
                    severity,
                    summary,
                    to_json(evidence),
                    point_before,
                    point_after,
                    last_clean_point,
                    suspected_start,
                    time.time() if now is None else now,
                ),
            )
            row = self.db.query_one(
                "SELECT * FROM findings WHERE org_id = ? AND point_after = ? AND rule = ? AND fingerprint = ?",
                (org_id, point_after, rule, fingerprint),
            )
        assert row is not None
        return _finding(row)

    def list(
        self, org_id: str | None = None, *, include_acknowledged: bool = True, limit: int = 500
    ) -> list[StoredFinding]:
        """Newest first."""
        sql = "SELECT * FROM findings WHERE 1=1"
        params: list[Any] = []
        if org_id is not None:
            sql += " AND org_id = ?"
            params.append(org_id)
        if not include_acknowledged:
            sql += " AND acknowledged_at IS NULL"
        sql += " ORDER BY created_at DESC, finding_id DESC LIMIT ?"
        params.append(limit)
        return [_finding(row) for row in self.db.query(sql, params)]

    def open_for(
        self, org_id: str, *, min_severity: tuple[str, ...] = ("warning", "critical")
    ) -> builtins.list[StoredFinding]:
        """Unacknowledged findings of an organisation at the given severities, oldest first."""
        marks = ",".join("?" * len(min_severity))
        rows = self.db.query(
            f"SELECT * FROM findings WHERE org_id = ? AND acknowledged_at IS NULL AND severity IN ({marks})"
            " ORDER BY created_at, finding_id",
            (org_id, *min_severity),
        )
        return [_finding(row) for row in rows]

    def acknowledge(self, finding_id: int, *, by: str = "", now: float | None = None) -> StoredFinding:
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE findings SET acknowledged_at = ?, acknowledged_by = ? WHERE finding_id = ?",
                (time.time() if now is None else now, by, finding_id),
            )
            if not changed:
                raise NotFound(f"no finding {finding_id}")
            row = self.db.query_one("SELECT * FROM findings WHERE finding_id = ?", (finding_id,))
        assert row is not None
        return _finding(row)

    # -- activity per step --------------------------------------------------------------------------------------
    def record_step(
        self, org_id: str, point_after: str, point_before: str | None, taken_at: float, counts: dict[str, int]
    ) -> None:
        self.db.execute(
            "INSERT INTO detect_steps(org_id, point_after, point_before, taken_at, counts) VALUES (?,?,?,?,?)"
            " ON CONFLICT(org_id, point_after) DO UPDATE SET point_before = excluded.point_before,"
            " taken_at = excluded.taken_at, counts = excluded.counts",
            (org_id, point_after, point_before, taken_at, to_json(counts)),
        )

    def baseline(self, org_id: str, *, before: float, limit: int = 30) -> builtins.list[dict[str, int]]:
        """Activity counts of the organisation's last `limit` steps taken before `before`, newest first."""
        rows = self.db.query(
            "SELECT counts FROM detect_steps WHERE org_id = ? AND taken_at < ? ORDER BY taken_at DESC LIMIT ?",
            (org_id, before, limit),
        )
        return [from_json(row["counts"], {}) for row in rows]

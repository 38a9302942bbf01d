"""Backup points (the `points` table): the restic snapshots this appliance took, with their summaries.

restic is the source of truth for which snapshots exist; this table is the fast index the CLI and TUI
list from (`strongroom points ORG`) without opening a repository, with what restic does not know: the run,
the mode, and the manifest's counts and hashes per endpoint. Rows are added only after restic reported
the snapshot (a point exists only for a complete, consistent mirror) and removed when `forget` drops it.

It must not call restic.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import NotFound, UsageError
from appliance.store.db import Row, StateDB, from_json, to_json

Mode = Literal["full", "incremental"]


@dataclass(frozen=True)
class BackupPoint:
    org_id: str
    snapshot_id: str
    run_id: str | None
    taken_at: float
    mode: Mode
    summary: dict[str, Any]
    """The manifest's summary: counts and hashes per endpoint, calls, bytes downloaded."""
    size_bytes: int | None

    @property
    def short_id(self) -> str:
        return self.snapshot_id[:8]


def _point(row: Row) -> BackupPoint:
    return BackupPoint(
        org_id=row["org_id"],
        snapshot_id=row["snapshot_id"],
        run_id=row["run_id"],
        taken_at=row["taken_at"],
        mode=row["mode"],
        summary=from_json(row["summary"], {}),
        size_bytes=row["size_bytes"],
    )


class Points:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def add(
        self,
        org_id: str,
        snapshot_id: str,
        *,
        taken_at: float,
        mode: Mode,
        run_id: str | None = None,
        summary: dict[str, Any] | None = None,
        size_bytes: int | None = None,
    ) -> BackupPoint:
        """Record a snapshot restic confirmed (idempotent: re-adding the same snapshot updates it)."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO points(org_id, snapshot_id, run_id, taken_at, mode, summary, size_bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(org_id, snapshot_id) DO UPDATE SET "
                "run_id = excluded.run_id, taken_at = excluded.taken_at, mode = excluded.mode, "
                "summary = excluded.summary, size_bytes = excluded.size_bytes",
                (org_id, snapshot_id, run_id, taken_at, mode, to_json(summary or {}), size_bytes),
            )
            return self.get(org_id, snapshot_id)

    def list(self, org_id: str) -> list[BackupPoint]:
        """Oldest first."""
        rows = self.db.query("SELECT * FROM points WHERE org_id = ? ORDER BY taken_at, snapshot_id", (org_id,))
        return [_point(row) for row in rows]

    def latest(self, org_id: str) -> BackupPoint | None:
        row = self.db.query_one(
            "SELECT * FROM points WHERE org_id = ? ORDER BY taken_at DESC, snapshot_id DESC LIMIT 1", (org_id,)
        )
        return _point(row) if row else None

    def get(self, org_id: str, snapshot_id: str) -> BackupPoint:
        """A point by full snapshot id or by an unambiguous prefix (restic's short ids are 8 characters)."""
        pattern = snapshot_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.db.query(
            "SELECT * FROM points WHERE org_id = ? AND snapshot_id LIKE ? ESCAPE '\\' ORDER BY snapshot_id LIMIT 2",
            (org_id, pattern),
        )
        exact = [row for row in rows if row["snapshot_id"] == snapshot_id]
        if exact:
            return _point(exact[0])
        if not rows:
            raise NotFound(f"no backup point {snapshot_id!r} for organisation {org_id}")
        if len(rows) > 1:
            raise UsageError(f"backup point id {snapshot_id!r} is ambiguous", hint="give more characters of it")
        return _point(rows[0])

    def remove(self, org_id: str, snapshot_ids: builtins.list[str]) -> int:
        """Forget rows after `restic forget` removed their snapshots; returns how many went."""
        removed = 0
        with self.db.transaction():
            for snapshot_id in snapshot_ids:
                removed += self.db.execute(
                    "DELETE FROM points WHERE org_id = ? AND snapshot_id = ?", (org_id, snapshot_id)
                )
        return removed

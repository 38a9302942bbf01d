"""Restores (the `restores`, `restore_elements`, `restore_ids` and `restore_checklist` tables).

A restore writes a backup point into another Xero organisation over days of Xero's limits, so everything it
must remember to resume without a duplicate lives here: the restore itself (status, plan, where it stopped),
the journal (one row per element to write: pending, sent with an unknown outcome, done with the new id,
refused with Xero's reason, or skipped with ours), the id map (source id -> target id per kind of reference,
for every cross-reference a later record makes), and the checklist ticks.

The journal rule the push relies on: an element is marked `sent` in one transaction BEFORE its request
leaves, and `done`/`refused` in one transaction with its id-map row AFTER the answer arrives. A `sent` row
found on resume therefore means "outcome unknown: look it up in the target before sending again".

It must not talk to Xero or decide what to write: `appliance.restore.push` does.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import NotFound, UsageError
from appliance.store.db import Row, StateDB, from_json, to_json

RestoreStatus = Literal["planned", "running", "paused", "cancelled", "finished", "failed"]
ElementStatus = Literal["pending", "sent", "done", "refused", "skipped"]


@dataclass(frozen=True)
class Restore:
    restore_id: str
    org_id: str
    snapshot_id: str
    target_tenant_id: str
    status: RestoreStatus
    plan: dict[str, Any]
    options: dict[str, Any]
    step: str | None
    calls: int
    error: str | None
    resume_after: float | None
    cancel_requested: bool
    verification: dict[str, Any] | None
    created_at: float
    updated_at: float
    finished_at: float | None


@dataclass(frozen=True)
class Element:
    step: str
    source_id: str
    seq: int
    status: ElementStatus
    target_id: str | None
    request_key: str | None
    sent_at: float | None
    attempts: int
    reason: str | None


def _restore(row: Row) -> Restore:
    return Restore(
        restore_id=row["restore_id"],
        org_id=row["org_id"],
        snapshot_id=row["snapshot_id"],
        target_tenant_id=row["target_tenant_id"],
        status=row["status"],
        plan=from_json(row["plan"], {}),
        options=from_json(row["options"], {}),
        step=row["step"],
        calls=row["calls"],
        error=row["error"],
        resume_after=row["resume_after"],
        cancel_requested=bool(row["cancel_requested"]),
        verification=from_json(row["verification"], None),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


def _element(row: Row) -> Element:
    return Element(
        step=row["step"],
        source_id=row["source_id"],
        seq=row["seq"],
        status=row["status"],
        target_id=row["target_id"],
        request_key=row["request_key"],
        sent_at=row["sent_at"],
        attempts=row["attempts"],
        reason=row["reason"],
    )


class Restores:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    # -- restores ---------------------------------------------------------------------------------------------
    def create(
        self,
        restore_id: str,
        org_id: str,
        snapshot_id: str,
        target_tenant_id: str,
        *,
        plan: dict[str, Any],
        options: dict[str, Any] | None = None,
    ) -> Restore:
        now = time.time()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO restores(restore_id, org_id, snapshot_id, target_tenant_id, status, plan, options,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 'planned', ?, ?, ?, ?)",
                (restore_id, org_id, snapshot_id, target_tenant_id, to_json(plan), to_json(options or {}), now, now),
            )
            return self.get(restore_id)

    def get(self, restore_id: str) -> Restore:
        """A restore by id or unambiguous prefix."""
        pattern = restore_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.db.query(
            "SELECT * FROM restores WHERE restore_id LIKE ? ESCAPE '\\' ORDER BY restore_id LIMIT 2", (pattern,)
        )
        exact = [row for row in rows if row["restore_id"] == restore_id]
        if exact:
            return _restore(exact[0])
        if not rows:
            raise NotFound(f"no restore {restore_id!r}", hint="see `strongroom restore status`")
        if len(rows) > 1:
            raise UsageError(f"restore id {restore_id!r} is ambiguous", hint="give more characters of it")
        return _restore(rows[0])

    def list(self, org_id: str | None = None) -> builtins.list[Restore]:
        """Newest first."""
        if org_id is None:
            rows = self.db.query("SELECT * FROM restores ORDER BY created_at DESC, restore_id")
        else:
            rows = self.db.query(
                "SELECT * FROM restores WHERE org_id = ? ORDER BY created_at DESC, restore_id", (org_id,)
            )
        return [_restore(row) for row in rows]

    def update(self, restore_id: str, **fields: Any) -> None:
        allowed = {
            "status",
            "step",
            "error",
            "resume_after",
            "cancel_requested",
            "finished_at",
            "plan",
            "verification",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not restore fields: {sorted(unknown)}")
        assignments = []
        values: list[Any] = []
        for name, value in fields.items():
            assignments.append(f"{name} = ?")
            if name in ("plan", "verification") and value is not None:
                value = to_json(value)
            elif name == "cancel_requested":
                value = int(bool(value))
            values.append(value)
        assignments.append("updated_at = ?")
        values.append(time.time())
        self.db.execute(f"UPDATE restores SET {', '.join(assignments)} WHERE restore_id = ?", (*values, restore_id))

    def add_calls(self, restore_id: str, calls: int) -> None:
        if calls:
            self.db.execute("UPDATE restores SET calls = calls + ? WHERE restore_id = ?", (calls, restore_id))

    # -- journal ----------------------------------------------------------------------------------------------
    def enqueue(self, restore_id: str, step: str, source_ids: Sequence[str]) -> int:
        """Add the step's elements in planned order (idempotent: known elements keep their state)."""
        now = time.time()
        added = 0
        with self.db.transaction():
            for seq, source_id in enumerate(source_ids):
                added += self.db.execute(
                    "INSERT OR IGNORE INTO restore_elements(restore_id, step, source_id, seq, status, updated_at)"
                    " VALUES (?, ?, ?, ?, 'pending', ?)",
                    (restore_id, step, source_id, seq, now),
                )
        return added

    def elements(
        self, restore_id: str, step: str | None = None, status: ElementStatus | None = None
    ) -> builtins.list[Element]:
        sql = "SELECT * FROM restore_elements WHERE restore_id = ?"
        params: list[Any] = [restore_id]
        if step is not None:
            sql += " AND step = ?"
            params.append(step)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return [_element(row) for row in self.db.query(sql + " ORDER BY step, seq", params)]

    def counts(self, restore_id: str) -> dict[str, dict[str, int]]:
        """`{step: {status: count}}`."""
        result: dict[str, dict[str, int]] = {}
        for row in self.db.query(
            "SELECT step, status, count(*) AS n FROM restore_elements WHERE restore_id = ? GROUP BY step, status",
            (restore_id,),
        ):
            result.setdefault(row["step"], {})[row["status"]] = row["n"]
        return result

    def mark_sent(self, restore_id: str, step: str, source_ids: Iterable[str], request_key: str) -> None:
        now = time.time()
        with self.db.transaction():
            for source_id in source_ids:
                self.db.execute(
                    "UPDATE restore_elements SET status = 'sent', request_key = ?, sent_at = ?,"
                    " attempts = attempts + 1, updated_at = ? WHERE restore_id = ? AND step = ? AND source_id = ?",
                    (request_key, now, now, restore_id, step, source_id),
                )

    def mark_done(
        self,
        restore_id: str,
        step: str,
        source_id: str,
        target_id: str | None,
        *,
        id_kind: str | None = None,
        note: str | None = None,
    ) -> None:
        """Record a written element and, with `id_kind`, its id-map row, in one transaction. `note` says how
        it was found when it was not from an answer (e.g. looked up after an interruption)."""
        with self.db.transaction():
            self.db.execute(
                "UPDATE restore_elements SET status = 'done', target_id = ?, reason = ?, updated_at = ?"
                " WHERE restore_id = ? AND step = ? AND source_id = ?",
                (target_id, note, time.time(), restore_id, step, source_id),
            )
            if id_kind is not None and target_id is not None:
                self.map_id(restore_id, id_kind, source_id, target_id)

    def mark(self, restore_id: str, step: str, source_id: str, status: ElementStatus, reason: str | None) -> None:
        self.db.execute(
            "UPDATE restore_elements SET status = ?, reason = ?, updated_at = ?"
            " WHERE restore_id = ? AND step = ? AND source_id = ?",
            (status, reason, time.time(), restore_id, step, source_id),
        )

    def retry_refused(self, restore_id: str, step: str | None = None) -> int:
        """Put refused elements back in the queue (after a person fixed the cause); returns how many."""
        sql = (
            "UPDATE restore_elements SET status = 'pending', updated_at = ? WHERE restore_id = ? AND status = 'refused'"
        )
        params: list[Any] = [time.time(), restore_id]
        if step is not None:
            sql += " AND step = ?"
            params.append(step)
        return self.db.execute(sql, params)

    # -- id map -----------------------------------------------------------------------------------------------
    def map_id(self, restore_id: str, kind: str, source_id: str, target_id: str) -> None:
        self.db.execute(
            "INSERT INTO restore_ids(restore_id, kind, source_id, target_id) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(restore_id, kind, source_id) DO UPDATE SET target_id = excluded.target_id",
            (restore_id, kind, source_id, target_id),
        )

    def id_map(self, restore_id: str) -> dict[str, dict[str, str]]:
        """`{kind: {source_id: target_id}}`."""
        result: dict[str, dict[str, str]] = {}
        for row in self.db.query(
            "SELECT kind, source_id, target_id FROM restore_ids WHERE restore_id = ?", (restore_id,)
        ):
            result.setdefault(row["kind"], {})[row["source_id"]] = row["target_id"]
        return result

    # -- checklist ----------------------------------------------------------------------------------------------
    def ticks(self, restore_id: str) -> dict[str, float]:
        rows = self.db.query(
            "SELECT item, ticked_at FROM restore_checklist WHERE restore_id = ? AND ticked_at IS NOT NULL",
            (restore_id,),
        )
        return {row["item"]: row["ticked_at"] for row in rows}

    def tick(self, restore_id: str, item: str, *, ticked: bool = True, note: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO restore_checklist(restore_id, item, ticked_at, note) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(restore_id, item) DO UPDATE SET ticked_at = excluded.ticked_at,"
            " note = coalesce(excluded.note, restore_checklist.note)",
            (restore_id, item, time.time() if ticked else None, note),
        )

"""Watermarks (the `watermarks` table): how far each organisation's incremental reads have got, per endpoint.

Per organisation and endpoint: the largest `UpdatedDateUTC` seen (epoch ms, as Xero's `/Date(ms)/` gives it;
incremental reads send `If-Modified-Since` a little before it), when the last full sweep ran (the sweep that
catches hard deletions), and the Journals offset (Journals page by `offset`, not by date:
https://developer.xero.com/documentation/api/accounting/journals).

Watermarks only move forward, and they should be written in the same transaction that records the backup
point (`with state.transaction(): points.add(...); watermarks.save_many(...)`), so a run that dies before
its point exists never advances them.

It must not decide what to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance.store.db import Row, StateDB


@dataclass(frozen=True)
class Watermark:
    endpoint: str
    updated_ms: int | None = None
    """Largest `UpdatedDateUTC` seen, epoch milliseconds."""
    full_sweep_at: float | None = None
    """UNIX time of the last complete (non-incremental) read of this endpoint."""
    journal_offset: int | None = None
    """Largest `JournalNumber` read (the next `offset`), for the Journals endpoint."""
    updated_at: float | None = None


def _watermark(row: Row) -> Watermark:
    return Watermark(
        endpoint=row["endpoint"],
        updated_ms=row["updated_ms"],
        full_sweep_at=row["full_sweep_at"],
        journal_offset=row["journal_offset"],
        updated_at=row["updated_at"],
    )


class Watermarks:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def get(self, org_id: str, endpoint: str) -> Watermark | None:
        row = self.db.query_one("SELECT * FROM watermarks WHERE org_id = ? AND endpoint = ?", (org_id, endpoint))
        return _watermark(row) if row else None

    def all(self, org_id: str) -> dict[str, Watermark]:
        rows = self.db.query("SELECT * FROM watermarks WHERE org_id = ? ORDER BY endpoint", (org_id,))
        return {row["endpoint"]: _watermark(row) for row in rows}

    def advance(
        self,
        org_id: str,
        endpoint: str,
        *,
        updated_ms: int | None = None,
        full_sweep_at: float | None = None,
        journal_offset: int | None = None,
    ) -> Watermark:
        """Move an endpoint's marks forward; a value behind the stored one (or None) leaves it unchanged."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO watermarks(org_id, endpoint, updated_ms, full_sweep_at, journal_offset, updated_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(org_id, endpoint) DO UPDATE SET "
                "updated_ms = CASE WHEN ?3 IS NULL THEN updated_ms ELSE max(COALESCE(updated_ms, ?3), ?3) END, "
                "full_sweep_at = CASE WHEN ?4 IS NULL THEN full_sweep_at "
                "                ELSE max(COALESCE(full_sweep_at, ?4), ?4) END, "
                "journal_offset = CASE WHEN ?5 IS NULL THEN journal_offset "
                "                 ELSE max(COALESCE(journal_offset, ?5), ?5) END, "
                "updated_at = ?6",
                (org_id, endpoint, updated_ms, full_sweep_at, journal_offset, self.db.now()),
            )
            mark = self.get(org_id, endpoint)
        assert mark is not None
        return mark

    def save_many(self, org_id: str, marks: Mapping[str, Watermark]) -> None:
        """Advance several endpoints in one transaction (keys are endpoint names)."""
        with self.db.transaction():
            for endpoint, mark in marks.items():
                self.advance(
                    org_id,
                    endpoint,
                    updated_ms=mark.updated_ms,
                    full_sweep_at=mark.full_sweep_at,
                    journal_offset=mark.journal_offset,
                )

    def reset(self, org_id: str, endpoint: str | None = None) -> int:
        """Forget marks (all of an organisation's, or one endpoint's) so the next run reads in full."""
        return self.db.execute(
            "DELETE FROM watermarks WHERE org_id = ?1 AND (?2 IS NULL OR endpoint = ?2)", (org_id, endpoint)
        )

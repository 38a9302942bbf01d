"""Backup planning: which endpoints a run reads, and how. Pure: no I/O, no clock of its own.

A run is either FULL (every endpoint read completely; the mirror starts empty, so records Xero
hard-deleted disappear) or INCREMENTAL (paged endpoints that honour `If-Modified-Since` read only
what changed since the watermark, minus an overlap because Xero's filter is second-granular and
some changes do not move `UpdatedDateUTC`; everything else is re-read completely, which is cheap
for the small unpaged endpoints and is the only way to see their hard deletions). A periodic full
sweep catches what incremental reads cannot (RR caveat in shared/research/xero-api.md §2.3).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from appliance.settings import XeroTier
from appliance.xero.catalogue import Endpoint, Kind, Paging, plan_reads


class Strategy(enum.StrEnum):
    REPLACE = "replace"
    """Read everything; the endpoint's records in the mirror are replaced by what was read."""
    UPSERT = "upsert"
    """Read what changed since `modified_since`; insert or update those records by id."""
    OFFSET = "offset"
    """Journals: read forward from the last journal number; journals are immutable."""


@dataclass(frozen=True)
class EndpointRead:
    endpoint: Endpoint
    strategy: Strategy
    modified_since: datetime | None = None
    offset: int | None = None


@dataclass(frozen=True)
class RunPlan:
    full: bool
    reason: str
    reads: tuple[EndpointRead, ...]
    reports: tuple[Endpoint, ...]
    skipped: Mapping[str, str]

    @property
    def mode(self) -> Literal["full", "incremental"]:
        return "full" if self.full else "incremental"


def plan_run(
    *,
    now: datetime,
    tier: XeroTier,
    granted_scopes: Iterable[str],
    has_mirror: bool,
    last_full_at: datetime | None,
    watermarks: Mapping[str, datetime],
    journal_offset: int | None = None,
    force_full: bool = False,
    full_sweep_days: int = 7,
    overlap_seconds: int = 300,
    capture_reports: bool = True,
) -> RunPlan:
    """Decide the shape of one backup run of one organisation."""
    if force_full:
        full, reason = True, "full run requested"
    elif not has_mirror or last_full_at is None:
        full, reason = True, "no earlier full backup"
    elif now - last_full_at >= timedelta(days=full_sweep_days):
        full, reason = True, f"periodic full sweep (every {full_sweep_days} days)"
    else:
        full, reason = False, "incremental since the last point"

    readable = plan_reads(tier, granted_scopes, include_reports=capture_reports)
    reads: list[EndpointRead] = []
    reports: list[Endpoint] = []
    overlap = timedelta(seconds=overlap_seconds)
    for endpoint in readable.readable:
        if endpoint.kind is Kind.REPORT:
            reports.append(endpoint)
            continue
        if endpoint.paging is Paging.OFFSET:
            offset = None if full else journal_offset
            reads.append(EndpointRead(endpoint, Strategy.OFFSET, offset=offset or 0))
            continue
        watermark = watermarks.get(endpoint.name)
        incremental_ok = (
            not full
            and endpoint.if_modified_since
            and endpoint.paging in (Paging.PAGE, Paging.PAGE_FIXED)
            and watermark is not None
        )
        if incremental_ok and watermark is not None:
            since = (watermark - overlap).replace(microsecond=0)
            reads.append(EndpointRead(endpoint, Strategy.UPSERT, modified_since=since))
        else:
            reads.append(EndpointRead(endpoint, Strategy.REPLACE))
    return RunPlan(full=full, reason=reason, reads=tuple(reads), reports=tuple(reports), skipped=readable.skipped)


def floor_calls(record_counts: Mapping[str, int], attachments: int, *, page_size: int = 1000) -> int:
    """The fewest API calls a full read of these records needs: one per page (at least one per endpoint)
    plus one per attachment. The benchmark measures real runs against this floor."""
    from appliance.xero.catalogue import ENDPOINTS

    calls = 0
    for name, count in record_counts.items():
        endpoint = ENDPOINTS.get(name)
        if endpoint is None:
            continue
        size = endpoint.page_size
        if size is None:
            calls += 1
        else:
            size = min(size, page_size) if endpoint.paging is Paging.PAGE else size
            calls += max(1, -(-count // size))
    return calls + attachments

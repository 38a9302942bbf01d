"""Plain data types that cross adapter boundaries (no I/O, no behaviour beyond small helpers).

Adapters (xero, vault, store) and use cases exchange these instead of each other's internals,
so that, for example, the state store can persist a `TokenSet` without importing the Xero client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TokenSet:
    """One OAuth token set for a connection (a consent of one user to one app)."""

    access_token: str
    refresh_token: str
    expires_at: float
    """Access-token expiry as a UNIX timestamp (seconds)."""
    scope: str = ""
    id_token: str | None = None
    previous_refresh_token: str | None = None
    """The token this one replaced; still valid for Xero's 30-minute grace window."""
    rotated_at: float | None = None
    """When the previous refresh token was used (start of its grace window)."""

    def __repr__(self) -> str:  # never print tokens, even in tracebacks
        return f"TokenSet(expires_at={self.expires_at}, scope={self.scope!r})"


@dataclass(frozen=True)
class Tenant:
    """A Xero organisation reachable through a connection (from `GET /connections`)."""

    tenant_id: str
    name: str
    connection_id: str
    tenant_type: str = "ORGANISATION"
    auth_event_id: str | None = None


class OrgStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_CONSENT = "needs_consent"
    DISCONNECTED = "disconnected"


@dataclass
class Organisation:
    """An organisation Strongroom backs up (one row in the state database)."""

    org_id: str
    """Strongroom's stable id for it (equal to the Xero tenant id)."""
    name: str
    app_name: str
    grant_id: str
    """The consent (token set) used to reach it."""
    status: OrgStatus = OrgStatus.ACTIVE
    region: str | None = None
    country: str | None = None
    base_currency: str | None = None
    integrations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """One restic snapshot as `restic snapshots --json` describes it."""

    id: str
    short_id: str
    time: str
    hostname: str
    paths: list[str]
    tags: list[str]
    parent: str | None = None
    original: str | None = None


@dataclass(frozen=True)
class BackupSummary:
    """restic's `summary` line for a finished backup."""

    snapshot_id: str
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    data_added: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    total_duration: float = 0.0

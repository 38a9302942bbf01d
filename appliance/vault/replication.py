"""Offsite replication by region: copy an organisation's points into a restic repository in its own region.

This module owns where an organisation's data may go (residency), how a replica is made and filled, and how a
point is found in a replica again (recovery):

- **Residency**: an organisation has one region (set by hand with `strongroom orgs set-region`, else claimed by
  its country in `[regions.X] countries`, else `default_region`). `replica()` refuses any other region before a
  repository object even exists, so no code path can copy an organisation's data elsewhere.
- **Replicas** live at `<region repository>/<tenant id>`, each with its own password (stored per organisation
  and region, like the primary's). They are initialised with `init --copy-chunker-params` from the primary, so
  copied data deduplicates against what is already there, then filled with `restic copy`, which skips
  snapshots it already copied (tracked by the `original` field; shared/research/restic.md §3.3, measured).
- **Credentials** for S3-compatible targets come from `SecretRef`s in the region's settings and reach restic
  only through the child's environment for that call (the runner), never argv. The primary is a local path, so
  the one set of `AWS_*` variables restic takes for both ends of a `copy` is the target's.
- **Recovery**: `find_copy` maps a primary snapshot id to its copy (by `original`), so a point can be restored
  from the replica when the primary is lost.

It must not touch the state database (callers pass passwords in and record lag) and must not start processes
itself (the runner does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ConfigError, UsageError
from appliance.models import Organisation, Snapshot
from appliance.settings import Region, Settings
from appliance.vault.repository import Repository
from appliance.vault.runner import Runner

log = logging.getLogger(__name__)


class ResidencyViolation(UsageError):
    """An organisation's data was about to go to a region other than its own."""


@dataclass(frozen=True)
class RegionTarget:
    """One region's offsite repository base and the backend credentials to reach it."""

    region: str
    base: str
    env: dict[str, str] = field(default_factory=dict, repr=False)
    append_only: bool = False

    def location_for(self, org_id: str) -> str:
        return f"{self.base.rstrip('/')}/{org_id}"


def region_target(settings: Settings, region: str) -> RegionTarget:
    """The configured target of `region`, with its secrets read (ConfigError if there is no such region)."""
    config: Region | None = settings.regions.get(region)
    if config is None:
        raise ConfigError(
            f"no region {region!r} is configured", hint=f"add a [regions.{region}] table to the settings file"
        )
    env: dict[str, str] = {}
    if config.access_key_id is not None:
        env["AWS_ACCESS_KEY_ID"] = config.access_key_id.read()
    if config.secret_access_key is not None:
        env["AWS_SECRET_ACCESS_KEY"] = config.secret_access_key.read()
    if config.s3_region:
        env["AWS_DEFAULT_REGION"] = config.s3_region
    return RegionTarget(region=region, base=config.repository, env=env, append_only=config.append_only)


def effective_region(organisation: Organisation, settings: Settings) -> str | None:
    """The organisation's region: set by hand, else claimed by its country, else the default (may be None)."""
    if organisation.region:
        return organisation.region
    country = (organisation.country or "").upper()
    if country:
        for name, region in settings.regions.items():
            if country in (code.upper() for code in region.countries):
                return name
    return settings.default_region


def check_residency(org_id: str, org_region: str | None, target_region: str) -> None:
    """Refuse to place an organisation's data anywhere but its own region."""
    if org_region is None:
        raise ResidencyViolation(
            f"organisation {org_id} has no region, so it is not replicated anywhere",
            hint="set one: `strongroom orgs set-region ORG REGION`",
        )
    if org_region != target_region:
        raise ResidencyViolation(
            f"organisation {org_id} belongs to region {org_region!r}; its data must not go to {target_region!r}"
        )


@dataclass
class ReplicationResult:
    org_id: str
    region: str
    created: bool
    """The replica was initialised by this run."""
    originals: set[str]
    """Primary snapshot ids the replica now holds a copy of."""
    snapshots: int
    seconds: float


class Replicator:
    """Makes and fills replicas for one installation."""

    def __init__(
        self,
        settings: Settings,
        password_for: Callable[[str, str], str],
        *,
        runner: Runner | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """`password_for(org_id, region)`: the replica's password (created and stored on first use)."""
        self.settings = settings
        self.password_for = password_for
        self.runner = runner or Runner(settings.restic_binary)
        self.cache_dir = cache_dir or settings.effective_cache_dir / "restic"

    def replica(self, org_id: str, org_region: str | None, region: str) -> Repository:
        """The organisation's repository in `region`; raises ResidencyViolation unless it is its own region."""
        check_residency(org_id, org_region, region)
        target = region_target(self.settings, region)
        return Repository(
            target.location_for(org_id),
            self.password_for(org_id, region),
            cache_dir=self.cache_dir,
            env=target.env,
            runner=self.runner,
        )

    def replicate(
        self,
        primary: Repository,
        org_id: str,
        org_region: str | None,
        *,
        host: str | None = None,
        region: str | None = None,
        cancel: threading.Event | None = None,
    ) -> ReplicationResult:
        """Copy the primary's snapshots (of `host`) into the organisation's region (default: its own)."""
        started = time.monotonic()
        target_region = region or org_region
        if target_region is None:
            check_residency(org_id, None, "")
        assert target_region is not None
        replica = self.replica(org_id, org_region, target_region)
        created = False
        if not replica.exists():
            replica.init(copy_chunker_params_from=primary)
            created = True
        primary.copy_to(replica, host=host, cancel=cancel)
        copies = replica.snapshots(host=host)
        originals = {snapshot.original for snapshot in copies if snapshot.original}
        log.info("replicated organisation %s to %s (%d snapshots there)", org_id, target_region, len(copies))
        return ReplicationResult(
            org_id=org_id,
            region=target_region,
            created=created,
            originals={str(original) for original in originals},
            snapshots=len(copies),
            seconds=round(time.monotonic() - started, 3),
        )


def find_copy(replica: Repository, primary_snapshot_id: str, *, host: str | None = None) -> Snapshot | None:
    """The replica's copy of a primary snapshot (matched on `original`, or the id for a re-seeded replica)."""
    for snapshot in replica.snapshots(host=host):
        if snapshot.original == primary_snapshot_id or snapshot.id == primary_snapshot_id:
            return snapshot
    return None

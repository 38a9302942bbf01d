"""Disaster recovery: the recovery kit, and rebuilding an installation from a region's offsite repositories.

A firm's server dies; its offsite repositories survive. This module owns the two halves of getting back:

- **The kit** (`strongroom keys export`): everything the offsite repositories alone cannot give back, as one
  age-encrypted JSON document: each organisation's registration (name, region, country, integrations register),
  its repository passwords per region, the Xero apps and consents (grants, with their token sets) the
  organisations were connected through. It is encrypted to a passphrase (age scrypt) or an age recipient, so
  it can sit in a password manager or a safe. Without it the repositories cannot be opened: each has its own
  random password.
- **Recovery** (`strongroom recover --region R --kit FILE`): on a new machine, for every organisation of the kit
  that lives in region R (and only those: residency), register it again, copy its points from the region's
  replica back into a new local primary repository (initialised with the replica's chunker parameters, so the
  next backups deduplicate against them), and record each point. Browsing, diff, export and restore then work
  on the recovered points; the next backup of an organisation is a full one (the mirror was not in the kit),
  and an organisation whose refresh token rotated after the kit was made needs `strongroom connect` again.

It must not print, prompt or parse arguments (the CLI does) and reaches restic and SQLite only through the
vault and store adapters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import pyrage

from appliance.backup.run import host_for
from appliance.errors import ConfigError, StrongroomError, UsageError
from appliance.files import write_whole
from appliance.models import Organisation, OrgStatus
from appliance.service import Appliance
from appliance.store.grants import GrantStatus
from appliance.vault.replication import Replicator, effective_region, region_target
from appliance.vault.repository import Repository
from appliance.xero.tokens import TokenSet

log = logging.getLogger(__name__)

KIT_SCHEMA = 1
LOCAL_REGION = "local"


class KitError(StrongroomError):
    """A recovery kit that cannot be read: wrong passphrase or key, damaged, or from a newer version."""


@dataclass(frozen=True)
class KitSecret:
    """How a kit is sealed or opened: a passphrase, or an age recipient (seal) / identity (open)."""

    passphrase: str | None = field(default=None, repr=False)
    recipient: str | None = None
    identity: str | None = field(default=None, repr=False)


def _seal(plaintext: bytes, secret: KitSecret) -> bytes:
    if secret.recipient:
        try:
            recipient = pyrage.x25519.Recipient.from_str(secret.recipient.strip())
        except Exception as error:  # pyrage raises its own RecipientError; the message is enough
            raise UsageError(f"not an age recipient: {secret.recipient!r}", hint="it starts with `age1`") from error
        return bytes(pyrage.encrypt(plaintext, [recipient]))
    if secret.passphrase:
        return bytes(pyrage.passphrase.encrypt(plaintext, secret.passphrase))
    raise UsageError("a recovery kit needs a passphrase or an age recipient")


def _open(ciphertext: bytes, secret: KitSecret) -> bytes:
    try:
        if secret.identity:
            identity = pyrage.x25519.Identity.from_str(secret.identity.strip())
            return bytes(pyrage.decrypt(ciphertext, [identity]))
        if secret.passphrase:
            return bytes(pyrage.passphrase.decrypt(ciphertext, secret.passphrase))
    except Exception as error:  # pyrage's DecryptError/IdentityError: never echo the secret
        raise KitError(
            "the recovery kit could not be decrypted", hint="check the passphrase or the age identity file"
        ) from error
    raise UsageError("opening a recovery kit needs its passphrase or an age identity")


# -- export -------------------------------------------------------------------------------------------------------


def build_kit(appliance: Appliance) -> dict[str, Any]:
    """The kit's plaintext document (secrets included: seal it before it touches a disk)."""
    state = appliance.state
    organisations = []
    grant_ids: set[str] = set()
    for org in state.orgs.list():
        passwords = {
            region: password
            for region in state.orgs.repository_regions(org.org_id)
            if (password := state.orgs.find_repository_password(org.org_id, region)) is not None
        }
        organisations.append(
            {
                "org_id": org.org_id,
                "name": org.name,
                "app_name": org.app_name,
                "grant_id": org.grant_id,
                "status": OrgStatus(org.status).value,
                "region": effective_region(org, appliance.settings),
                "pinned_region": org.region,
                "country": org.country,
                "base_currency": org.base_currency,
                "integrations": org.integrations,
                "repository_passwords": passwords,
            }
        )
        grant_ids.add(org.grant_id)
    grants = []
    for grant in state.grants.list():
        if grant.grant_id not in grant_ids:
            continue
        tokens = state.grants.load(grant.grant_id)
        grants.append(
            {
                "grant_id": grant.grant_id,
                "app_name": grant.app_name,
                "user_id": grant.user_id,
                "user_name": grant.user_name,
                "scopes": grant.scopes,
                "status": grant.status.value,
                "tokens": asdict(tokens) if tokens is not None else None,
            }
        )
    apps = [{"name": app.name, "client_id": app.client_id, "tier": app.tier} for app in state.apps.list()]
    return {
        "schema_version": KIT_SCHEMA,
        "kind": "strongroom-recovery-kit",
        "created_at": time.time(),
        "apps": apps,
        "grants": grants,
        "organisations": organisations,
    }


@dataclass(frozen=True)
class KitSummary:
    path: str
    organisations: int
    regions: dict[str, int]
    """Organisations per region (None: no region, so no offsite copy to recover from)."""
    sealed_to: Literal["passphrase", "age-recipient"]


def export_kit(appliance: Appliance, out: Path, secret: KitSecret) -> KitSummary:
    """Write the sealed kit to `out` (mode 0600, written whole then renamed: never a half kit)."""
    document = build_kit(appliance)
    sealed = _seal(orjson.dumps(document), secret)
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_whole(out, sealed, mode=0o600)
    regions: dict[str, int] = {}
    for org in document["organisations"]:
        key = org["region"] or "none"
        regions[key] = regions.get(key, 0) + 1
    return KitSummary(
        path=str(out),
        organisations=len(document["organisations"]),
        regions=regions,
        sealed_to="age-recipient" if secret.recipient else "passphrase",
    )


def read_kit(path: Path, secret: KitSecret) -> dict[str, Any]:
    try:
        ciphertext = path.expanduser().read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the recovery kit {path}: {error.strerror}") from error
    try:
        document = orjson.loads(_open(ciphertext, secret))
    except orjson.JSONDecodeError as error:
        raise KitError(f"{path} is not a Strongroom recovery kit") from error
    if not isinstance(document, dict) or document.get("kind") != "strongroom-recovery-kit":
        raise KitError(f"{path} is not a Strongroom recovery kit")
    if int(document.get("schema_version", 0)) > KIT_SCHEMA:
        raise KitError(
            f"{path} was written by a newer Strongroom (kit schema {document['schema_version']})",
            hint="recover with that version or newer",
        )
    return document


# -- recover ------------------------------------------------------------------------------------------------------


@dataclass
class RecoveredOrganisation:
    org_id: str
    name: str
    points: int
    status: str
    error: str | None = None


@dataclass
class RecoveryResult:
    region: str
    organisations: list[RecoveredOrganisation]
    skipped_other_regions: int
    seconds: float

    @property
    def failed(self) -> list[RecoveredOrganisation]:
        return [org for org in self.organisations if org.error]


RecoveryProgress = Callable[[str, int, int], None]
"""(organisation name, organisations done, organisations in the region)."""


def recover(
    appliance: Appliance,
    kit: dict[str, Any],
    region: str,
    *,
    progress: RecoveryProgress | None = None,
) -> RecoveryResult:
    """Rebuild this installation's state and primary repositories for the kit's organisations in `region`."""
    started = time.monotonic()
    region_target(appliance.settings, region)  # ConfigError now, before anything is written
    wanted = [org for org in kit.get("organisations", []) if _kit_region(org, appliance) == region]
    skipped = len(kit.get("organisations", [])) - len(wanted)
    if not wanted:
        raise UsageError(
            f"the kit holds no organisation whose data lives in region {region!r}",
            hint="`strongroom recover` takes one region at a time; check the region names in the settings",
        )
    _restore_consents(appliance, kit, {org["grant_id"] for org in wanted})
    results: list[RecoveredOrganisation] = []
    for done, entry in enumerate(wanted):
        if progress:
            progress(entry["name"], done, len(wanted))
        results.append(_recover_organisation(appliance, entry, region))
    if progress:
        progress("", len(wanted), len(wanted))
    return RecoveryResult(
        region=region, organisations=results, skipped_other_regions=skipped, seconds=time.monotonic() - started
    )


def _kit_region(entry: dict[str, Any], appliance: Appliance) -> str | None:
    """The kit's record of where the organisation's data lives; an unpinned one is placed by this machine's
    settings (its country or the default region), exactly as replication would place it."""
    if entry.get("pinned_region"):
        return str(entry["pinned_region"])
    probe = Organisation(
        org_id=entry["org_id"],
        name=entry["name"],
        app_name=entry["app_name"],
        grant_id=entry["grant_id"],
        country=entry.get("country"),
    )
    return effective_region(probe, appliance.settings) or entry.get("region")


def _restore_consents(appliance: Appliance, kit: dict[str, Any], grant_ids: set[str]) -> None:
    state = appliance.state
    for app in kit.get("apps", []):
        if state.apps.find(app["name"]) is None:
            state.apps.record(app["name"], app["client_id"], tier=app.get("tier"))
    for grant in kit.get("grants", []):
        if grant["grant_id"] not in grant_ids or state.grants.find(grant["grant_id"]) is not None:
            continue
        tokens = TokenSet(**grant["tokens"]) if grant.get("tokens") else None
        state.grants.create(
            grant["app_name"],
            tokens,
            grant_id=grant["grant_id"],
            user_id=grant.get("user_id"),
            user_name=grant.get("user_name"),
            scopes=grant.get("scopes"),
        )
        if grant.get("status") and grant["status"] != GrantStatus.ACTIVE.value:
            state.grants.set_status(grant["grant_id"], GrantStatus(grant["status"]))


def _recover_organisation(appliance: Appliance, entry: dict[str, Any], region: str) -> RecoveredOrganisation:
    state = appliance.state
    org_id = entry["org_id"]
    passwords: dict[str, str] = entry.get("repository_passwords", {})
    if region not in passwords:
        return RecoveredOrganisation(
            org_id, entry["name"], 0, "skipped", error=f"the kit has no password for its {region} replica"
        )
    existing = state.orgs.find(org_id)
    organisation = Organisation(
        org_id=org_id,
        name=entry["name"],
        app_name=entry["app_name"],
        grant_id=entry["grant_id"],
        status=OrgStatus(entry.get("status") or OrgStatus.ACTIVE.value),
        region=entry.get("pinned_region"),
        country=entry.get("country"),
        base_currency=entry.get("base_currency"),
        integrations=list(entry.get("integrations") or []),
    )
    if existing is None:
        state.orgs.save(organisation)
    for name, password in passwords.items():
        state.orgs.set_repository_password(org_id, name, password)
    try:
        replicator = Replicator(appliance.settings, state.orgs.repository_password)
        replica = replicator.replica(org_id, region, region)
        if not replica.exists():
            raise ConfigError(f"no replica of {entry['name']} in region {region} at {replica.location}")
        primary = appliance.repository(org_id)
        if not primary.exists():
            primary.init(copy_chunker_params_from=replica)
        replica.copy_to(primary, host=host_for(org_id))
        recorded = _record_points(appliance, primary, org_id)
    except StrongroomError as error:
        log.error("recovering %s failed: %s", entry["name"], error)
        return RecoveredOrganisation(org_id, entry["name"], 0, "failed", error=str(error))
    log.info("recovered %s: %d point(s) from region %s", entry["name"], recorded, region)
    return RecoveredOrganisation(org_id, entry["name"], recorded, "recovered")


def _record_points(appliance: Appliance, primary: Repository, org_id: str) -> int:
    """Record every snapshot of the recovered primary as a point (tags carry the run and the mode)."""
    known = {point.snapshot_id for point in appliance.points(org_id)}
    snapshots = primary.snapshots(host=host_for(org_id))
    for snapshot in snapshots:
        if snapshot.id in known:
            continue
        tags = dict(tag.split(":", 1) for tag in snapshot.tags if ":" in tag)
        mode: Literal["full", "incremental"] = "full" if tags.get("mode") == "full" else "incremental"
        taken = datetime.fromisoformat(snapshot.time.replace("Z", "+00:00")).timestamp()
        appliance.state.points.add(
            org_id,
            snapshot.id,
            taken_at=taken,
            mode=mode,
            # The run's row stayed on the lost machine: its id is kept in the summary, not as a reference.
            summary={"recovered_from": snapshot.original or snapshot.id, "run": tags.get("run")},
        )
    return len(snapshots)

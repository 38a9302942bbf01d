"""Organisations (the `organisations` table) and their repository passwords (`repo_keys`).

An organisation row is created when a consent's `GET /connections` lists its tenant, and keeps what a
person or the backups learned about it: status, region, country, base currency, the integrations
register (issue 7 turns it into restore checklist steps) and per-organisation settings overrides.

Repository passwords are generated here, once per organisation and region, and stored age-encrypted;
`repository_password` creates and durably commits a password BEFORE anyone initialises a repository
with it, so a crash can never leave a repository whose password was not saved. Passwords are never
deleted by this module.

It must not talk to Xero or restic.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from appliance import logs
from appliance.errors import NotFound, StoreError
from appliance.models import Organisation, OrgStatus
from appliance.secrets import Keyring, new_repository_password
from appliance.store.db import Row, StateDB, from_json, to_json

LOCAL_REGION = "local"
"""The region name of an organisation's primary repository on this appliance."""

_UNSET: Any = object()


def _organisation(row: Row) -> Organisation:
    return Organisation(
        org_id=row["org_id"],
        name=row["name"],
        app_name=row["app_name"],
        grant_id=row["grant_id"],
        status=OrgStatus(row["status"]),
        region=row["region"],
        country=row["country"],
        base_currency=row["base_currency"],
        integrations=from_json(row["integrations"], []),
    )


class Organisations:
    def __init__(self, db: StateDB, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring

    # --- rows ------------------------------------------------------------------------------

    def register(
        self, org_id: str, name: str, *, app_name: str, grant_id: str, connection_id: str | None = None
    ) -> Organisation:
        """Record a tenant a consent reaches (after `GET /connections`).

        A known organisation keeps its region, integrations and overrides; it moves to the new grant and
        becomes active again (reconnecting is how a `needs_consent` or `disconnected` one comes back).
        """
        now = self.db.now()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO organisations(org_id, name, app_name, grant_id, connection_id, status, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?) "
                "ON CONFLICT(org_id) DO UPDATE SET name = excluded.name, app_name = excluded.app_name, "
                "grant_id = excluded.grant_id, connection_id = excluded.connection_id, status = 'active', "
                "updated_at = excluded.updated_at",
                (org_id, name, app_name, grant_id, connection_id, now, now),
            )
            return self.get(org_id)

    def save(self, organisation: Organisation) -> None:
        """Write every field of the model (insert or replace the row's model fields)."""
        now = self.db.now()
        org = organisation
        self.db.execute(
            "INSERT INTO organisations(org_id, name, app_name, grant_id, status, region, country, base_currency, "
            "integrations, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(org_id) DO UPDATE SET name = excluded.name, app_name = excluded.app_name, "
            "grant_id = excluded.grant_id, status = excluded.status, region = excluded.region, "
            "country = excluded.country, base_currency = excluded.base_currency, "
            "integrations = excluded.integrations, updated_at = excluded.updated_at",
            (
                org.org_id,
                org.name,
                org.app_name,
                org.grant_id,
                OrgStatus(org.status).value,
                org.region,
                org.country,
                org.base_currency,
                to_json(org.integrations),
                now,
                now,
            ),
        )

    def find(self, org_id: str) -> Organisation | None:
        row = self.db.query_one("SELECT * FROM organisations WHERE org_id = ?", (org_id,))
        return _organisation(row) if row else None

    def get(self, org_id: str) -> Organisation:
        organisation = self.find(org_id)
        if organisation is None:
            raise NotFound(f"no organisation {org_id!r}", hint="`strongroom orgs` lists the connected ones")
        return organisation

    def list(self, *, status: OrgStatus | None = None, grant_id: str | None = None) -> list[Organisation]:
        rows = self.db.query(
            "SELECT * FROM organisations WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR grant_id = ?2) "
            "ORDER BY name COLLATE NOCASE, org_id",
            (status.value if status else None, grant_id),
        )
        return [_organisation(row) for row in rows]

    def set_status(self, org_id: str, status: OrgStatus) -> None:
        self._update(org_id, "status = ?", (OrgStatus(status).value,))

    def mark_disconnected(self, org_id: str) -> bool:
        """Xero no longer lists the organisation among its grant's connections: an active organisation becomes
        `disconnected` (one that needs consent keeps needing it: its grant is the problem). Returns whether it
        changed, so the caller alerts once."""
        changed = self.db.execute(
            "UPDATE organisations SET status = ?, updated_at = ? WHERE org_id = ? AND status = ?",
            (OrgStatus.DISCONNECTED.value, self.db.now(), org_id, OrgStatus.ACTIVE.value),
        )
        return bool(changed)

    def set_status_for_grant(
        self, grant_id: str, status: OrgStatus, *, only_from: Iterable[OrgStatus] = (OrgStatus.ACTIVE,)
    ) -> builtins.list[str]:
        """Move every organisation reached through a grant (e.g. to `needs_consent` on `invalid_grant`).

        Only organisations currently in one of `only_from` change, so a disconnected one stays
        disconnected. Returns the ids that changed.
        """
        sources = [OrgStatus(s).value for s in only_from]
        placeholders = ", ".join("?" for _ in sources)
        with self.db.transaction():
            rows = self.db.query(
                f"SELECT org_id FROM organisations WHERE grant_id = ? AND status IN ({placeholders}) ORDER BY org_id",
                (grant_id, *sources),
            )
            ids = [row["org_id"] for row in rows]
            self.db.execute(
                "UPDATE organisations SET status = ?, updated_at = ? "
                f"WHERE grant_id = ? AND status IN ({placeholders})",
                (OrgStatus(status).value, self.db.now(), grant_id, *sources),
            )
            return ids

    def update_details(
        self,
        org_id: str,
        *,
        name: str = _UNSET,
        region: str | None = _UNSET,
        country: str | None = _UNSET,
        base_currency: str | None = _UNSET,
    ) -> Organisation:
        """Change the given fields only (pass None to clear one)."""
        fields = {"name": name, "region": region, "country": country, "base_currency": base_currency}
        given = {key: value for key, value in fields.items() if value is not _UNSET}
        with self.db.transaction():
            if given:
                self._update(org_id, ", ".join(f"{key} = ?" for key in given), tuple(given.values()))
            return self.get(org_id)

    def integrations(self, org_id: str) -> builtins.list[dict[str, Any]]:
        return self.get(org_id).integrations

    def set_integrations(self, org_id: str, integrations: builtins.list[dict[str, Any]]) -> None:
        self._update(org_id, "integrations = ?", (to_json(integrations),))

    def settings_overrides(self, org_id: str) -> dict[str, Any]:
        """Per-organisation settings that override the global ones (schedule, retention, region...)."""
        text = self.db.scalar("SELECT settings FROM organisations WHERE org_id = ?", (org_id,))
        if text is None:
            raise NotFound(f"no organisation {org_id!r}")
        value = from_json(text, {})
        if not isinstance(value, dict):
            raise StoreError(f"the settings overrides of organisation {org_id!r} are damaged")
        return value

    def set_settings_overrides(self, org_id: str, overrides: dict[str, Any]) -> None:
        self._update(org_id, "settings = ?", (to_json(overrides),))

    # --- repository passwords --------------------------------------------------------------

    def repository_password(self, org_id: str, region: str = LOCAL_REGION) -> str:
        """The organisation's repository password for `region`, generated and stored on first use."""
        with self.db.transaction():
            blob = self.db.scalar(
                "SELECT password_blob FROM repo_keys WHERE org_id = ? AND region = ?", (org_id, region)
            )
            if blob is not None:
                return self.keyring.decrypt_text(bytes(blob))
            if self.db.scalar("SELECT 1 FROM organisations WHERE org_id = ?", (org_id,)) is None:
                raise NotFound(f"no organisation {org_id!r}")
            password = new_repository_password()
            logs.register_secret(password)
            self.db.execute(
                "INSERT INTO repo_keys(org_id, region, password_blob, created_at) VALUES (?, ?, ?, ?)",
                (org_id, region, self.keyring.encrypt_text(password), self.db.now()),
            )
        return password

    def find_repository_password(self, org_id: str, region: str = LOCAL_REGION) -> str | None:
        blob = self.db.scalar("SELECT password_blob FROM repo_keys WHERE org_id = ? AND region = ?", (org_id, region))
        return self.keyring.decrypt_text(bytes(blob)) if blob is not None else None

    def set_repository_password(self, org_id: str, region: str, password: str) -> None:
        """Store a known password (recovery from a kit); refuses to replace a different stored one."""
        with self.db.transaction():
            existing = self.find_repository_password(org_id, region)
            if existing is not None and existing != password:
                raise StoreError(
                    f"organisation {org_id!r} already has a different repository password for region {region!r}"
                )
            if existing is None:
                self.db.execute(
                    "INSERT INTO repo_keys(org_id, region, password_blob, created_at) VALUES (?, ?, ?, ?)",
                    (org_id, region, self.keyring.encrypt_text(password), self.db.now()),
                )

    def repository_regions(self, org_id: str) -> builtins.list[str]:
        rows = self.db.query("SELECT region FROM repo_keys WHERE org_id = ? ORDER BY region", (org_id,))
        return [row["region"] for row in rows]

    # --- internals -------------------------------------------------------------------------

    def _update(self, org_id: str, assignments: str, values: tuple[Any, ...]) -> None:
        changed = self.db.execute(
            f"UPDATE organisations SET {assignments}, updated_at = ? WHERE org_id = ?",
            (*values, self.db.now(), org_id),
        )
        if not changed:
            raise NotFound(f"no organisation {org_id!r}")

"""The appliance's use cases, wired to their adapters: what the CLI, the daemon and the TUI call.

`Appliance` is the composition root. It builds the state store, one Xero client (with its own rate
governor) per configured app, the token manager and one restic repository per organisation, from a
`Settings` object it is given. Front ends never build adapters themselves; they call these methods and
receive plain data (models, outcomes, dicts).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance.backup.run import BackupEngine, BackupOutcome, ProgressCallback
from appliance.errors import ConfigError, NotFound, StrongroomError
from appliance.models import Organisation, OrgStatus
from appliance.settings import Settings, XeroApp
from appliance.store import State
from appliance.store.points import BackupPoint
from appliance.vault.repository import Repository
from appliance.xero.client import XeroClient
from appliance.xero.governor import RateGovernor
from appliance.xero.oauth import PendingAuthorization, XeroIdentity, build_authorization
from appliance.xero.tokens import TokenManager

log = logging.getLogger(__name__)


class Appliance:
    """One Strongroom installation (one data directory)."""

    def __init__(self, settings: Settings, *, state: State | None = None) -> None:
        self.settings = settings
        self._state = state

    # -- set-up ---------------------------------------------------------------------------------------------------
    @classmethod
    def initialise(cls, settings: Settings) -> Appliance:
        """`strongroom init`: create the data directory, the age key and the state database (idempotent)."""
        state = State.initialise(settings)
        for app in settings.apps:
            state.apps.record(app.name, app.client_id, tier=app.tier)
        return cls(settings, state=state)

    @property
    def state(self) -> State:
        if self._state is None:
            if not (self.settings.data_dir / "state.db").exists():
                raise ConfigError(
                    f"no Strongroom state in {self.settings.data_dir}", hint="run `strongroom init` first"
                )
            self._state = State.open(self.settings)
        return self._state

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    # -- connect --------------------------------------------------------------------------------------------------
    def begin_connect(self, app_name: str | None = None) -> tuple[XeroApp, PendingAuthorization]:
        app = self.settings.app(app_name)
        self.state.apps.record(app.name, app.client_id, tier=app.tier)
        return app, build_authorization(app, self.settings.xero)

    async def complete_connect(
        self, app: XeroApp, pending: PendingAuthorization, code: str, *, state: str
    ) -> list[Organisation]:
        """Exchange the code, read `/connections`, and register every tenant the consent covers."""
        identity = XeroIdentity(app, self.settings.xero)
        tokens = await identity.exchange_code(code, pending, state=state)
        tenants = await identity.list_connections(tokens.access_token)
        organisations = []
        with self.state.transaction():
            grant = self.state.grants.create(app.name, tokens)
            for tenant in tenants:
                if tenant.tenant_type not in ("ORGANISATION", ""):
                    continue  # practices are not organisations we can back up
                organisations.append(
                    self.state.orgs.register(
                        tenant.tenant_id,
                        tenant.name,
                        app_name=app.name,
                        grant_id=grant.grant_id,
                        connection_id=tenant.connection_id,
                    )
                )
        log.info("connected %d organisation(s) through app %s", len(organisations), app.name)
        return organisations

    # -- reading state ----------------------------------------------------------------------------------------------
    def organisations(self) -> list[Organisation]:
        return self.state.orgs.list()

    def organisation(self, key: str) -> Organisation:
        """Find an organisation by id, id prefix or exact name (case-insensitive)."""
        orgs = self.organisations()
        matches = [o for o in orgs if o.org_id == key] or [o for o in orgs if o.name.lower() == key.lower()]
        matches = matches or [o for o in orgs if o.org_id.startswith(key)]
        if len(matches) != 1:
            raise NotFound(
                f"no organisation matches {key!r}" if not matches else f"{key!r} matches several organisations",
                hint="see `strongroom orgs`",
            )
        return matches[0]

    def points(self, org_id: str) -> list[BackupPoint]:
        return self.state.points.list(org_id)

    # -- adapters -------------------------------------------------------------------------------------------------
    def repository(self, org_id: str, region: str = "local") -> Repository:
        password = self.state.orgs.repository_password(org_id, region)
        return Repository(
            str(self.settings.data_dir / "repositories" / org_id),
            password,
            cache_dir=self.settings.effective_cache_dir / "restic",
            binary=self.settings.restic_binary,
        )

    def mirror_path(self, org_id: str) -> Path:
        return self.settings.data_dir / "mirrors" / org_id / "current"

    def _tokens(self) -> TokenManager:
        state = self.state

        def app_for_grant(grant_id: str) -> XeroApp:
            return self.settings.app(state.grants.get(grant_id).app_name)

        return TokenManager.for_apps(state.grants, self.settings.xero, app_for_grant)

    def _clients(self) -> dict[str, XeroClient]:
        tokens = self._tokens()
        return {
            app.name: XeroClient(
                self.settings.xero,
                tokens,
                RateGovernor(limits=self.settings.limits, tier=app.tier),
                limits=self.settings.limits,
            )
            for app in self.settings.apps
        }

    async def connection_gone(self, organisation: Organisation) -> bool:
        """Whether `GET /connections` of the organisation's grant no longer lists its tenant: disconnected in
        Xero (by a person, or Xero removed it). Not knowing (Xero unreachable, consent lost) is not "gone"."""
        try:
            app = self.settings.app(organisation.app_name)
            access_token = await self._tokens().access_token(organisation.grant_id)
            tenants = await XeroIdentity(app, self.settings.xero).list_connections(access_token)
        except StrongroomError as error:
            log.warning("could not ask Xero whether %s is still connected: %s", organisation.name, error)
            return False
        return all(tenant.tenant_id.lower() != organisation.org_id.lower() for tenant in tenants)

    # -- backup ---------------------------------------------------------------------------------------------------
    async def backup(
        self,
        org_ids: Sequence[str] | None = None,
        *,
        full: bool = False,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        parallel: int | None = None,
        on_outcome: Callable[[BackupOutcome], None] | None = None,
    ) -> list[BackupOutcome]:
        """Back up the given organisations (default: every active one). One failing never stops the others."""
        orgs = self.organisations()
        if org_ids is not None:
            wanted = set(org_ids)
            orgs = [o for o in orgs if o.org_id in wanted]
        else:
            orgs = [o for o in orgs if o.status is OrgStatus.ACTIVE]
        clients = self._clients()
        engine = BackupEngine(self.settings, self.state, clients, self.repository)
        semaphore = asyncio.Semaphore(parallel or self.settings.backup.parallel_organisations)

        async def one(org: Organisation) -> BackupOutcome:
            async with semaphore:
                outcome = await engine.backup(org, full=full, progress=progress, cancel=cancel)
                if outcome.status == "succeeded" and outcome.snapshot_id and self.settings.backup.detect_damage:
                    await asyncio.to_thread(self.detect_damage, org, outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
                return outcome

        try:
            return list(await asyncio.gather(*(one(org) for org in orgs)))
        finally:
            for client in clients.values():
                await client.aclose()

    def detect_damage(self, org: Organisation, outcome: BackupOutcome) -> None:
        """Run the damage rules on the step to the new point and alert on warning or critical findings.

        Detection never fails a backup: an error becomes a warning on the outcome and in the log."""
        from appliance import alerts
        from appliance.points.usecases import PointsService  # points builds on this module
        from appliance.store.fleet import Fleet

        assert outcome.snapshot_id is not None
        try:
            findings = PointsService(self).detect_after_backup(org.org_id, outcome.snapshot_id)
        except Exception as error:  # the point is safe; detection can be re-run by hand
            log.warning("damage detection on %s failed: %s", org.name, error)
            outcome.warnings.append(f"damage detection failed: {error}")
            return
        serious = [f for f in findings if f.severity in ("warning", "critical") and f.acknowledged_at is None]
        if serious:
            alerter = alerts.Alerter(self.settings.alerts, Fleet(self.state.db))
            alerter.send(alerts.damage_suspected(org.org_id, org.name, [f.summary for f in serious]))

    def summary(self) -> dict[str, Any]:
        """Fleet figures for `strongroom orgs` and the demo summary."""
        orgs = self.organisations()
        points = {org.org_id: self.state.points.list(org.org_id) for org in orgs}
        return {
            "organisations": len(orgs),
            "points": sum(len(p) for p in points.values()),
            "by_status": {
                status.value: sum(1 for o in orgs if o.status is status)
                for status in OrgStatus
                if any(o.status is status for o in orgs)
            },
        }

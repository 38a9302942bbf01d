"""Alerts: telling a person when something needs them, through apprise (email, Slack/Teams, ntfy, webhooks).

This module owns the alert events (consent needed, organisation disconnected, backups failing, stale points,
replication lag, repository check failed, day limit hit, damage suspected, a refresh token nearing Xero's 60-day
expiry), their wording, deduplication (the same event about the same organisation, or grant, at most once per
`repeat_after_hours`, remembered in the state database so a daemon restart does not resend) and delivery. Delivery
failure only warns: a broken webhook must never stop backups (borgmatic's rule for its monitoring hooks). The
optional heartbeat URL is a plain GET after each fleet round (healthchecks.io-style).

It must not decide when an event happened (the daemon and jobs do) and never puts secrets in messages.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import apprise
import httpx

from appliance.errors import SecretsError
from appliance.settings import AlertSettings
from appliance.store.fleet import Fleet

log = logging.getLogger(__name__)


class Event(enum.StrEnum):
    NEEDS_CONSENT = "needs_consent"
    BACKUP_FAILING = "backup_failing"
    STALE = "stale"
    DAY_LIMIT = "day_limit"
    REPLICATION_LAG = "replication_lag"
    CHECK_FAILED = "check_failed"
    DAMAGE_SUSPECTED = "damage_suspected"
    DISCONNECTED = "disconnected"
    REFRESH_TOKEN_AGEING = "refresh_token_ageing"


_SEVERITY = {
    Event.NEEDS_CONSENT: apprise.NotifyType.WARNING,
    Event.BACKUP_FAILING: apprise.NotifyType.FAILURE,
    Event.STALE: apprise.NotifyType.WARNING,
    Event.DAY_LIMIT: apprise.NotifyType.INFO,
    Event.REPLICATION_LAG: apprise.NotifyType.WARNING,
    Event.CHECK_FAILED: apprise.NotifyType.FAILURE,
    Event.DAMAGE_SUSPECTED: apprise.NotifyType.FAILURE,
    Event.DISCONNECTED: apprise.NotifyType.WARNING,
    Event.REFRESH_TOKEN_AGEING: apprise.NotifyType.WARNING,
}


@dataclass(frozen=True)
class Alert:
    event: Event
    title: str
    body: str
    org_id: str | None = None
    subject: str | None = None
    """What the alert is about when that is not one organisation (a grant): deduplicated per subject."""

    @property
    def key(self) -> str:
        return f"{self.event.value}:{self.subject or self.org_id or '*'}"


class Alerter:
    """Sends alerts to the configured apprise URLs, deduplicated through the state database."""

    def __init__(self, settings: AlertSettings, fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.fleet = fleet
        self._apprise: apprise.Apprise | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.urls or self.settings.url_secrets)

    def _targets(self) -> apprise.Apprise:
        if self._apprise is None:
            targets = apprise.Apprise()
            urls = list(self.settings.urls)
            for ref in self.settings.url_secrets:
                try:
                    urls.append(ref.read())
                except SecretsError as error:
                    log.warning("an alert URL cannot be read and is skipped: %s", error.message)
            for url in urls:
                if not targets.add(url):
                    log.warning("apprise does not understand an alert URL (scheme %s); skipped", url.split(":")[0])
            self._apprise = targets
        return self._apprise

    def send(self, alert: Alert, *, force: bool = False) -> bool:
        """Deliver `alert` unless it was sent recently; returns whether it was delivered. Never raises."""
        if not self.enabled:
            return False
        repeat = self.settings.repeat_after_hours * 3600
        if not force and self.fleet is not None and not self.fleet.alert_due(alert.key, repeat):
            log.debug("alert %s suppressed: sent within %.0f h", alert.key, self.settings.repeat_after_hours)
            return False
        delivered = False
        try:
            delivered = bool(
                self._targets().notify(
                    title=f"Strongroom: {alert.title}", body=alert.body, notify_type=_SEVERITY[alert.event]
                )
            )
        except Exception as error:  # a notification must never take the daemon down
            log.warning("alert %s could not be sent: %s", alert.key, error)
        if not delivered:
            log.warning("alert %s was not delivered to every target", alert.key)
        if self.fleet is not None:
            self.fleet.record_alert(alert.key, alert.event.value, alert.org_id, delivered=delivered)
        return delivered

    def heartbeat(self, *, timeout: float = 10.0) -> bool:
        """Ping the heartbeat URL after a fleet round; a failure only warns."""
        url = self.settings.heartbeat_url
        if not url:
            return False
        try:
            response = httpx.get(url, timeout=timeout, trust_env=True)
            response.raise_for_status()
        except httpx.HTTPError as error:
            log.warning("heartbeat ping failed: %s", error)
            return False
        return True


# --- the events ------------------------------------------------------------------------------------------------


def needs_consent(org_id: str, name: str) -> Alert:
    return Alert(
        Event.NEEDS_CONSENT,
        f"{name} needs to be reconnected",
        f"Xero no longer accepts Strongroom's consent for {name} ({org_id}); backups of it have stopped.\n"
        "Run `strongroom connect` and tick the organisation again.",
        org_id,
    )


def disconnected(org_id: str, name: str) -> Alert:
    return Alert(
        Event.DISCONNECTED,
        f"{name} is no longer connected",
        f"Xero no longer lists {name} ({org_id}) among the organisations Strongroom's app may read: it was "
        "disconnected in Xero. Backups of it have stopped; its backup points are kept (the newest one always).\n"
        "To resume, run `strongroom connect` and tick the organisation again.",
        org_id,
    )


def refresh_token_ageing(grant_id: str, organisations: Sequence[str], saved_at: float, expires_at: float) -> Alert:
    names = ", ".join(organisations)
    saved, expires = _day(saved_at), _day(expires_at)
    return Alert(
        Event.REFRESH_TOKEN_AGEING,
        f"Xero access to {names} expires on {expires}",
        f"The Xero refresh token Strongroom uses for {names} has not been renewed since {saved}. Xero lets an "
        f"unused refresh token expire after 60 days, so it stops working on {expires} (UTC); after that a person "
        "must consent again.\nA backup of any of these organisations renews it: check that they are not paused "
        "and run `strongroom backup`, or reconnect with `strongroom connect`.",
        subject=f"grant:{grant_id}",
    )


def backup_failing(org_id: str, name: str, failures: int, error: str | None) -> Alert:
    return Alert(
        Event.BACKUP_FAILING,
        f"backups of {name} are failing",
        f"The last {failures} backups of {name} ({org_id}) failed. Last error: {error or 'unknown'}.\n"
        "See `strongroom jobs` and `journalctl -u strongroom`.",
        org_id,
    )


def stale(org_id: str, name: str, hours: float) -> Alert:
    return Alert(
        Event.STALE,
        f"no recent backup of {name}",
        f"The newest backup point of {name} ({org_id}) is {hours:.0f} hours old.",
        org_id,
    )


def day_limit(org_id: str, name: str, resume_at: str) -> Alert:
    return Alert(
        Event.DAY_LIMIT,
        f"{name} hit Xero's daily call limit",
        f"The backup of {name} ({org_id}) paused on Xero's per-organisation day limit; it resumes after {resume_at}.",
        org_id,
    )


def replication_lag(org_id: str, name: str, region: str, hours: float, error: str | None = None) -> Alert:
    detail = f" Last error: {error}." if error else ""
    return Alert(
        Event.REPLICATION_LAG,
        f"offsite copy of {name} is behind",
        f"A backup point of {name} ({org_id}) has waited {hours:.1f} hours to reach region {region}.{detail}",
        org_id,
    )


def check_failed(org_id: str, name: str, region: str, error: str) -> Alert:
    return Alert(
        Event.CHECK_FAILED,
        f"repository check failed for {name}",
        f"`restic check` of the {region} repository of {name} ({org_id}) reported: {error}",
        org_id,
    )


def damage_suspected(org_id: str, name: str, findings: Sequence[str]) -> Alert:
    return Alert(
        Event.DAMAGE_SUSPECTED,
        f"possible damage in {name}",
        f"Comparing the newest backup points of {name} ({org_id}) found:\n- " + "\n- ".join(findings),
        org_id,
    )


def _day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")

"""Every alert event of the issue's "Alerts and status" list, delivered through apprise's JSON webhook
(`json://`) to a local HTTP receiver, deduplicated through the state database; the heartbeat ping is a GET.

Which code raises each event is tested where it happens (test_replication: replication lag; test_fleet: the
heartbeat after a fleet round; test_alert_events: disconnected, refresh token ageing); this file pins that each
event's alert reaches a real webhook, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import alerts
from appliance.alerts import Alerter, Event
from appliance.settings import AlertSettings
from appliance.store.db import open_state
from appliance.store.fleet import Fleet
from tests.integration.test_replication import Receiver

EVENTS = {
    Event.NEEDS_CONSENT: alerts.needs_consent("org-1", "Demo Ltd"),
    Event.BACKUP_FAILING: alerts.backup_failing("org-1", "Demo Ltd", 3, "XeroUnavailable: 503"),
    Event.STALE: alerts.stale("org-1", "Demo Ltd", 50.0),
    Event.DAY_LIMIT: alerts.day_limit("org-1", "Demo Ltd", "2026-11-26 00:00 UTC"),
    Event.REPLICATION_LAG: alerts.replication_lag("org-1", "Demo Ltd", "au", 40.0, "connection refused"),
    Event.CHECK_FAILED: alerts.check_failed("org-1", "Demo Ltd", "local", "pack 1234 is damaged"),
    Event.DAMAGE_SUSPECTED: alerts.damage_suspected("org-1", "Demo Ltd", ["340 invoices deleted since yesterday"]),
    Event.DISCONNECTED: alerts.disconnected("org-1", "Demo Ltd"),
    Event.REFRESH_TOKEN_AGEING: alerts.refresh_token_ageing("grant-1", ["Demo Ltd"], 1_790_000_000, 1_795_184_000),
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.mark.parametrize("event", list(EVENTS), ids=lambda event: event.value)
def test_each_event_reaches_a_json_webhook_once(event: Event, receiver: Receiver, tmp_path: Path) -> None:
    db = open_state(tmp_path / "state.db")
    try:
        alerter = Alerter(AlertSettings(urls=[receiver.url]), Fleet(db))
        alert = EVENTS[event]
        assert alerter.send(alert) is True
        assert alerter.send(alert) is False  # deduplicated within repeat_after_hours
        assert len(receiver.bodies) == 1
        body = receiver.bodies[0]
        assert body["title"] == f"Strongroom: {alert.title}"
        assert body["message"] == alert.body
        assert "org-1" in body["message"] or "Demo Ltd" in body["message"]
    finally:
        db.close()


def test_the_heartbeat_is_a_get_and_a_failed_one_only_warns(receiver: Receiver) -> None:
    assert Alerter(AlertSettings(heartbeat_url=f"http://127.0.0.1:{receiver.port}/ping/abc")).heartbeat() is True
    assert receiver.gets == ["/ping/abc"]
    closed = Receiver()
    closed.close()
    assert Alerter(AlertSettings(heartbeat_url=f"http://127.0.0.1:{closed.port}/x")).heartbeat(timeout=5) is False


def test_alerts_about_two_grants_are_deduplicated_apart(receiver: Receiver, tmp_path: Path) -> None:
    db = open_state(tmp_path / "state.db")
    try:
        alerter = Alerter(AlertSettings(urls=[receiver.url]), Fleet(db))
        first = alerts.refresh_token_ageing("grant-1", ["Demo Ltd"], 1_790_000_000, 1_795_184_000)
        second = alerts.refresh_token_ageing("grant-2", ["Other Ltd", "Third Ltd"], 1_790_000_000, 1_795_184_000)
        assert [alerter.send(first), alerter.send(second), alerter.send(second)] == [True, True, False]
        assert [body["title"] for body in receiver.bodies] == [
            "Strongroom: Xero access to Demo Ltd expires on 2026-11-20",
            "Strongroom: Xero access to Other Ltd, Third Ltd expires on 2026-11-20",
        ]
    finally:
        db.close()

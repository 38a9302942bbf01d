"""The alerts whose cause the appliance finds on its own, raised by the code that finds it and delivered through
apprise's JSON webhook (`json://`) to a local HTTP receiver, once:

- a backup that Xero refuses because the organisation was disconnected from the app (`DELETE /connections/{id}`,
  what "disconnect" in Xero does) marks the organisation `disconnected` and says so;
- the daemon's alert pass warns about a refresh token nearing Xero's 60-day expiry for unused tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.daemon.jobs import BACKUP
from appliance.daemon.service import Daemon
from appliance.daemon_commands import submit
from appliance.models import OrgStatus
from appliance.settings import AlertSettings
from appliance.store import JobState
from appliance.store.grants import GrantStatus
from appliance.xero.oauth import XeroIdentity
from tests.integration.test_backup import Installation, make_installation
from tests.integration.test_replication import Receiver

DAY = 86_400.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def installation(tmp_path: Path, receiver: Receiver) -> Iterator[Installation]:
    with make_installation(tmp_path) as inst:
        inst.settings.alerts = AlertSettings(urls=[receiver.url], failures_before_alert=1)
        yield inst


def _disconnect_in_xero(installation: Installation) -> None:
    """What a person does in Xero's "Connected apps": the organisation leaves the app's grant."""
    appliance = installation.appliance
    organisation = appliance.state.orgs.get(installation.tenant_id)
    tokens = appliance.state.grants.load(organisation.grant_id)
    assert tokens is not None
    identity = XeroIdentity(appliance.settings.app(organisation.app_name), appliance.settings.xero)

    async def disconnect() -> None:
        (connection,) = [
            tenant
            for tenant in await identity.list_connections(tokens.access_token)
            if tenant.tenant_id == installation.tenant_id
        ]
        await identity.disconnect(tokens.access_token, connection.connection_id)

    asyncio.run(disconnect())


def test_a_backup_of_a_disconnected_organisation_marks_it_and_alerts_once(
    installation: Installation, receiver: Receiver
) -> None:
    appliance, org_id = installation.appliance, installation.tenant_id
    name = appliance.state.orgs.get(org_id).name
    _disconnect_in_xero(installation)

    (job,) = submit(appliance, BACKUP, [org_id], {}, quiet=True)
    assert job.state is JobState.FAILED
    assert "no longer connected" in (job.error or "")
    organisation = appliance.state.orgs.get(org_id)
    assert organisation.status is OrgStatus.DISCONNECTED
    # The refresh token is fine: this is not a consent to renew, and the grant stays active.
    assert appliance.state.grants.get(organisation.grant_id).status is GrantStatus.ACTIVE
    assert [body["title"] for body in receiver.bodies] == [f"Strongroom: {name} is no longer connected"]
    assert org_id in receiver.bodies[0]["message"]
    assert "strongroom connect" in receiver.bodies[0]["message"]

    # Asked again, the backup stops before calling Xero, and the person is not told twice (nor that it fails).
    (again,) = submit(appliance, BACKUP, [org_id], {}, quiet=True)
    assert again.state is JobState.FAILED
    assert again.error == "organisation is disconnected"
    assert len(receiver.bodies) == 1


def test_the_alert_pass_warns_once_about_a_refresh_token_nearing_expiry(
    installation: Installation, receiver: Receiver
) -> None:
    appliance = installation.appliance
    organisation = appliance.state.orgs.get(installation.tenant_id)
    daemon = Daemon(installation.settings)
    try:
        daemon.alert_pass()
        assert receiver.bodies == []  # the token was saved at connect: nothing to say

        saved_at = time.time() - 55 * DAY
        appliance.state.db.execute(
            "UPDATE grants SET tokens_saved_at = ? WHERE grant_id = ?", (saved_at, organisation.grant_id)
        )
        daemon.alert_pass()
        daemon.alert_pass()  # deduplicated within repeat_after_hours
    finally:
        daemon.appliance.close()
    expires = datetime.fromtimestamp(saved_at + 60 * DAY, UTC).strftime("%Y-%m-%d")
    assert [body["title"] for body in receiver.bodies] == [
        f"Strongroom: Xero access to {organisation.name} expires on {expires}"
    ]
    message = receiver.bodies[0]["message"]
    assert datetime.fromtimestamp(saved_at, UTC).strftime("%Y-%m-%d") in message
    assert "60 days" in message

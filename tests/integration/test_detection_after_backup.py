"""Damage detection runs after every backup: a bad onboarding played through the sandbox's write path is found
by the next backup itself, stored as a finding with the last clean point, and alerted through apprise's JSON
webhook to a local receiver; a clean day raises nothing above info."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.settings import AlertSettings
from tests.integration.test_backup import make_installation
from tests.integration.test_replication import Receiver


def test_the_backup_after_a_bad_onboarding_raises_and_alerts_a_finding(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        with make_installation(tmp_path, seed=31) as inst:
            inst.settings.alerts = AlertSettings(urls=[receiver.url])
            appliance = inst.appliance
            (first,) = asyncio.run(appliance.backup(full=True))
            assert first.status == "succeeded"
            inst.sandbox.advance(1)
            (clean,) = asyncio.run(appliance.backup())
            assert clean.status == "succeeded"
            assert [f for f in appliance.state.findings.list(inst.tenant_id) if f.severity != "info"] == []
            assert receiver.bodies == []
            inst.sandbox.advance(1)
            truth = inst.sandbox._admin(
                "POST", "damage", {"kind": "onboarding", "tenant": inst.tenant_id, "months": 3, "limit": 12}
            )
            (damaged,) = asyncio.run(appliance.backup())
            assert damaged.status == "succeeded"
            findings = [f for f in appliance.state.findings.list(inst.tenant_id) if f.severity != "info"]
            assert findings, "the backup after the damage raised no finding"
            duplicates = next(f for f in findings if f.rule == "near_duplicates")
            assert duplicates.point_after == damaged.snapshot_id
            assert duplicates.last_clean_point == clean.snapshot_id
            created = {str(item.get("id", item)) if isinstance(item, dict) else str(item) for item in truth["created"]}
            found = set(map(str, duplicates.evidence.get("record_ids", [])))
            assert len(found & created) >= 0.95 * len(created)
            assert any("possible damage" in str(body) for body in receiver.bodies), receiver.bodies
    finally:
        receiver.close()

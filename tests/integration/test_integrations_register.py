"""The integrations register through the CLI, pre-filled from a real backup point of a sandbox organisation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.integration.sandbox_writes_support import WRITE_EVERYTHING_SCOPE
from tests.integration.test_backup import make_installation


def _put(base_url: str, token: str, tenant: str, endpoint: str, body: dict[str, Any]) -> None:
    response = httpx.put(
        f"{base_url}/api.xro/2.0/{endpoint}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "xero-tenant-id": tenant, "Accept": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_suggest_apply_list_add_remove(tmp_path: Path) -> None:
    with make_installation(tmp_path, seed=21) as inst:
        # The client's books show a Stripe clearing account and a Dext subscription (written through the API).
        other = inst.sandbox.connect(scope=WRITE_EVERYTHING_SCOPE)
        _put(
            inst.sandbox.base_url,
            other.access_token,
            inst.tenant_id,
            "Accounts",
            {"Code": "8810", "Name": "Stripe GBP clearing", "Type": "CURRLIAB"},
        )
        _put(
            inst.sandbox.base_url,
            other.access_token,
            inst.tenant_id,
            "Contacts",
            {"Contacts": [{"Name": "Dext Software Ltd"}]},
        )
        (outcome,) = asyncio.run(inst.appliance.backup(full=True))
        assert outcome.status == "succeeded", outcome
        inst.appliance.close()
        base = [str(Path(sys.executable).parent / "strongroom"), "-q", "-c", str(inst.config_path), "integrations"]

        def run(*args: str) -> dict[str, Any]:
            done = subprocess.run([*base, *args, "--json"], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return dict(json.loads(done.stdout))

        suggested = run("suggest", inst.tenant_id, "--apply")
        names = [s["name"] for s in suggested["suggestions"]]
        assert names[:2] == ["Stripe", "Dext"] or set(names) >= {"Stripe", "Dext"}
        stripe = next(s for s in suggested["suggestions"] if s["name"] == "Stripe")
        assert stripe["evidence"][0]["source"] == "account"
        listed = run("list", inst.tenant_id)["integrations"]
        assert {"Stripe", "Dext"} <= {entry["name"] for entry in listed}
        assert all(entry.get("suggested") for entry in listed)
        # Suggesting again offers nothing already in the register.
        assert run("suggest", inst.tenant_id)["suggestions"] == []
        added = run("add", inst.tenant_id, "Deputy", "--kind", "rostering", "--contact", "Office manager")
        assert {"name": "Deputy", "kind": "rostering", "contact": "Office manager"} in added["integrations"]
        removed = run("remove", inst.tenant_id, "Dext")["integrations"]
        assert "Dext" not in {entry["name"] for entry in removed}
        missing = subprocess.run([*base, "remove", inst.tenant_id, "Nope"], capture_output=True, text=True, timeout=60)
        assert missing.returncode == 2
        assert "not in the register" in missing.stderr

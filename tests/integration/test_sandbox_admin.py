"""The sandbox's admin API and `strongroom sandbox` commands, in-process and as a real child process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.cli import main
from sandbox.testing import SandboxProcess, SandboxServer
from tests.conftest import T0, TinySandbox


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    pytest.importorskip("sandbox.generate")
    state = tmp_path_factory.mktemp("admin") / "sandbox.db"
    with SandboxServer(state, seed=5, orgs=1, size="small", anchor_ms=T0) as server:
        server.set_limits(minute=100_000)
        yield server


def _count_by_paging(server: SandboxServer, endpoint: str) -> int:
    token = server.connect()
    tenant = server.info["tenants"][0]["tenant_id"]
    headers = {"Authorization": f"Bearer {token.access_token}", "xero-tenant-id": tenant, "Accept": "application/json"}
    total, page = 0, 1
    with httpx.Client(base_url=f"{server.base_url}/api.xro/2.0", headers=headers) as api:
        while True:
            body = api.get(f"/{endpoint}", params={"page": page, "pageSize": 1000}).json()
            total += len(body[endpoint])
            if page >= body["pagination"]["pageCount"]:
                return total
            page += 1


def test_truth_matches_what_the_api_serves(generated: SandboxServer) -> None:
    tenant = generated.info["tenants"][0]["tenant_id"]
    truth = generated.truth(tenant)
    assert truth["Invoices"]["count"] > 0
    assert _count_by_paging(generated, "Invoices") == truth["Invoices"]["count"]
    with httpx.Client(base_url=generated.base_url) as http:
        assert http.get("/_sandbox/truth", params={"tenant": "nope"}).status_code == 404


def test_same_seed_gives_the_same_hashes(generated: SandboxServer, tmp_path: Path) -> None:
    with SandboxServer(tmp_path / "twin.db", seed=5, orgs=1, size="small", anchor_ms=T0) as twin:
        assert twin.info["tenants"] == generated.info["tenants"]
        assert twin.info["client_id"] == generated.info["client_id"]
        original = generated.info["tenants"][0]["tenant_id"]
        copy = twin.info["tenants"][0]["tenant_id"]
        assert twin.truth(copy) == generated.truth(original)


def test_advance_changes_data_and_usage_counts_egress(generated: SandboxServer) -> None:
    pytest.importorskip("sandbox.churn")
    tenant = generated.info["tenants"][0]["tenant_id"]
    before = generated.truth(tenant)
    result = generated.advance(2)
    assert result["days"] == 2
    after = generated.truth(tenant)
    assert after != before
    _count_by_paging(generated, "Invoices")
    usage = generated.usage()[tenant]
    assert usage["calls"] >= 1
    assert usage["bytes"] > 1000


def test_cli_commands_drive_a_running_sandbox(sandbox_server: TinySandbox, capsys: pytest.CaptureFixture[str]) -> None:
    url = sandbox_server.base_url
    assert _cli(capsys, "faults", "seed=3,503=0.25", "--url", url)["faults"]["p503"] == 0.25
    assert _cli(capsys, "faults", "none", "--url", url)["spec"] == "seed=0"
    assert _cli(capsys, "tier", "advanced", "--url", url)["tier"] == "advanced"
    limits = _cli(capsys, "limits", "--minute", "7", "--tenant", sandbox_server.org.tenant_id, "--url", url)
    assert limits["limits"]["tenants"][sandbox_server.org.tenant_id]["minute"] == 7
    assert _cli(capsys, "usage", "--url", url) == {"tenants": {}}
    truth = _cli(capsys, "truth", sandbox_server.org.tenant_id, "--url", url)
    assert truth["endpoints"]["Invoices"]["count"] == 7
    assert main(["truth", "not-a-tenant", "--url", url]) == 1


def test_create_empty_org_and_reset(sandbox_server: TinySandbox, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sandbox.generate")
    url = sandbox_server.base_url
    created = _cli(capsys, "create-org", "--country", "AU", "--name", "Blank Pty Ltd", "--url", url)["created"]
    assert [(t["name"], t["country"]) for t in created] == [("Blank Pty Ltd", "AU")]
    # The demo user can consent to the new organisation at once.
    token = sandbox_server.server.connect()
    with httpx.Client(base_url=url) as http:
        tenants = {
            c["tenantId"]
            for c in http.get("/connections", headers={"Authorization": f"Bearer {token.access_token}"}).json()
        }
        assert created[0]["tenant_id"] in tenants
        # Reset wipes organisations, tokens and connections (this sandbox seeds none of its own).
        assert http.post("/_sandbox/reset").json() == {"tenants": []}
        refused = http.get("/connections", headers={"Authorization": f"Bearer {token.access_token}"})
        assert refused.status_code == 401


def test_served_as_a_process_with_info_file_and_state_surviving_a_kill(tmp_path: Path) -> None:
    pytest.importorskip("sandbox.generate")
    state = tmp_path / "sandbox.db"
    args = ("--seed", "9", "--orgs", "1", "--size", "small", "--auto-consent", "--tier", "advanced")
    process = SandboxProcess(state, *args)
    with process:
        info = process.info
        assert set(info) >= {"base_url", "client_id", "client_secret", "redirect_uri", "scope", "tenants"}
        assert "accounting.journals.read" in info["scope"].split()  # the advanced tier may read Journals
        assert info["tenants"][0]["country"] in {"AU", "NZ", "GB", "US", "CA"}
        token = process.connect()
        tenant = info["tenants"][0]["tenant_id"]
        headers = {
            "Authorization": f"Bearer {token.access_token}",
            "xero-tenant-id": tenant,
            "Accept": "application/json",
        }
        assert httpx.get(f"{info['base_url']}/api.xro/2.0/Organisation", headers=headers).status_code == 200
        truth = process.truth(tenant)
        process.kill()
    # A new process on the same state file: same app, same organisation, and the old token still works.
    with SandboxProcess(state, *args) as again:
        assert again.info["client_id"] == info["client_id"]
        assert again.info["tenants"] == info["tenants"]
        assert again.truth(tenant) == truth
        response = httpx.get(f"{again.info['base_url']}/api.xro/2.0/Organisation", headers=headers)
        assert response.status_code == 200


def _trial_balance_totals(server: SandboxServer) -> tuple[str, str]:
    token = server.connect()
    tenant = server.info["tenants"][0]["tenant_id"]
    headers = {"Authorization": f"Bearer {token.access_token}", "xero-tenant-id": tenant, "Accept": "application/json"}
    report = httpx.get(f"{server.base_url}/api.xro/2.0/Reports/TrialBalance", headers=headers).json()["Reports"][0]
    summary = [row for section in report["Rows"] for row in section.get("Rows", []) if row["RowType"] == "SummaryRow"]
    cells = [c["Value"] for c in summary[-1]["Cells"]]
    return cells[3], cells[4]  # YTD Debit, YTD Credit


def test_trial_balance_over_http_balances_before_and_after_advance(generated: SandboxServer) -> None:
    pytest.importorskip("sandbox.churn")
    debit, credit = _trial_balance_totals(generated)
    assert float(debit) > 0
    assert debit == credit
    generated.advance(1)
    debit, credit = _trial_balance_totals(generated)
    assert debit == credit

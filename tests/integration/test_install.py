"""install.sh's system mode, run for real into a temporary root.

What a CI machine cannot do is skipped explicitly: creating the `strongroom` user
(STRONGROOM_INSTALL_SKIP_USER=1) and starting the service (`--root` never touches systemd). Everything
else is real: the virtualenv, pip installing the package from a copy of this checkout, the unit, the
settings file and the keys directory. The install takes about 30 s (the pip install), once per module.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
# What a release tarball holds; copied so that edits to the working tree during the run cannot make
# the second run see a different source.
SOURCE_PARTS = ["install.sh", "pyproject.toml", "README.md", "appliance", "tui", "sandbox", "systemd", "config", "docs"]


@dataclass
class Installed:
    source: Path
    root: Path
    first: subprocess.CompletedProcess[str]


def run_install(source: Path, *args: str, skip_user: bool = True) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STRONGROOM_", "DESTDIR"))}
    env["STRONGROOM_INSTALL_PYTHON"] = sys.executable
    if skip_user:
        env["STRONGROOM_INSTALL_SKIP_USER"] = "1"
    return subprocess.run(
        ["bash", str(source / "install.sh"), *args], capture_output=True, text=True, env=env, timeout=300
    )


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under `root` with its mode, size, modification time and link target."""
    result = {}
    for directory, names, files in os.walk(root):
        for name in [*names, *files]:
            path = Path(directory) / name
            info = path.lstat()
            target = os.readlink(path) if path.is_symlink() else ""
            result[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, target)
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    source = tmp_path_factory.mktemp("source")
    for part in SOURCE_PARTS:
        origin = REPOSITORY / part
        if origin.is_dir():
            shutil.copytree(origin, source / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
        else:
            shutil.copy2(origin, source / part)
    root = tmp_path_factory.mktemp("root")
    first = run_install(source, "--root", str(root))
    assert first.returncode == 0, first.stderr
    return Installed(source, root, first)


def test_system_install_lays_out_files_and_modes(installed: Installed) -> None:
    root, source = installed.root, installed.source
    etc = root / "etc/strongroom"
    assert mode(etc) == 0o750
    assert (etc / "strongroom.toml").read_text() == (source / "config/strongroom.example.toml").read_text()
    assert mode(etc / "strongroom.toml") == 0o640
    assert mode(etc / "keys") == 0o700
    secret = etc / "keys/xero-client-secret"
    assert secret.read_bytes() == b""  # the unit's LoadCredential= needs the file to exist
    assert mode(secret) == 0o600
    for state in ("var/lib/strongroom", "var/cache/strongroom"):
        assert mode(root / state) == 0o700
    unit = root / "etc/systemd/system/strongroom.service"
    assert unit.read_text() == (source / "systemd/strongroom.service").read_text()
    assert mode(unit) == 0o644
    assert os.readlink(root / "usr/local/bin/strongroom") == "/opt/strongroom/venv/bin/strongroom"
    assert "systemd is not running here" in installed.first.stderr


def test_installed_program_runs(installed: Installed) -> None:
    strongroom = installed.root / "opt/strongroom/venv/bin/strongroom"
    version = subprocess.run([str(strongroom), "version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("strongroom ")
    # The package is installed, not linked to the checkout.
    where = subprocess.run(
        [str(strongroom.parent / "python"), "-I", "-c", "import appliance; print(appliance.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(installed.root / "opt/strongroom/venv/lib/"))
    check = subprocess.run(
        [str(strongroom), "config", "check", str(installed.root / "etc/strongroom/strongroom.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_second_run_changes_nothing_and_keeps_settings(installed: Installed) -> None:
    settings = installed.root / "etc/strongroom/strongroom.toml"
    settings.write_text('data_dir = "/srv/strongroom"\n')
    secret = installed.root / "etc/strongroom/keys/xero-client-secret"
    secret.write_text("s3cret\n")
    before = snapshot(installed.root)
    second = run_install(installed.source, "--root", str(installed.root))
    assert second.returncode == 0, second.stderr
    assert snapshot(installed.root) == before
    assert "is up to date" in second.stderr
    assert settings.read_text() == 'data_dir = "/srv/strongroom"\n'
    assert secret.read_text() == "s3cret\n"


def test_root_mode_refuses_to_add_a_user(installed: Installed, tmp_path: Path) -> None:
    result = run_install(installed.source, "--root", str(tmp_path), skip_user=False)
    assert result.returncode == 2
    assert "STRONGROOM_INSTALL_SKIP_USER=1" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the system install checks for root before packages")
def test_without_apt_it_says_what_to_install(installed: Installed, tmp_path: Path) -> None:
    # A PATH with a shell and Python but neither apt-get, dpkg nor restic.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "dirname", "id", "cat", "mkdir"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "STRONGROOM_INSTALL_PYTHON": sys.executable, "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(bin_dir / "bash"), str(installed.source / "install.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no apt-get" in result.stderr
    assert "dnf install restic" in result.stderr
    assert "https://github.com/restic/restic/releases" in result.stderr


def test_uninstall_keeps_data_settings_and_keys(installed: Installed) -> None:
    root = installed.root
    (root / "var/lib/strongroom/state.db").write_bytes(b"data")
    settings_before = (root / "etc/strongroom/strongroom.toml").read_bytes()
    for _ in range(2):  # idempotent too
        result = run_install(installed.source, "--root", str(root), "--uninstall")
        assert result.returncode == 0, result.stderr
        assert not (root / "opt/strongroom").exists()
        assert not (root / "etc/systemd/system/strongroom.service").exists()
        assert not (root / "usr/local/bin/strongroom").is_symlink()
        assert not (root / "var/cache/strongroom").exists()
        assert (root / "var/lib/strongroom/state.db").read_bytes() == b"data"
        assert (root / "etc/strongroom/strongroom.toml").read_bytes() == settings_before
        assert (root / "etc/strongroom/keys/xero-client-secret").exists()

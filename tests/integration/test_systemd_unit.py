"""systemd/strongroom.service: `systemd-analyze verify` passes and `security` rates it 2.0 or lower.

Both run offline on the unit file (no running systemd needed). `verify` checks that ExecStart exists,
so it runs on a copy whose ExecStart points at this checkout's `strongroom`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
UNIT = REPOSITORY / "systemd" / "strongroom.service"
INSTALLED_EXEC = "/opt/strongroom/venv/bin/strongroom"
MAX_EXPOSURE = 2.0

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def _directives(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def _local_copy(tmp_path: Path, text: str | None = None) -> Path:
    strongroom = Path(sys.executable).parent / "strongroom"
    assert strongroom.exists(), "the checkout's strongroom script is missing (run ./install.sh --dev)"
    unit = tmp_path / "strongroom.service"
    unit.write_text((text or UNIT.read_text()).replace(INSTALLED_EXEC, str(strongroom)))
    return unit


def test_unit_keeps_the_contract_install_sh_and_the_daemon_rely_on() -> None:
    directives = _directives(UNIT.read_text())
    values = dict(directives)
    assert values["Type"] == "notify"
    assert values["ExecStart"] == f"{INSTALLED_EXEC} daemon"
    assert values["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert values["KillSignal"] == "SIGTERM"
    assert values["User"] == "strongroom"
    assert values["StateDirectory"] == values["CacheDirectory"] == values["ConfigurationDirectory"] == "strongroom"
    assert values["LoadCredential"].startswith("xero-client-secret:/etc/strongroom/keys/")
    assert values["CapabilityBoundingSet"] == ""
    assert values["UMask"] == "0077"
    # The daemon's stop grace (60 s) must fit inside systemd's stop timeout, or restic gets SIGKILLed
    # and leaves its lock behind.
    assert int(values["TimeoutStopSec"]) > 60
    assert "SystemCallFilter" in values
    assert ("SystemCallFilter", "@system-service") in directives


@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    unit = _local_copy(tmp_path)
    result = subprocess.run([analyze or "", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # Warnings about other units on the host are not ours; any about this unit are.
    assert "strongroom.service" not in result.stderr, result.stderr


@needs_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("Type=notify", "Type=notifyy")
    unit = _local_copy(tmp_path, broken.replace(f"{INSTALLED_EXEC} daemon", "/nonexistent/strongroom daemon"))
    result = subprocess.run([analyze or "", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "strongroom.service" in result.stderr


@needs_analyze
def test_systemd_analyze_security_rates_it_ok(tmp_path: Path) -> None:
    unit = _local_copy(tmp_path)
    result = subprocess.run(
        [analyze or "", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for strongroom\.service: (\d+\.\d+) (\w+)", output)
    assert match, output
    exposure, rating = float(match.group(1)), match.group(2)
    assert exposure <= MAX_EXPOSURE, output
    assert rating == "OK"


MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, mmap, subprocess, sys

    # PR_SET_MDWE (Linux 6.3): the kernel's form of MemoryDenyWriteExecute=, inherited by children.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:
        sys.exit(77)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("writable+executable memory was allowed: the probe would prove nothing")

    import apprise, apsw, httpx, orjson, pydantic, pyrage, sqlite_utils, uvicorn  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import ed25519
    import appliance.cli, appliance.daemon.lifecycle, appliance.secrets  # noqa: F401

    identity = pyrage.x25519.Identity.generate()
    assert pyrage.decrypt(pyrage.encrypt(b"token", [identity.to_public()]), [identity]) == b"token"
    ed25519.Ed25519PrivateKey.generate().sign(b"x")
    apsw.Connection(":memory:").execute("create table t(x)")
    restic = subprocess.run([sys.argv[1], "version"], capture_output=True, text=True, check=True)
    print(restic.stdout.split()[1])
    """
)


def test_python_and_restic_run_without_writable_executable_memory() -> None:
    restic = shutil.which("restic")
    if restic is None:
        pytest.skip("restic is not installed")
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", MDWE_PROBE, restic], capture_output=True, text=True, timeout=120
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+", result.stdout.strip())

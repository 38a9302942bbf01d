"""Usage errors are a contract too: exit code 2, one short error, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

STRONGROOM = str(Path(sys.executable).parent / "strongroom")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["points"], "Missing argument"),
        (["--bogus"], "No such option"),
        (["backup", "--org"], "requires an argument"),
        (["nonsense"], "No such command"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: list[str], message: str) -> None:
    done = subprocess.run([STRONGROOM, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_no_subcommand_without_a_terminal_prints_help() -> None:
    done = subprocess.run([STRONGROOM], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Usage: strongroom" in done.stdout
    assert "tui" in done.stdout

"""Smoke test of the real binary: `strongroom tui` runs inside tmux on a real installation; keys go in with
`send-keys` and the screen comes back with `capture-pane`, as a person on an SSH session would see it.

Falls back to `python -m tui` (the same command, registered on the fly) while the `strongroom.commands`
entry point for `tui` is not installed in the virtualenv yet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_backup import Installation

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (install.sh adds it)")
SCREEN_WAIT = 30.0
"""Upper bound for the screen to show something (not a timing assertion)."""
SIZED_BY_THE_TERMINAL = "env -u COLUMNS -u LINES"
"""Prefix of every command run in tmux: a COLUMNS/LINES in the environment (pytest-xdist's workers have 80x24)
overrides the terminal's own size in `shutil.get_terminal_size`, and the TUI then draws 80 columns in a wider
window. The tmux server hands its own environment to new sessions, so the variables are dropped here."""


def _command(config: Path) -> list[str]:
    binary = Path(sys.executable).with_name("strongroom")
    if binary.exists():
        listed = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False).stdout
        if " tui " in listed:
            return [str(binary), "-c", str(config), "tui"]
    return [sys.executable, "-m", "tui", "-c", str(config), "tui"]


class Tmux:
    def __init__(self, session: str) -> None:
        self.session = session

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def text(self, text: str) -> None:
        self.run("send-keys", "-t", self.session, "-l", text)

    def wait_for(self, condition: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + SCREEN_WAIT
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}; the screen shows:\n{screen}")
            time.sleep(0.2)

    def alive(self) -> bool:
        return (
            subprocess.run(["tmux", "has-session", "-t", self.session], capture_output=True, check=False).returncode
            == 0
        )


@pytest.fixture
def tmux(installation: Installation, request: pytest.FixtureRequest) -> Iterator[Tmux]:
    session = f"strongroom-smoke-{uuid.uuid4().hex[:8]}"
    words = _command(installation.config_path)
    if getattr(request, "param", "tui") == "plain" and words[-1] == "tui":
        words = words[:-1]  # `strongroom` alone on a terminal opens the TUI
    command = " ".join([SIZED_BY_THE_TERMINAL, *words])
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "36", command],
        check=True,
        env=env,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    terminal = Tmux(session)
    try:
        yield terminal
    finally:
        if terminal.alive():
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def test_the_real_binary_in_tmux(installation: Installation, tmux: Tmux) -> None:
    names = [org.name for org in installation.appliance.organisations()]
    screen = tmux.wait_for(lambda s: "organisations" in s and all(n in s for n in names), "the dashboard")
    assert f"{len(names)} organisations" in screen
    # Type to filter: only the matching organisation stays.
    target, other = names[-1], names[0]
    tmux.text(target.split()[0].lower())
    screen = tmux.wait_for(lambda s: other not in s, "the filter")
    assert target in screen
    # Enter opens it: its backup points are listed with their short ids.
    tmux.keys("Enter")
    points = installation.appliance.points(installation.appliance.organisation(target).org_id)
    screen = tmux.wait_for(lambda s: "Backup points" in s and points[-1].snapshot_id[:8] in s, "the organisation")
    assert all(point.snapshot_id[:8] in screen for point in points)
    # Help, then back, then quit: the session ends with the app.
    tmux.text("?")
    tmux.wait_for(lambda s: "command palette" in s, "the help screen")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Backup points" in s, "the organisation again")
    tmux.keys("C-q")
    deadline = time.monotonic() + SCREEN_WAIT
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tmux.alive(), "the TUI did not quit on ctrl+q"


@pytest.mark.parametrize("tmux", ["plain"], indirect=True)
def test_plain_strongroom_on_a_terminal_opens_the_tui(installation: Installation, tmux: Tmux) -> None:
    names = [org.name for org in installation.appliance.organisations()]
    screen = tmux.wait_for(lambda s: "organisations" in s and all(n in s for n in names), "the dashboard")
    assert "Usage: strongroom" not in screen
    tmux.keys("C-q")
    deadline = time.monotonic() + SCREEN_WAIT
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tmux.alive(), "the TUI did not quit on ctrl+q"


def test_the_interactive_demo_opens_the_tui_on_the_damaged_organisation(tmp_path: Path) -> None:
    """`strongroom demo` (no --headless) on a terminal: a simulated week with a bad onboarding, then the TUI
    opens on the organisation whose damage was detected, its last clean point marked."""
    session = f"strongroom-demo-{uuid.uuid4().hex[:8]}"
    binary = Path(sys.executable).with_name("strongroom")
    command = f"{SIZED_BY_THE_TERMINAL} {binary} demo --orgs 1 --days 3 --data-dir {tmp_path / 'demo'}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "40", command],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    terminal = Tmux(session)
    try:
        deadline = time.monotonic() + 240  # the demo's week runs first (not a timing assertion)
        screen = ""
        while time.monotonic() < deadline and terminal.alive():
            screen = terminal.screen()
            if "Backup points" in screen and "last clean point" in screen:
                break
            time.sleep(0.5)
        assert "Findings (" in screen, screen
        assert "damage found here" in screen
        assert "last clean point" in screen
        terminal.keys("C-q")
    finally:
        if terminal.alive():
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)

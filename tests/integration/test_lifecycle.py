"""A real daemon process under a real NOTIFY_SOCKET: readiness, watchdog, SIGHUP reload, SIGTERM stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.daemon.lifecycle import Lifecycle, StopRequested, serve, stop_signals_raise
from appliance.daemon.notify import Notifier
from appliance.errors import ConfigError, ExitCode

# A tiny daemon on the real skeleton: it counts reloads, reports them as STATUS, and on a stop request
# writes a marker (its "checkpoint") before returning, which the test checks happened.
DAEMON = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from appliance.daemon.lifecycle import Lifecycle, run_daemon
    from appliance.daemon.notify import Notifier

    marker = Path(sys.argv[1])
    reloads = 0

    def on_reload() -> None:
        global reloads
        reloads += 1
        if sys.argv[2] == "fail-reload":
            raise RuntimeError("bad settings")

    async def main(lifecycle: Lifecycle) -> None:
        lifecycle.status("idle")
        while not await lifecycle.sleep(3600):
            pass
        marker.write_text(f"checkpoint after {reloads} reloads")

    sys.exit(run_daemon(main, Notifier.from_environment(unset=True), on_reload=on_reload))
    """
)


class Manager:
    """Plays systemd's part: owns the notify socket and the daemon process."""

    def __init__(self, tmp_path: Path, *, watchdog_usec: int | None = None, mode: str = "ok") -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.settimeout(20)
        self.socket_path = str(tmp_path / "notify.sock")
        self.socket.bind(self.socket_path)
        self.marker = tmp_path / "stopped"
        script = tmp_path / "daemon.py"
        script.write_text(DAEMON)
        env = {**os.environ, "NOTIFY_SOCKET": self.socket_path}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(self.marker), mode], env=env, stderr=subprocess.PIPE, text=True
        )

    def receive(self) -> dict[str, str]:
        data = self.socket.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def wait_for(self, key: str) -> dict[str, str]:
        """The next message carrying `key` (skipping watchdog pings and status lines)."""
        while True:
            message = self.receive()
            if key in message:
                return message

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.socket.close()


StartManager = Callable[..., Manager]


@pytest.fixture
def manager_factory(tmp_path: Path) -> Iterator[StartManager]:
    made: list[Manager] = []

    def start(*, watchdog_usec: int | None = None, mode: str = "ok") -> Manager:
        manager = Manager(tmp_path, watchdog_usec=watchdog_usec, mode=mode)
        made.append(manager)
        return manager

    yield start
    for manager in made:
        manager.close()


def test_ready_reload_and_clean_stop(manager_factory: StartManager) -> None:
    manager = manager_factory()
    assert manager.receive() == {"STATUS": "idle"}
    assert manager.wait_for("READY") == {"READY": "1", "STATUS": "idle"}

    manager.process.send_signal(signal.SIGHUP)
    reloading = manager.wait_for("RELOADING")
    assert reloading["STATUS"] == "reloading settings"
    assert manager.wait_for("READY") == {"READY": "1", "STATUS": "idle"}

    manager.process.send_signal(signal.SIGTERM)
    assert manager.wait_for("STOPPING") == {"STOPPING": "1", "STATUS": "stopping (SIGTERM)"}
    assert manager.process.wait(timeout=20) == 0
    # The main coroutine was allowed to finish its step, after exactly one reload.
    assert manager.marker.read_text() == "checkpoint after 1 reloads"


def test_failed_reload_keeps_running(manager_factory: StartManager) -> None:
    manager = manager_factory(mode="fail-reload")
    manager.wait_for("READY")
    manager.process.send_signal(signal.SIGHUP)
    manager.wait_for("RELOADING")
    assert manager.wait_for("READY")["STATUS"] == "reload failed: bad settings"
    assert manager.process.poll() is None
    manager.process.send_signal(signal.SIGINT)
    manager.wait_for("STOPPING")
    assert manager.process.wait(timeout=20) == 0
    assert manager.marker.exists()


def test_watchdog_pings_when_enabled(manager_factory: StartManager) -> None:
    manager = manager_factory(watchdog_usec=200_000)
    assert manager.wait_for("WATCHDOG") == {"WATCHDOG": "1"}
    manager.wait_for("READY")
    assert manager.wait_for("WATCHDOG") == {"WATCHDOG": "1"}
    manager.process.send_signal(signal.SIGTERM)
    manager.wait_for("STOPPING")
    assert manager.process.wait(timeout=20) == 0


# --- in-process: exit codes and the stop grace ------------------------------------------------


class Recorder(Notifier):
    """A notifier that keeps what it would send (these tests are about serve's decisions)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *assignments: str) -> bool:
        self.sent.append(assignments)
        return True


async def test_an_error_in_main_becomes_its_exit_code() -> None:
    async def main(lifecycle: Lifecycle) -> None:
        raise ConfigError("bad settings")

    notifier = Recorder()
    assert await serve(main, notifier) == ExitCode.USAGE
    assert ("STOPPING=1", "STATUS=stopping") in notifier.sent


async def test_main_ignoring_the_stop_is_cancelled_after_the_grace() -> None:
    cancelled = asyncio.Event()

    async def main(lifecycle: Lifecycle) -> None:
        lifecycle.request_stop()
        try:
            await asyncio.Event().wait()  # never returns by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise

    assert await serve(main, Recorder(), stop_grace=0.05) == ExitCode.OK
    assert cancelled.is_set()


async def test_a_second_stop_request_forces_the_stop() -> None:
    async def main(lifecycle: Lifecycle) -> None:
        lifecycle.request_stop("SIGTERM")
        await asyncio.sleep(0)
        lifecycle.request_stop("SIGTERM")
        await asyncio.Event().wait()

    # The grace is far longer than the test's timeout: only the second request can end it.
    assert await serve(main, Recorder(), stop_grace=3600) == ExitCode.OK


async def test_check_raises_once_stopping() -> None:
    lifecycle = Lifecycle()
    lifecycle.check()
    lifecycle.request_stop("SIGINT")
    with pytest.raises(StopRequested, match="SIGINT"):
        lifecycle.check()
    assert await lifecycle.sleep(3600) is True


def test_sigterm_raises_inside_stop_signals_raise() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StopRequested, match="SIGTERM"), stop_signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is previous

"""The sd_notify client against real unix datagram sockets (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.daemon.notify import Notifier, watchdog_interval


def _receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    name = str(tmp_path / "notify.sock")
    sock.bind(name)
    yield sock, name
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    name = f"strongroom-test-{uuid.uuid4().hex}"
    sock.bind(b"\0" + name.encode())
    yield sock, "@" + name
    sock.close()


def test_every_message_reaches_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, name = path_socket
    with Notifier.from_environment({"NOTIFY_SOCKET": name}) as notifier:
        assert notifier.enabled
        assert notifier.ready("started")
        assert _receive(sock) == {"READY": "1", "STATUS": "started"}
        assert notifier.status("3 of 200 organisations\nbacked up")
        assert _receive(sock) == {"STATUS": "3 of 200 organisations backed up"}
        assert notifier.watchdog()
        assert _receive(sock) == {"WATCHDOG": "1"}
        assert notifier.reloading()
        reloading = _receive(sock)
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert notifier.stopping()
        assert _receive(sock) == {"STOPPING": "1"}
        assert notifier.extend_timeout(1.5)
        assert _receive(sock) == {"EXTEND_TIMEOUT_USEC": "1500000"}


def test_abstract_socket_names_start_with_at(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    with Notifier(name) as notifier:
        assert notifier.ready()
        assert _receive(sock) == {"READY": "1"}


def test_no_socket_means_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_a_vanished_manager_is_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.enabled
    assert notifier.ready() is False


def test_assignments_must_be_key_value(path_socket: tuple[socket.socket, str]) -> None:
    _, name = path_socket
    with Notifier(name) as notifier, pytest.raises(ValueError, match="KEY=VALUE"):
        notifier.notify("READY")


def test_unset_removes_the_variables_children_would_inherit(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, name = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier.from_environment(unset=True)
    assert "NOTIFY_SOCKET" not in os.environ
    assert "WATCHDOG_USEC" not in os.environ
    assert notifier.status("still works")
    assert _receive(sock) == {"STATUS": "still works"}
    notifier.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    # Meant for another process (we are a child that inherited the variables).
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_the_watchdog_interval_survives_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@strongroom-test-unused")
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    notifier = Notifier.from_environment(unset=True)
    assert notifier.watchdog_interval == 4.0
    assert watchdog_interval() is None

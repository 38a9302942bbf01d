"""A small, dependency-free sd_notify client for `Type=notify` services.

This module owns the datagrams the daemon sends to the service manager (`READY=1`, `STATUS=`,
`WATCHDOG=1`, `STOPPING=1`, `RELOADING=1`) and reading the watchdog interval systemd gives us.
It must not decide *when* to send them (that is `appliance.daemon.lifecycle`) and must never
make the daemon fail: a service manager that went away is logged and otherwise ignored.

Protocol: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html. `NOTIFY_SOCKET`
names an `AF_UNIX` datagram socket, either a path or, when it starts with `@`, a name in the
abstract namespace (the `@` stands for the leading NUL byte). Each datagram is newline-separated
`KEY=VALUE` assignments. With `NOTIFY_SOCKET` unset (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Variables systemd sets for the main process only; children (restic) must not inherit them, or a
# child could send notifications on our behalf (sd_notify(3), "unset_environment").
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _socket_address(name: str) -> str | bytes | None:
    """The `sendto` address for a `NOTIFY_SOCKET` value, or None when unsupported."""
    if name.startswith("@"):
        # Abstract namespace: Linux wants a leading NUL and no trailing NUL (unix(7)).
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    # systemd 254 added `vsock:` addresses for VMs; an appliance never runs as a VM's PID 1 service.
    return None


class Notifier:
    """Sends state changes to the service manager; a no-op when there is none.

    Build it with `Notifier.from_environment()` at the edge (the daemon's `main`), not at import.
    """

    def __init__(self, socket_name: str | None, watchdog_interval: float | None = None) -> None:
        self.socket_name = socket_name or None
        self.watchdog_interval = watchdog_interval if socket_name else None
        """Seconds within which systemd expects a `watchdog()` ping; None when the watchdog is off."""
        self._address = _socket_address(socket_name) if socket_name else None
        if socket_name and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket address; systemd notifications disabled", socket_name)
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *, unset: bool = False) -> Notifier:
        """A notifier for `$NOTIFY_SOCKET`; with `unset`, also remove the variables from `os.environ`."""
        env = os.environ if environ is None else environ
        # Read before `unset` removes the variables.
        notifier = cls(env.get("NOTIFY_SOCKET"), watchdog_interval(env))
        if unset:
            for name in NOTIFY_VARIABLES:
                os.environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments in one datagram. Returns whether it was sent."""
        if self._address is None or not assignments:
            return False
        for assignment in assignments:
            if "=" not in assignment:
                raise ValueError(f"not a KEY=VALUE assignment: {assignment!r}")
        payload = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(payload, self._address)
        except OSError as error:
            # The manager may be restarting (daemon-reexec); losing one datagram is harmless,
            # crashing the daemon over it is not.
            log.warning("cannot notify the service manager at %s: %s", self.socket_name, error.strerror or error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) finished: systemd now considers the service started."""
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        """A one-line, human status shown by `systemctl status`."""
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        """Keep-alive ping; send at least every `watchdog_interval()` / 2 seconds."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began."""
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))

    def reloading(self, status: str | None = None) -> bool:
        """Reloading began; send `ready()` when done.

        `MONOTONIC_USEC` is required with `RELOADING=1` by `Type=notify-reload` (systemd 253) and
        ignored by older managers, so it is always sent.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        extra = [_status(status)] if status is not None else []
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", *extra)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start, reload or stop (`EXTEND_TIMEOUT_USEC`)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _status(text: str) -> str:
    # One datagram line per assignment: a newline inside STATUS would start a bogus assignment.
    return "STATUS=" + " ".join(text.splitlines())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds systemd expects pings within, or None when not enabled.

    From `WATCHDOG_USEC`; when `WATCHDOG_PID` is set it must be our PID, since the variables are
    meant for the main process only (sd_watchdog_enabled(3)).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1_000_000 if value > 0 else None

"""The daemon's lifecycle: signals, readiness, watchdog, reload and stop.

This module owns turning signals into requests (SIGTERM/SIGINT: stop, SIGHUP: reload) and the
`run_daemon` skeleton that tells systemd what is happening (`READY=1`, `WATCHDOG=1`, `STATUS=`,
`RELOADING=1`, `STOPPING=1`) around the daemon's main coroutine, then returns an exit code. It
must not know what the daemon does (scheduling, jobs, replication are plugged in by the caller)
and it installs signal handlers only when `run_daemon`/`Lifecycle.install` is called, never at
import (the model is waveform80/nobodd: signals become events or exceptions; `main()` returns
the exit code).

Contract with the main coroutine: it runs until `lifecycle.stop_requested` is set, then finishes
its current step cleanly (checkpoint jobs, let restic release its lock) and returns. If it has not
returned `stop_grace` seconds after the stop request, or a second stop signal arrives, it is
cancelled. systemd's `TimeoutStopSec=` must be longer than `stop_grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

from appliance.daemon.notify import Notifier
from appliance.errors import ExitCode, Interrupted, exit_code_for

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS = (signal.SIGHUP,)


class StopRequested(Interrupted):
    """A stop was requested (SIGTERM/SIGINT): raised by `Lifecycle.check` at job checkpoints."""

    def __init__(self, signal_name: str | None = None) -> None:
        super().__init__(f"stop requested{f' by {signal_name}' if signal_name else ''}")
        self.signal_name = signal_name


class Lifecycle:
    """Stop and reload requests as asyncio events, plus a way to report status.

    Handlers call `request_stop`/`request_reload`; the daemon's code awaits the events or calls
    `check()` between steps. Create it inside the running event loop (asyncio.Event binds lazily,
    but the signal handlers need the loop).
    """

    def __init__(self, notifier: Notifier | None = None) -> None:
        self.notifier = notifier or Notifier(None)
        self.stop_requested = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.stop_signal: str | None = None
        self.status_text = ""
        self._stop_count = 0
        self._installed: list[signal.Signals] = []
        self._on_force_stop: Callable[[], object] | None = None

    # --- requests ----------------------------------------------------------------------------

    def request_stop(self, signal_name: str | None = None) -> None:
        """Ask the daemon to stop; a second request forces it (cancels the main coroutine)."""
        self._stop_count += 1
        if self._stop_count == 1:
            self.stop_signal = signal_name
            log.info("stop requested%s", f" by {signal_name}" if signal_name else "")
            self.stop_requested.set()
        elif self._on_force_stop is not None:
            log.warning("second stop request%s: cancelling now", f" ({signal_name})" if signal_name else "")
            self._on_force_stop()

    def request_reload(self, signal_name: str | None = None) -> None:
        """Ask the daemon to re-read its settings."""
        log.info("reload requested%s", f" by {signal_name}" if signal_name else "")
        self.reload_requested.set()

    def check(self) -> None:
        """Raise `StopRequested` if a stop was requested: call it between the steps of long work."""
        if self.stop_requested.is_set():
            raise StopRequested(self.stop_signal)

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on a stop request. Returns True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), timeout=seconds)
        return self.stop_requested.is_set()

    # --- reporting ---------------------------------------------------------------------------

    def status(self, text: str) -> None:
        """Set the one-line status `systemctl status` shows (e.g. fleet progress)."""
        self.status_text = text
        self.notifier.status(text)

    def ready(self, status: str | None = None) -> None:
        """Tell systemd startup (or a reload) is complete."""
        if status is not None:
            self.status_text = status
        self.notifier.ready(status)

    # --- signal handlers ---------------------------------------------------------------------

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Route SIGTERM/SIGINT to `request_stop` and SIGHUP to `request_reload` on the running loop."""
        loop = loop or asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.request_stop, signum.name)
            self._installed.append(signum)
        for signum in RELOAD_SIGNALS:
            loop.add_signal_handler(signum, self.request_reload, signum.name)
            self._installed.append(signum)

    def uninstall(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()


MainFactory = Callable[[Lifecycle], Awaitable[object]]
ReloadHook = Callable[[], Awaitable[object] | object]


async def serve(
    main: MainFactory,
    notifier: Notifier,
    *,
    on_reload: ReloadHook | None = None,
    stop_grace: float = 60.0,
    announce_ready: bool = True,
) -> int:
    """Run `main(lifecycle)` as a systemd service inside the running loop; return the exit code.

    `announce_ready=False` leaves `READY=1` to the main coroutine (`lifecycle.ready()`), for a
    daemon whose startup can fail after the loop starts. `on_reload` runs on each SIGHUP between
    `RELOADING=1` and `READY=1`; if it raises, the old settings stay and the daemon keeps running.
    """
    lifecycle = Lifecycle(notifier)
    lifecycle.install()
    task: asyncio.Task[object] = asyncio.ensure_future(main(lifecycle))
    lifecycle._on_force_stop = task.cancel
    helpers = [asyncio.ensure_future(_reloader(lifecycle, on_reload))]
    interval = notifier.watchdog_interval
    if interval is not None:
        # Half the interval, as sd_watchdog_enabled(3) recommends; pinging from the event loop means
        # a blocked loop (the real failure mode of an asyncio daemon) stops the pings.
        helpers.append(asyncio.ensure_future(_watchdog(notifier, interval / 2)))
    # Let the main coroutine run up to its first await, so READY carries the status it set.
    await asyncio.sleep(0)
    if announce_ready and not task.done():
        lifecycle.ready(lifecycle.status_text or "running")
    stopper = asyncio.ensure_future(lifecycle.stop_requested.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        notifier.stopping(f"stopping ({lifecycle.stop_signal})" if lifecycle.stop_signal else "stopping")
        if not task.done():
            _, pending = await asyncio.wait({task}, timeout=stop_grace)
            if pending:
                log.warning("main task still running %.0f s after the stop request: cancelling it", stop_grace)
                task.cancel()
                await asyncio.wait({task})
        return _exit_code(task, lifecycle)
    finally:
        for helper in (*helpers, stopper):
            helper.cancel()
        await asyncio.gather(*helpers, stopper, return_exceptions=True)
        lifecycle.uninstall()


def run_daemon(
    main: MainFactory,
    notifier: Notifier,
    *,
    on_reload: ReloadHook | None = None,
    stop_grace: float = 60.0,
    announce_ready: bool = True,
) -> int:
    """`serve` in a fresh event loop: what the `daemon` command's `main` calls. Returns the exit code."""
    try:
        return asyncio.run(
            serve(main, notifier, on_reload=on_reload, stop_grace=stop_grace, announce_ready=announce_ready)
        )
    finally:
        notifier.close()


def _exit_code(task: asyncio.Task[object], lifecycle: Lifecycle) -> int:
    if task.cancelled():
        # Cancelled because we were told to stop: a clean stop as far as systemd is concerned.
        return int(ExitCode.OK if lifecycle.stop_requested.is_set() else ExitCode.INTERRUPTED)
    error = task.exception()
    if error is None:
        return int(ExitCode.OK)
    if isinstance(error, StopRequested):
        return int(ExitCode.OK)
    log.error("daemon stopped on an error: %s", error, exc_info=error)
    return int(exit_code_for(error))


async def _reloader(lifecycle: Lifecycle, on_reload: ReloadHook | None) -> None:
    while True:
        await lifecycle.reload_requested.wait()
        lifecycle.reload_requested.clear()
        if lifecycle.stop_requested.is_set():
            return
        lifecycle.notifier.reloading("reloading settings")
        status = lifecycle.status_text or "running"
        try:
            if on_reload is not None:
                result = on_reload()
                if inspect.isawaitable(result):
                    await result
        except Exception as error:
            log.error("reload failed, keeping the previous settings: %s", error)
            status = f"reload failed: {error}"
        lifecycle.ready(status)


async def _watchdog(notifier: Notifier, period: float) -> None:
    while True:
        notifier.watchdog()
        await asyncio.sleep(period)


# --- synchronous code (CLI jobs run in-process) ------------------------------------------------


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside the block SIGTERM raises `StopRequested` (SIGINT already raises KeyboardInterrupt).

    For the CLI running a job in-process: the job's own cleanup (`finally`, restic interrupted
    with SIGINT) then runs exactly as on Ctrl-C. Previous handlers are restored on exit.
    """

    def _raise(signum: int, _frame: FrameType | None) -> Any:
        raise StopRequested(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

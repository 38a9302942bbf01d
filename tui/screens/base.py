"""The common base of the TUI's screens: access to the backend, and worker failures shown, never raised.

Every screen does its I/O on workers (`@work(thread=True, exit_on_error=False)`); a worker that fails ends
in `Worker.StateChanged` with an error, which this base turns into a red notification and a line in the
log, so a lost SSH tunnel, a locked repository or a Xero outage never takes the whole UI down.

It must not do I/O itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from appliance.errors import StrongroomError

if TYPE_CHECKING:
    from tui.app import StrongroomApp
    from tui.backend import Backend

log = logging.getLogger(__name__)
ResultType = TypeVar("ResultType")


def describe_error(error: BaseException) -> str:
    """The message a person sees: ours carry a hint; anything else is shown by type and text."""
    if isinstance(error, StrongroomError):
        return f"{error.message}" + (f"\nhint: {error.hint}" if error.hint else "")
    return f"{type(error).__name__}: {error}"


class BaseScreen(Screen[ResultType], Generic[ResultType]):
    @property
    def strongroom(self) -> StrongroomApp:
        from tui.app import StrongroomApp

        assert isinstance(self.app, StrongroomApp)
        return self.app

    @property
    def backend(self) -> Backend:
        return self.strongroom.backend

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.show_error(event.worker.error, what=event.worker.name)

    def show_error(self, error: BaseException, *, what: str = "") -> None:
        log.error("%s failed: %s", what or "a task", error, exc_info=error)
        self.notify(describe_error(error), title=f"{what} failed" if what else "Failed", severity="error", timeout=12)
        self.strongroom.last_error = describe_error(error)

    def now(self) -> float:
        return self.strongroom.backend.clock()

    def run_in_thread(self, function: Any, *args: Any, name: str, group: str = "default", **kwargs: Any) -> Worker[Any]:
        """Run blocking work off the event loop; failures are shown by `on_worker_state_changed`."""
        return self.run_worker(
            lambda: function(*args, **kwargs), name=name, group=group, thread=True, exit_on_error=False
        )

"""Connect: the OAuth consent made obvious over SSH.

Xero sends the browser back to the app's redirect URI on `localhost` (Xero's auth-flow guide:
https://developer.xero.com/documentation/guides/oauth2/auth-flow). Over SSH that `localhost` is the
appliance, so the screen shows both ways to get the code home: the `ssh -L` command that makes the browser's
redirect reach the appliance's loopback listener (which this screen runs on a worker), or a field to paste
the address the browser ended on. Then it lists the organisations the consent covers.

It must not talk to Xero itself: `appliance.fleet.ConnectFlow` does, on workers.
"""

from __future__ import annotations

import os
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Input, Label, Static

from appliance.fleet import ConnectFlow
from appliance.models import Organisation
from tui.screens.base import BaseScreen, describe_error

CONSENT_TIMEOUT = 900.0
"""Seconds the loopback listener waits for the browser (the `connect` CLI's default too)."""


def ssh_destination() -> str:
    """`user@host` for the `ssh -L` hint: who is logged in and where, when SSH tells us."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "you"
    connection = os.environ.get("SSH_CONNECTION", "").split()
    host = connection[2] if len(connection) >= 3 else "this-appliance"
    return f"{user}@{host}"


class ConnectScreen(BaseScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+y", "copy_url", "Copy address"),
    ]

    class Started(Message):
        def __init__(self, flow: ConnectFlow) -> None:
            super().__init__()
            self.flow = flow

    class Connected(Message):
        def __init__(self, organisations: list[Organisation]) -> None:
            super().__init__()
            self.organisations = organisations

    class Failed(Message):
        def __init__(self, error: BaseException) -> None:
            super().__init__()
            self.error = error

    def __init__(self, app_name: str | None = None) -> None:
        super().__init__()
        self.app_name = app_name
        self.flow: ConnectFlow | None = None
        self.organisations: list[Organisation] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="connect-body"):
            yield Label("Connect Xero organisations", classes="screen-title")
            yield Static("Preparing the consent address…", id="connect-step-1")
            yield Static("", id="connect-url")
            yield Static("", id="connect-step-2")
            yield Static("", id="connect-ssh")
            yield Label('Or paste the address the browser ended on (it may show "can\'t connect"):')
            yield Input(placeholder="http://localhost:…/callback?code=…&state=…", id="connect-paste")
            yield Static("Waiting for consent…", id="connect-status")
            yield Static("", id="connect-found")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Connect"
        self.begin()

    @work(thread=True, exclusive=True, group="connect-begin", exit_on_error=False, name="Starting the consent")
    def begin(self) -> None:
        self.post_message(self.Started(self.backend.begin_connect(self.app_name)))

    def on_connect_screen_started(self, message: Started) -> None:
        flow = self.flow = message.flow
        self.query_one("#connect-step-1", Static).update(
            Text.assemble(
                ("1. ", "bold"),
                "Open this address in a browser, sign in to Xero and choose the "
                "organisations Strongroom should back up:",
            )
        )
        self.query_one("#connect-url", Static).update(Text(flow.url, style="bold underline"))
        self.query_one("#connect-step-2", Static).update(
            Text.assemble(
                ("2. ", "bold"),
                f"If this is an SSH session, run this on your laptop first so the browser's redirect to "
                f"localhost:{flow.port} reaches this appliance:",
            )
        )
        self.query_one("#connect-ssh", Static).update(Text(flow.ssh_command(ssh_destination()), style="bold"))
        self.query_one("#connect-status", Static).update(f"Listening on 127.0.0.1:{flow.port} for the browser…")
        self.listen(flow)

    @work(exclusive=True, group="connect-listen", exit_on_error=False, name="Waiting for the browser")
    async def listen(self, flow: ConnectFlow) -> None:
        try:
            code = await flow.wait_for_callback(CONSENT_TIMEOUT)
        except Exception as error:  # a busy port or a timeout: the paste field still works
            self.post_message(self.Failed(error))
            return
        self.finish(code)

    @on(Input.Submitted, "#connect-paste")
    def pasted(self, event: Input.Submitted) -> None:
        if self.flow is None or not event.value.strip():
            return
        try:
            code = self.flow.code_from_pasted(event.value)
        except Exception as error:
            self.post_message(self.Failed(error))
            return
        self.workers.cancel_group(self, "connect-listen")
        self.finish(code)

    @work(exclusive=True, group="connect-finish", exit_on_error=False, name="Connecting")
    async def finish(self, code: str) -> None:
        assert self.flow is not None
        self.query_one("#connect-status", Static).update("Consent received: reading the organisations…")
        try:
            organisations = await self.flow.complete(code)
        except Exception as error:
            self.post_message(self.Failed(error))
            return
        self.post_message(self.Connected(organisations))

    def on_connect_screen_connected(self, message: Connected) -> None:
        self.organisations = message.organisations
        names = "\n".join(f"  ✔ {org.name}" for org in message.organisations) or "  (none: no organisation chosen)"
        self.query_one("#connect-status", Static).update(
            Text(f"Connected {len(message.organisations)} organisation(s):", style="bold green")
        )
        self.query_one("#connect-found", Static).update(
            names + "\n\nThey are backed up at the next scheduled run; press escape, then ctrl+b to start now."
        )
        self.notify(f"Connected {len(message.organisations)} organisation(s).", title="Connect")

    def on_connect_screen_failed(self, message: Failed) -> None:
        self.query_one("#connect-status", Static).update(
            Text(describe_error(message.error) + "\nYou can still paste the address from the browser.", style="red")
        )

    def action_copy_url(self) -> None:
        if self.flow is not None:
            self.app.copy_to_clipboard(self.flow.url)
            self.notify("Address copied (if your terminal supports OSC 52).", timeout=3)

"""The connect screen against the sandbox's real OAuth flow: the screen shows the consent address and the
`ssh -L` command, its loopback listener receives the browser's redirect, and the organisations the consent
covers are listed; a pasted redirect with the wrong state is refused with a message, not a crash."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.integration.test_backup import Installation
from tests.tui.conftest import wait_for
from tui.app import StrongroomApp
from tui.screens.connect import ConnectScreen


async def test_consent_through_the_loopback_listener(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    app = live_app()
    connected: list[ConnectScreen.Connected] = []

    def hook(message: object) -> None:
        if isinstance(message, ConnectScreen.Connected):
            connected.append(message)

    async with app.run_test(size=(140, 40), message_hook=hook) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.flow, "the consent URL")
        screen = app.screen
        assert isinstance(screen, ConnectScreen)
        assert screen.flow is not None
        url = screen.flow.url
        assert str(screen.query_one("#connect-url").render()) == url
        assert f"ssh -L {screen.flow.port}:127.0.0.1:{screen.flow.port}" in str(
            screen.query_one("#connect-ssh").render()
        )
        await wait_for(pilot, lambda: "Listening" in str(screen.query_one("#connect-status").render()), "listening")
        # Play the person's browser: the sandbox consents automatically and redirects to the loopback listener.
        async with httpx.AsyncClient(follow_redirects=True, trust_env=False, timeout=30) as browser:
            response = await browser.get(url)
        assert response.status_code == 200
        await wait_for(
            pilot, lambda: connected or "error" in str(screen.query_one("#connect-status").render()), "consent"
        )
        names = sorted(org.name for org in connected[0].organisations)
        assert names == sorted(org.name for org in installation.appliance.organisations())
        found = str(screen.query_one("#connect-found").render())
        assert all(name in found for name in names)


async def test_a_pasted_redirect_with_the_wrong_state_is_refused(
    installation: Installation, live_app: Callable[..., StrongroomApp]
) -> None:
    app = live_app()
    async with app.run_test(size=(140, 40)) as pilot:
        app.open_connect()
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen) and app.screen.flow, "the consent URL")
        screen = app.screen
        assert isinstance(screen, ConnectScreen)
        paste = "http://localhost:1/callback?code=abc&state=not-the-one-we-sent"
        screen.query_one("#connect-paste").focus()
        await pilot.press(*paste, "enter")
        status = screen.query_one("#connect-status")
        await wait_for(pilot, lambda: "state does not match" in str(status.render()), "the refusal")
        assert screen.organisations == []
        await pilot.press("escape")
        assert not isinstance(app.screen, ConnectScreen)

"""`strongroom tui`: the terminal UI as a sub-command, plugged in through the `strongroom.commands`
entry-point group (the core CLI never imports the TUI).

It must stay thin: build settings the way every command does, then hand over to `tui.app.run`.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add `tui` to the root CLI (entry point `tui = "tui.cli:register"`)."""

    @app.command()
    def tui(
        ctx: typer.Context,
        org: Annotated[str | None, typer.Option("--org", help="Open this organisation (id or name) first.")] = None,
        light: Annotated[bool, typer.Option("--light", help="Start with the light theme.")] = False,
    ) -> None:
        """Open the terminal UI: every organisation at a glance, points, side by side, connect, restore."""
        from tui.app import run

        run(ctx.obj.settings(), open_org=org, light=light)

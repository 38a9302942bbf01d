"""`strongroom sandbox ...`: run and drive the local Xero-compatible server."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run and drive the local Xero-compatible sandbox.", no_args_is_help=True)

"""`strongroom demo`: the whole product against the built-in sandbox, in about a minute.

It starts a sandbox (a local Xero), writes a Strongroom configuration that points at it, connects through
the real OAuth flow (authorize -> consent -> loopback callback -> token exchange -> /connections), takes a
full backup of every organisation, then plays N business days in the sandbox with an incremental backup
after each, and prints a summary. This module composes the sandbox and the appliance; the appliance itself
never imports the sandbox.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from appliance.backup.run import BackupOutcome
from appliance.service import Appliance
from appliance.settings import SecretRef, Settings, XeroApp, XeroHosts
from appliance.xero.oauth import CallbackReceiver
from sandbox.testing import SandboxServer

err = Console(stderr=True)
TIME_LAPSE = 10
"""How much faster than Xero's per-minute limits the demo's sandbox and client run."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def demo_settings(info: dict[str, Any], data_dir: Path, redirect_uri: str) -> tuple[Settings, str]:
    """Settings that point Strongroom at a running sandbox; also the TOML text for inspection later."""
    secret_file = data_dir / "xero-client-secret"
    _write_private(secret_file, info["client_secret"])
    base = info["base_url"]
    settings = Settings(
        data_dir=data_dir / "strongroom",
        xero=XeroHosts(login_url=base, identity_url=base, api_url=base),
        apps=[
            XeroApp(
                name="sandbox",
                client_id=info["client_id"],
                client_secret=SecretRef(file=secret_file),
                redirect_uri=redirect_uri,
                scopes=info["scope"].split(),
                tier=info.get("tier", "core"),
            )
        ],
    )
    toml = (
        f'data_dir = "{settings.data_dir}"\n\n[xero]\nlogin_url = "{base}"\nidentity_url = "{base}"\n'
        f'api_url = "{base}"\n\n[[apps]]\nname = "sandbox"\nclient_id = "{info["client_id"]}"\n'
        f'redirect_uri = "{redirect_uri}"\nscopes = {info["scope"].split()!r}\ntier = "{info.get("tier", "core")}"\n'
        f'[apps.client_secret]\nfile = "{secret_file}"\n'
    ).replace("'", '"')
    return settings, toml


async def connect_through_browserless_consent(appliance: Appliance) -> list[Any]:
    """The real authorization-code flow; the sandbox's auto-consent plays the person in the browser."""
    app, pending = appliance.begin_connect("sandbox")
    port = int(app.redirect_uri.split(":")[2].split("/")[0])
    async with CallbackReceiver(port) as receiver:
        waiter = asyncio.create_task(receiver.wait(pending.state, 60))
        async with httpx.AsyncClient(follow_redirects=True, trust_env=False, timeout=30) as browser:
            await browser.get(pending.url)
        code = await waiter
    return await appliance.complete_connect(app, pending, code, state=pending.state)


def _repository_bytes(data_dir: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(data_dir / "strongroom" / "repositories"):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def run_demo(
    *,
    orgs: int,
    days: int,
    size: str,
    seed: int,
    data_dir: Path,
    quiet: bool = False,
    damage_day: int | None = None,
    then: Callable[[Settings, str | None], None] | None = None,
) -> dict[str, Any]:
    """Run the demo and return its summary.

    On `damage_day` (default: the day before the last) a connected app's bad onboarding re-imports the last
    three months of one organisation's bills (`sandbox.damage`); the next backup's detection raises a finding.
    `then(settings, org_id)`, if given, runs while the sandbox still serves (the TUI), opened on the damaged
    organisation."""
    started = time.monotonic()
    port = _free_port()
    redirect_uri = f"http://localhost:{port}/callback"
    say = (lambda *_a, **_k: None) if quiet else err.print
    say(
        f"[bold]Strongroom demo[/] in {data_dir}: {orgs} {size} organisation(s), {days} day(s); "
        f"time-lapse: per-minute rate limits x{TIME_LAPSE}"
    )
    with SandboxServer(
        data_dir / "sandbox.db", orgs=orgs, size=size, seed=seed, redirect_uris=(redirect_uri,), auto_consent=True
    ) as sandbox:
        say(f"sandbox (a local Xero) at {sandbox.base_url}")
        # A time-lapse: a business day passes in seconds, so the per-minute limits are scaled by the same
        # idea (Xero's 60 a minute per tenant would make the first full backup of the sandbox's attachments
        # take minutes). Calls are still counted one by one; benchmarks use Xero's real limits.
        sandbox.set_limits(minute=60 * TIME_LAPSE)
        settings, toml = demo_settings(sandbox.info, data_dir, redirect_uri)
        settings.limits.tenant_per_minute = 60 * TIME_LAPSE
        _write_private(data_dir / "strongroom.toml", toml)
        appliance = Appliance.initialise(settings)
        try:
            connected = asyncio.run(connect_through_browserless_consent(appliance))
            say(f"connected through OAuth: {', '.join(o.name for o in connected)}")
            outcomes: list[BackupOutcome] = []

            def backup(label: str, full: bool) -> None:
                results = asyncio.run(appliance.backup(full=full))
                outcomes.extend(results)
                ok = sum(1 for r in results if r.status == "succeeded")
                calls = sum(r.calls for r in results)
                records = sum(r.records for r in results)
                say(f"{label}: {ok}/{len(results)} backed up, {records:,} records read, {calls} API calls")

            findings: list[dict[str, Any]] = []
            victim = connected[-1].org_id if connected else None
            bad_day = damage_day if damage_day is not None else max(1, days - 1)

            def detect() -> None:
                """Every backup ran the damage rules on its new point (`backup.detect_damage`): report new findings."""
                for organisation in appliance.organisations():
                    latest = appliance.state.points.latest(organisation.org_id)
                    if latest is None:
                        continue
                    for finding in appliance.state.findings.list(organisation.org_id):
                        if finding.point_after == latest.snapshot_id:
                            findings.append({"org": organisation.name, "severity": finding.severity})
                            say(f"[red]damage suspected[/] in {organisation.name}: {finding.summary}")

            backup("day 0 full backup", True)
            for day in range(1, days + 1):
                sandbox.advance(1)
                if day == bad_day and victim is not None:
                    staged = sandbox._admin(
                        "POST", "damage", {"kind": "onboarding", "tenant": victim, "months": 3, "limit": 25}
                    )
                    created = len(staged.get("created", []) or [])
                    say(f"day {day}: a connected app's onboarding re-imported {created} bills (the damage)")
                backup(f"day {day} incremental", False)
                detect()
            points = sum(len(appliance.points(o.org_id)) for o in appliance.organisations())
            summary = {
                "data_dir": str(data_dir),
                "config": str(data_dir / "strongroom.toml"),
                "organisations": len(connected),
                "days": days,
                "points": points,
                "runs": len(outcomes),
                "failed_runs": sum(1 for o in outcomes if o.status != "succeeded"),
                "records_read": sum(o.records for o in outcomes),
                "api_calls": sum(o.calls for o in outcomes),
                "bytes_downloaded": sum(o.bytes_downloaded for o in outcomes),
                "full_run_calls": sum(o.calls for o in outcomes if o.mode == "full"),
                "incremental_run_calls": sum(o.calls for o in outcomes if o.mode == "incremental"),
                "repository_bytes": _repository_bytes(data_dir),
                "findings": len(findings),
                "seconds": round(time.monotonic() - started, 1),
            }
        finally:
            appliance.close()
        if then is not None:
            then(settings, victim if findings else None)
    return summary


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        ctx: typer.Context,
        headless: Annotated[bool, typer.Option("--headless", help="No terminal UI: print a summary.")] = False,
        orgs: Annotated[int, typer.Option(help="Sandbox organisations.")] = 3,
        days: Annotated[int, typer.Option(help="Business days to play after the first backup.")] = 7,
        size: Annotated[str, typer.Option(help="small, medium or large.")] = "small",
        seed: Annotated[int, typer.Option(help="Seed for the sandbox's data.")] = 1,
        data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Keep the demo's state here.")] = None,
        json_output: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
    ) -> None:
        """Start a sandbox, connect, back up, play days with incremental backups, and summarise."""
        quiet = json_output or ctx.obj.quiet
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="strongroom-demo-"))
        data_dir = data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

        def open_tui(settings: Settings, org_id: str | None) -> None:
            from tui.app import run as run_tui  # the sandbox may use the TUI; appliance never does

            run_tui(settings, open_org=org_id)

        interactive = not headless and not json_output and sys.stdin.isatty() and sys.stdout.isatty()
        summary = run_demo(
            orgs=orgs,
            days=days,
            size=size,
            seed=seed,
            data_dir=data_dir,
            quiet=quiet,
            then=open_tui if interactive else None,
        )
        if json_output:
            from appliance.cli import print_json

            print_json(summary)
            return
        table = Table("what", "figure", title="Demo summary")
        for key, value in summary.items():
            table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
        Console().print(table)
        if not headless and not interactive:
            err.print("No terminal here, so no terminal UI: this was the headless demo.")
        err.print(
            f"Inspect it: strongroom -c {summary['config']} findings   (or: strongroom -c {summary['config']} tui)"
        )

"""`strongroom sandbox ...`: run and drive the local Xero-compatible server.

This module owns the command line of the sandbox: `serve` (uvicorn in the foreground, `--info`
written once it accepts connections) and thin commands that call a running sandbox's admin API
(`advance`, `truth`, `usage`, `faults`, `create-org`, `reset`, `tier`, `limits`, `damage`). Data goes to
stdout as JSON; diagnostics to stderr. It must not hold sandbox logic of its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn

app = typer.Typer(help="Run and drive the local Xero-compatible sandbox.", no_args_is_help=True)

URL_ENV = "STRONGROOM_SANDBOX_URL"


def _write_info(path: Path, info: dict[str, Any]) -> None:
    # Written atomically: a watcher polling for the file never reads half of it.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one (see --info).")] = 8765,
    state: Annotated[Path, typer.Option(help="SQLite state file, shared by every process using this sandbox.")] = Path(
        "sandbox.db"
    ),
    seed: Annotated[int, typer.Option(help="Seed for generated data and the app's credentials.")] = 1,
    orgs: Annotated[int, typer.Option(help="Organisations to generate on first start.")] = 2,
    size: Annotated[str, typer.Option(help="small (~2,000 records), medium (~50,000), large (~500,000).")] = "small",
    latency_ms: Annotated[int | None, typer.Option("--latency-ms", help="Fixed latency on every API call.")] = None,
    faults: Annotated[str | None, typer.Option(help="Fault SPEC, e.g. 'seed=3,503=0.05,drop=0.01'.")] = None,
    info: Annotated[Path | None, typer.Option("--info", help="Write base URL, app credentials, tenants here.")] = None,
    auto_consent: Annotated[
        bool | None, typer.Option("--auto-consent/--no-auto-consent", help="Skip the consent page.")
    ] = None,
    token_ttl: Annotated[int | None, typer.Option("--token-ttl", help="Access token lifetime, seconds.")] = None,
    tier: Annotated[str | None, typer.Option(help="App tier: starter, core, plus, advanced, enterprise.")] = None,
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Register this redirect URI (repeatable).")
    ] = None,
) -> None:
    """Serve the sandbox in the foreground until interrupted."""
    from sandbox.app import SIZES, SandboxSettings, create_app

    if size not in SIZES:
        raise typer.BadParameter(f"size must be one of {', '.join(SIZES)}", param_hint="--size")
    settings = SandboxSettings(
        seed=seed,
        orgs=orgs,
        size=size,
        latency_ms=latency_ms,
        faults=faults,
        auto_consent=auto_consent,
        token_ttl_s=token_ttl,
        tier=tier,
        redirect_uris=tuple(redirect_uri or ()),
    )
    started = time.monotonic()
    try:
        application = create_app(state, settings)
    except ValueError as error:
        typer.echo(f"sandbox: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"sandbox: state ready in {time.monotonic() - started:.1f}s ({state})", err=True)
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, lifespan="off", log_level="warning"))

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.02)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        base_url = f"http://{shown_host}:{bound_port}"
        application.state.runtime.base_url = base_url
        document = application.state.runtime.info(base_url)
        if info is not None:
            _write_info(info, document)
        typer.echo(f"sandbox: listening on {base_url} (client_id {document['client_id']})", err=True)

    threading.Thread(target=announce, name="sandbox-announce", daemon=True).start()
    server.run()


def _base_url(url: str | None, info: Path | None) -> str:
    if url:
        return url.rstrip("/")
    if info is not None:
        return str(json.loads(info.read_text())["base_url"]).rstrip("/")
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV].rstrip("/")
    raise typer.BadParameter(f"give --url, --info or set {URL_ENV}")


UrlOption = Annotated[str | None, typer.Option("--url", help=f"Sandbox base URL (or ${URL_ENV}).")]
InfoOption = Annotated[Path | None, typer.Option("--info", help="Read the base URL from this --info file.")]


def _call(url: str | None, info: Path | None, method: str, path: str, body: Any = None, **params: str) -> None:
    base = _base_url(url, info)
    try:
        response = httpx.request(method, f"{base}/_sandbox/{path}", json=body, params=params or None, timeout=3600)
    except httpx.HTTPError as error:
        typer.echo(f"sandbox: cannot reach {base}: {error}", err=True)
        raise typer.Exit(4) from error
    if response.status_code >= 400:
        typer.echo(f"sandbox: {response.status_code} {response.text}", err=True)
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(response.json(), indent=2) + "\n")


@app.command()
def advance(
    days: Annotated[int, typer.Argument(help="Business days to play.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed for the churn.")] = None,
    url: UrlOption = None,
    info: InfoOption = None,
) -> None:
    """Let time pass: new documents, payments, edits, voids and deletions."""
    _call(url, info, "POST", "advance", {"days": days, **({"seed": seed} if seed is not None else {})})


@app.command()
def truth(tenant: Annotated[str, typer.Argument()], url: UrlOption = None, info: InfoOption = None) -> None:
    """Ground truth for a tenant: per endpoint record count and content hash."""
    _call(url, info, "GET", "truth", tenant=tenant)


@app.command()
def usage(url: UrlOption = None, info: InfoOption = None) -> None:
    """Calls served and response bytes sent, per tenant."""
    _call(url, info, "GET", "usage")


@app.command("faults")
def faults_command(
    spec: Annotated[str | None, typer.Argument(help="New fault SPEC ('none' clears); omit to show.")] = None,
    url: UrlOption = None,
    info: InfoOption = None,
) -> None:
    """Show or set faults (see docs/sandbox.md for the SPEC format)."""
    if spec is None:
        _call(url, info, "GET", "faults")
    else:
        _call(url, info, "POST", "faults", {"spec": spec})


@app.command("create-org")
def create_org(
    size: Annotated[str, typer.Option(help="empty, small, medium or large.")] = "empty",
    country: Annotated[str, typer.Option(help="AU, NZ, GB, US or CA (empty organisations).")] = "NZ",
    name: Annotated[str | None, typer.Option(help="Name (empty organisations).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (generated organisations).")] = None,
    url: UrlOption = None,
    info: InfoOption = None,
) -> None:
    """Create an organisation, empty or generated; the demo user is connected to it."""
    body: dict[str, Any] = {"size": size, "country": country}
    if name:
        body["name"] = name
    if seed is not None:
        body["seed"] = seed
    _call(url, info, "POST", "orgs", body)


@app.command()
def reset(url: UrlOption = None, info: InfoOption = None) -> None:
    """Wipe the sandbox back to its first start (data, tokens, usage, faults)."""
    _call(url, info, "POST", "reset")


@app.command()
def tier(
    name: Annotated[str | None, typer.Argument(help="starter, core, plus, advanced or enterprise.")] = None,
    url: UrlOption = None,
    info: InfoOption = None,
) -> None:
    """Show or set the registered app's Xero tier (day limit, Journals access)."""
    if name is None:
        _call(url, info, "GET", "tier")
    else:
        _call(url, info, "POST", "tier", {"tier": name})


@app.command("limits")
def limits_command(
    minute: Annotated[int | None, typer.Option(help="Calls per minute per tenant.")] = None,
    day: Annotated[int | None, typer.Option(help="Calls per day per tenant.")] = None,
    concurrent: Annotated[int | None, typer.Option(help="Calls in flight per tenant.")] = None,
    app_minute: Annotated[int | None, typer.Option("--app-minute", help="Calls per minute per app.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only for this tenant.")] = None,
    url: UrlOption = None,
    info: InfoOption = None,
) -> None:
    """Show or override rate limits."""
    values = {"minute": minute, "day": day, "concurrent": concurrent, "app_minute": app_minute}
    body: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    if not body:
        _call(url, info, "GET", "limits")
        return
    if tenant:
        body["tenant"] = tenant
    _call(url, info, "POST", "limits", body)


@app.command("damage")
def damage_command(
    kind: Annotated[str, typer.Argument(help="onboarding, remap, api_update or compromise.")],
    org: Annotated[str, typer.Option("--org", help="Tenant id of the organisation to damage.")],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Scenario option KEY=VALUE (repeatable), e.g. months=3.")
    ] = None,
    url: UrlOption = None,
    info: InfoOption = None,
) -> None:
    """Play an integration-failure scenario through the write API; prints its ground truth."""
    body: dict[str, Any] = {"kind": kind, "tenant": org}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--option")
        try:
            body[key] = json.loads(value)  # numbers and true/false as JSON, anything else as text
        except json.JSONDecodeError:
            body[key] = value
    _call(url, info, "POST", "damage", body)


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox commands on their own (used by `SandboxProcess`); returns the exit code."""
    try:
        # Without standalone mode click returns the code of a `typer.Exit` instead of exiting.
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as done:
        return int(done.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # click usage errors and the like
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return int(error.exit_code)
        raise
    return result if isinstance(result, int) else 0

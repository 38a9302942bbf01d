"""CLI commands for disaster recovery: `keys export` (the recovery kit) and `recover` (rebuild from a region).

Secrets never come through argv: a passphrase is read from a file (`--passphrase-file`) or asked for on the
terminal; an age identity is read from a file. A public age recipient may be given on the command line.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from appliance import logs
from appliance.errors import PartialFailure, UsageError
from appliance.recovery import KitSecret, export_kit, read_kit, recover
from appliance.service import Appliance

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
PassphraseFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="Read the kit's passphrase from this file (else it is asked for)."),
]
err = Console(stderr=True)


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


def _read_secret_file(path: Path, what: str) -> str:
    try:
        value = path.expanduser().read_text(encoding="utf-8").strip()
    except OSError as error:
        raise UsageError(f"cannot read the {what} file {path}: {error.strerror}") from error
    if not value:
        raise UsageError(f"the {what} file {path} is empty")
    logs.register_secret(value)
    return value


def _passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        return _read_secret_file(path, "passphrase")
    if not sys.stdin.isatty():
        raise UsageError("no passphrase", hint="pass --passphrase-file, or run on a terminal to be asked for one")
    first = getpass.getpass("Recovery kit passphrase: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise UsageError("the passphrases differ")
    if len(first) < 12 and confirm:
        raise UsageError("use a passphrase of at least 12 characters: the kit opens every repository")
    logs.register_secret(first)
    return first


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI."""
    keys_app = typer.Typer(help="The installation's keys: export the recovery kit.", no_args_is_help=True)

    @keys_app.command("export")
    def keys_export(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", help="Where to write the kit (mode 0600).")],
        passphrase_file: PassphraseFile = None,
        age_recipient: Annotated[
            str | None, typer.Option("--age-recipient", help="Encrypt to this age public key instead (age1...).")
        ] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Write the recovery kit: repository passwords, organisations and consents, encrypted.

        Keep it away from this machine (a password manager, a safe): with the offsite repositories it is all a
        new machine needs (`strongroom recover`)."""
        secret = (
            KitSecret(recipient=age_recipient)
            if age_recipient
            else KitSecret(passphrase=_passphrase(passphrase_file, confirm=True))
        )
        appliance = Appliance(ctx.obj.settings())
        try:
            summary = export_kit(appliance, out, secret)
        finally:
            appliance.close()
        if json_output:
            _print_json(
                {
                    "path": summary.path,
                    "organisations": summary.organisations,
                    "regions": summary.regions,
                    "sealed_to": summary.sealed_to,
                }
            )
        else:
            regions = ", ".join(f"{name}: {count}" for name, count in sorted(summary.regions.items()))
            typer.echo(f"wrote {summary.path}: {summary.organisations} organisation(s) ({regions})")
            err.print("Keep the kit off this machine; it opens every repository.")

    app.add_typer(keys_app, name="keys")

    @app.command("recover")
    def recover_command(
        ctx: typer.Context,
        region: Annotated[str, typer.Option("--region", help="The region whose offsite repositories to use.")],
        kit: Annotated[Path, typer.Option("--kit", help="The recovery kit file (`strongroom keys export`).")],
        passphrase_file: PassphraseFile = None,
        identity: Annotated[
            Path | None, typer.Option("--identity", help="An age identity file that opens a recipient-sealed kit.")
        ] = None,
        json_output: JsonOption = False,
    ) -> None:
        """Rebuild this installation from a region's offsite repositories and the recovery kit.

        Registers the kit's organisations of that region, copies their points back into local repositories
        and records them, so browsing, diff, export and restore work again. Safe to run again."""
        secret = (
            KitSecret(identity=_read_secret_file(identity, "identity"))
            if identity is not None
            else KitSecret(passphrase=_passphrase(passphrase_file, confirm=False))
        )
        document = read_kit(kit, secret)
        settings = ctx.obj.settings()
        appliance = Appliance.initialise(settings)
        try:
            if sys.stderr.isatty() and not json_output:
                with Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=err,
                    transient=True,
                ) as bar:
                    task = bar.add_task("recovering", total=None)

                    def progress(name: str, done: int, total: int) -> None:
                        bar.update(task, completed=done, total=total, description=name or "done")

                    result = recover(appliance, document, region, progress=progress)
            else:
                result = recover(appliance, document, region)
        finally:
            appliance.close()
        rows = [
            {"org_id": org.org_id, "name": org.name, "status": org.status, "points": org.points, "error": org.error}
            for org in result.organisations
        ]
        if json_output:
            _print_json(
                {
                    "region": result.region,
                    "organisations": rows,
                    "skipped_other_regions": result.skipped_other_regions,
                    "seconds": round(result.seconds, 3),
                }
            )
        else:
            for row in rows:
                detail = row["error"] or f"{row['points']} point(s)"
                typer.echo(f"{row['status']:<10} {row['name']}: {detail}")
            err.print(
                f"{len(rows)} organisation(s) from region {result.region}; "
                f"{result.skipped_other_regions} in other regions left alone. "
                "Their next backups are full ones; reconnect any that need consent (`strongroom connect`)."
            )
        if result.failed:
            raise PartialFailure(f"{len(result.failed)} organisation(s) could not be recovered")

"""The one console script, `strongroom`.

Thin by design: parse arguments, build settings, call a use case, print. Data goes to stdout
(`--json` on every read command, with a `schema_version`); diagnostics go to stderr. Exit codes
come only from `appliance.errors`. Command groups that live outside `appliance` (the sandbox,
the TUI) plug in through the `strongroom.commands` entry-point group, so this package never
imports them.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from appliance import __version__, logs
from appliance import settings as settings_module
from appliance.errors import ExitCode, StrongroomError, exit_code_for

log = logging.getLogger(__name__)
JSON_SCHEMA_VERSION = 1

app = typer.Typer(
    name="strongroom",
    help="Backup and restore appliance for Xero organisations.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class CliState:
    """What the global options decided; commands read it from `ctx.obj`."""

    def __init__(self, config: Path | None, verbose: int, quiet: bool) -> None:
        self.config = config
        self.verbose = verbose
        self.quiet = quiet
        self._settings: settings_module.Settings | None = None

    def settings(self, **overrides: Any) -> settings_module.Settings:
        if self._settings is None or overrides:
            self._settings = settings_module.load(settings_module.config_path(self.config), **overrides)
        return self._settings


def print_json(data: Any) -> None:
    """Write one JSON document to stdout, stamped with the schema version."""
    if isinstance(data, dict):
        data = {"schema_version": JSON_SCHEMA_VERSION, **data}
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Settings file (default: $STRONGROOM_CONFIG).")
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail on stderr.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")] = False,
) -> None:
    logs.setup(verbose, quiet=quiet)
    ctx.obj = CliState(config, verbose, quiet)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command()
def version(
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print Strongroom's version."""
    if json_output:
        print_json({"version": __version__})
    else:
        typer.echo(f"strongroom {__version__}")


# --- config: the settings file ----------------------------------------------------------------

config_app = typer.Typer(help="The settings file: check one, or print the commented example.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="Settings file (default: --config, $STRONGROOM_CONFIG or /etc).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Validate a settings file; problems are printed as FILE:LINE:COLUMN: MESSAGE (exit 2)."""
    from appliance import config_file
    from appliance.errors import ConfigError

    state: CliState = ctx.obj
    path = file or settings_module.config_path(state.config)
    if path is None:
        raise ConfigError("no settings file to check", hint="name one: `strongroom config check FILE`")
    problems = config_file.check(path)
    if json_output:
        print_json({"file": str(path), "ok": not problems, "problems": [vars(p) for p in problems]})
    else:
        for problem in problems:
            typer.echo(f"{path}:{problem.line}:{problem.column}: {problem.message}")
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    if not json_output and not state.quiet:
        typer.echo(f"{path}: ok", err=True)


@config_app.command("example")
def config_example() -> None:
    """Print the example settings file: every setting, commented, with its default."""
    from appliance import config_file

    sys.stdout.write(config_file.render_example())


def _register_core() -> None:
    from appliance import commands, daemon_commands, points_commands

    commands.register(app)
    daemon_commands.register(app)
    points_commands.register(app)
    from appliance import restore_commands

    restore_commands.register(app)
    from appliance import recovery_commands

    recovery_commands.register(app)
    from appliance import integrations_commands

    integrations_commands.register(app)
    from appliance import status_commands

    status_commands.register(app)


_register_core()


def _load_plugins() -> None:
    for entry in entry_points(group="strongroom.commands"):
        try:
            plugin = entry.load()
        except ImportError as error:  # a plugin that cannot import must not break the core CLI
            log.debug("command group %s unavailable: %s", entry.name, error)
            continue
        if isinstance(plugin, typer.Typer):
            app.add_typer(plugin, name=entry.name)
        elif callable(plugin):
            plugin(app)


def _vendored_click() -> tuple[type[BaseException], ...]:
    """The ClickException of typer's vendored click, when this typer has one."""
    try:
        from typer._click import exceptions as vendored  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return ()
    kind = getattr(vendored, "ClickException", None)
    return (kind,) if isinstance(kind, type) else ()


def _opens_the_tui(args: list[str]) -> bool:
    """A person who SSHes in and types `strongroom` (global options allowed) on a terminal gets the terminal UI;
    a script or a pipe gets the help, as before."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()) or "--help" in args:
        return False
    commands = set(getattr(typer.main.get_command(app), "commands", {}))
    return "tui" in commands and not commands.intersection(args)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the process exit code (never raises)."""
    _load_plugins()
    args = list(sys.argv[1:] if argv is None else argv)
    if _opens_the_tui(args):
        args.append("tui")
    try:
        app(args=args, standalone_mode=False)
    except StrongroomError as error:
        typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
        if error.hint:
            typer.echo(f"hint: {error.hint}", err=True)
        return int(error.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except SystemExit as exit_:
        return int(exit_.code or 0) if isinstance(exit_.code, int) else int(ExitCode.FAILURE)
    except Exception as error:  # click's usage errors and anything unexpected
        import click

        # Typer 0.2x carries its own copy of click (`typer._click`): its exceptions are not click's classes.
        if isinstance(error, (click.exceptions.Abort, typer.Abort)):
            return int(ExitCode.INTERRUPTED)
        if isinstance(error, (click.ClickException, *_vendored_click())):
            error.show()  # type: ignore[attr-defined]
            return int(ExitCode.USAGE)
        log.exception("unexpected error")
        return int(exit_code_for(error))
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())

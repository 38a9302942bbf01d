"""CLI for the integrations register: `integrations list|add|remove|suggest`.

The register (per organisation: which apps the client uses, what each does, who reconnects it) feeds the restore
checklist's "reconnect" steps. `suggest` reads a backup point for traces of apps (`appliance.restore.integrations`)
and, with `--apply`, adds them to the register marked as suggested.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from appliance.errors import UsageError
from appliance.fleet import FleetService
from appliance.points.usecases import PointsService
from appliance.restore.integrations import TRACE_ENDPOINTS, Suggestion, suggest, traces_from_records
from appliance.service import Appliance

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
OrgArgument = Annotated[str, typer.Argument(help="Organisation id, id prefix or name.")]
err = Console(stderr=True)


def _print_json(data: Any) -> None:
    from appliance.cli import print_json

    print_json(data)


def suggest_integrations(appliance: Appliance, org_key: str, point: str = "latest") -> list[Suggestion]:
    """Apps a backup point shows traces of, not yet in the organisation's register."""
    organisation = appliance.organisation(org_key)
    with PointsService(appliance).open(organisation.org_id, point) as index:
        present = set(index.endpoints())
        traces = [
            trace
            for endpoint in TRACE_ENDPOINTS
            if endpoint in present
            for trace in traces_from_records(endpoint, index.records(endpoint))
        ]
    return suggest(traces, known=organisation.integrations)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI."""
    group = typer.Typer(help="The integrations register: the apps each client uses (feeds the restore checklist).")

    def _show(org_name: str, entries: list[dict[str, Any]]) -> None:
        table = Table(title=f"Integrations of {org_name}")
        for column in ("name", "kind", "contact", "notes"):
            table.add_column(column)
        for entry in entries:
            table.add_row(*(str(entry.get(column, "")) for column in ("name", "kind", "contact", "notes")))
        Console().print(table)

    @group.command("list")
    def list_command(ctx: typer.Context, org: OrgArgument, json_output: JsonOption = False) -> None:
        """The organisation's integrations register."""
        appliance = Appliance(ctx.obj.settings())
        try:
            organisation = appliance.organisation(org)
        finally:
            appliance.close()
        if json_output:
            _print_json({"org_id": organisation.org_id, "integrations": organisation.integrations})
        else:
            _show(organisation.name, organisation.integrations)

    @group.command("add")
    def add_command(
        ctx: typer.Context,
        org: OrgArgument,
        name: Annotated[str, typer.Argument(help="The app, e.g. Stripe.")],
        kind: Annotated[str, typer.Option(help="payments, payroll, bank feed, ...")] = "",
        contact: Annotated[str, typer.Option(help="Who can reconnect it after a restore.")] = "",
        notes: Annotated[str, typer.Option(help="What a restore needs to know.")] = "",
        json_output: JsonOption = False,
    ) -> None:
        """Add an app to the register (or replace the entry of the same name)."""
        appliance = Appliance(ctx.obj.settings())
        try:
            organisation = appliance.organisation(org)
            entries = [e for e in organisation.integrations if str(e.get("name", "")).lower() != name.lower()]
            entries.append({"name": name, "kind": kind, "contact": contact, "notes": notes})
            updated = FleetService(appliance).set_integrations(organisation.org_id, entries)
        finally:
            appliance.close()
        if json_output:
            _print_json({"org_id": updated.org_id, "integrations": updated.integrations})
        else:
            _show(updated.name, updated.integrations)

    @group.command("remove")
    def remove_command(
        ctx: typer.Context,
        org: OrgArgument,
        name: Annotated[str, typer.Argument(help="The app's name in the register.")],
        json_output: JsonOption = False,
    ) -> None:
        """Remove an app from the register."""
        appliance = Appliance(ctx.obj.settings())
        try:
            organisation = appliance.organisation(org)
            entries = [e for e in organisation.integrations if str(e.get("name", "")).lower() != name.lower()]
            if len(entries) == len(organisation.integrations):
                raise UsageError(f"{name!r} is not in the register of {organisation.name}")
            updated = FleetService(appliance).set_integrations(organisation.org_id, entries)
        finally:
            appliance.close()
        if json_output:
            _print_json({"org_id": updated.org_id, "integrations": updated.integrations})
        else:
            _show(updated.name, updated.integrations)

    @group.command("suggest")
    def suggest_command(
        ctx: typer.Context,
        org: OrgArgument,
        point: Annotated[str, typer.Option(help="The point to read: a snapshot id prefix, `latest`, `latest~N`.")] = (
            "latest"
        ),
        apply: Annotated[bool, typer.Option("--apply", help="Add the suggestions to the register.")] = False,
        json_output: JsonOption = False,
    ) -> None:
        """Apps a backup point shows traces of (clearing accounts, vendor bills, payouts, payroll journals)."""
        appliance = Appliance(ctx.obj.settings())
        try:
            organisation = appliance.organisation(org)
            suggestions = suggest_integrations(appliance, organisation.org_id, point)
            if apply and suggestions:
                FleetService(appliance).set_integrations(
                    organisation.org_id, [*organisation.integrations, *(s.as_entry() for s in suggestions)]
                )
        finally:
            appliance.close()
        rows = [
            {"name": s.name, "kind": s.kind, "score": s.score, "evidence": s.evidence, "applied": apply}
            for s in suggestions
        ]
        if json_output:
            _print_json({"org_id": organisation.org_id, "suggestions": rows})
            return
        if not rows:
            err.print("No traces of known apps in this point.")
            return
        table = Table(title=f"Apps {organisation.name}'s backup shows traces of")
        for column in ("name", "kind", "score", "evidence"):
            table.add_column(column)
        for suggestion in suggestions:
            first = suggestion.evidence[0]
            table.add_row(
                suggestion.name, suggestion.kind, str(suggestion.score), f"{first['source']}: {first['text']}"
            )
        Console().print(table)
        if not apply:
            err.print("Add them with --apply (or one by one with `strongroom integrations add`).")

    app.add_typer(group, name="integrations")

"""CSV export of a backup point: one query result, or the whole point with one CSV per table.

This module owns the export's files and their columns. A whole-point export writes, into a directory:
`<Endpoint>.csv` per endpoint (the index's standard columns `_id`, `_date`, `_status`, `_type`,
`_contact_id`, `_contact_name`, `_number`, `_reference`, `_total`, `_currency`, then every flattened field
under its Xero name), `line_items.csv` (keyed by `_endpoint` and `_parent_id`, the document's id),
`attachments.csv`, `reports/<Name>.json` and `organisation.json` as the backup captured them, `manifest.json`,
and `export.json`: per file the row count and the sums of its money columns in exact cents, which a reader
checks the CSVs against (`verify_export`). Rows stream from SQLite to the file: memory stays bounded whatever
the size of the organisation.

`export_point_encrypted` packs the same files into one tar archive encrypted to an age recipient (streamed
from a private staging directory, which is removed). Not here yet: zip archives and Xero's import templates
(issue 5 "Export"). It must not read restic: attachments' bytes are not exported, only their list.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from appliance.errors import UsageError
from appliance.points import ledger
from appliance.points.index import FIELDS_SUFFIX, PointIndex
from appliance.points.queries import Table

EXPORT_SCHEMA_VERSION = 1
STANDARD = (
    "_id",
    "_date",
    "_status",
    "_type",
    "_contact_id",
    "_contact_name",
    "_number",
    "_reference",
    "_total",
    "_currency",
)
MONEY_COLUMNS = ("_total", "LineAmount", "TaxAmount", "SubTotal", "TotalTax", "AmountDue", "AmountPaid", "Amount")
ProgressCallback = Callable[[str, int, int], None]
FORMATS = ("csv", "xero-import")


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _cents(value: Any) -> int:
    """Cents of a money cell as written or read back (blank or non-numeric: 0), so both sides sum alike."""
    if isinstance(value, bool) or value is None or value == "":
        return 0
    if isinstance(value, int | float):
        return ledger.to_cents(value)
    try:
        return ledger.to_cents(float(value))
    except ValueError:
        return 0


def _write_rows(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """Write one CSV (UTF-8, header row, RFC 4180 quoting); return its row count and money sums."""
    sums = {c: 0 for c in columns if c in MONEY_COLUMNS}
    positions = {c: columns.index(c) for c in sums}
    count = 0
    temporary = path.with_name(f".{path.name}.part")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
            count += 1
            for name, position in positions.items():
                sums[name] += _cents(row[position])
    os.replace(temporary, path)
    return {"rows": count, "sums": {name: ledger.money(cents) for name, cents in sums.items()}}


def export_table(table: Table, path: Path) -> dict[str, Any]:
    """One query result (`queries.run_view`) as a CSV file."""
    return _write_rows(Path(path), table.columns, table.rows)


def export_point(
    index: PointIndex, out: Path, *, types: Sequence[str] | None = None, progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Export the whole point (or the endpoints in `types`) into the directory `out`; returns `export.json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    endpoints = index.endpoints()
    if types:
        unknown = [t for t in types if t not in endpoints]
        if unknown:
            raise UsageError(f"unknown type(s) {', '.join(unknown)}", hint=f"one of: {', '.join(endpoints)}")
        endpoints = list(types)
    files: dict[str, Any] = {}
    steps = len(endpoints) + 2
    for number, endpoint in enumerate(endpoints, start=1):
        view = f"{endpoint}{FIELDS_SUFFIX}"
        fields = [c.name for c in index.db[view].columns if c.name != "_id"]
        columns = [*STANDARD, *fields]
        selected = ", ".join([*(f"t.[{c}]" for c in STANDARD), *(f"f.[{c}]" for c in fields)])
        cursor = index.db.execute(
            f"SELECT {selected} FROM [{endpoint}] t JOIN [{view}] f ON f._id = t._id ORDER BY t._id"
        )
        files[f"{endpoint}.csv"] = _write_rows(out / f"{endpoint}.csv", columns, cursor)
        if progress:
            progress("export", number, steps)
    line_columns = [c.name for c in index.db["line_items"].columns]
    wanted = ", ".join("?" * len(endpoints))
    cursor = index.db.execute(
        f"SELECT * FROM line_items WHERE _endpoint IN ({wanted}) ORDER BY _endpoint, _parent_id, _line_no", endpoints
    )
    files["line_items.csv"] = _write_rows(out / "line_items.csv", line_columns, cursor)
    attachment_columns = [c.name for c in index.db["attachments"].columns]
    cursor = index.db.execute(
        f"SELECT * FROM attachments WHERE endpoint IN ({wanted}) ORDER BY endpoint, record_id, FileName", endpoints
    )
    files["attachments.csv"] = _write_rows(out / "attachments.csv", attachment_columns, cursor)
    if progress:
        progress("export", steps - 1, steps)
    for name, body in index.db.execute("SELECT name, body FROM documents"):
        target = out / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_text(json.dumps(json.loads(body), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    summary = {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "org_id": index.org_id,
        "point": index.snapshot_id,
        "files": files,
    }
    (out / "export.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if progress:
        progress("export", steps, steps)
    return summary


def read_csv_figures(path: Path) -> dict[str, Any]:
    """Row count and money sums of an exported CSV, read back from the file alone."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        sums = {c: 0 for c in header if c in MONEY_COLUMNS}
        positions = {c: header.index(c) for c in sums}
        count = 0
        for row in reader:
            count += 1
            for name, position in positions.items():
                sums[name] += _cents(row[position])
    return {"rows": count, "sums": {name: ledger.money(cents) for name, cents in sums.items()}}


def verify_export(out: Path) -> list[str]:
    """Differences between `export.json` and the CSV files it lists (empty: the export is whole)."""
    summary = json.loads((Path(out) / "export.json").read_text(encoding="utf-8"))
    problems = []
    for name, expected in summary["files"].items():
        actual = read_csv_figures(Path(out) / name)
        if actual != expected:
            problems.append(f"{name}: export.json says {expected}, the file holds {actual}")
    return problems


def export_point_encrypted(
    index: PointIndex,
    out: Path,
    recipient: str,
    *,
    types: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """The whole-point export as one tar archive encrypted to the age `recipient` (`age1...`), at `out`.

    The clear files exist only in a 0700 staging directory beside `out`, removed afterwards; the archive is
    written under a temporary name and renamed, so `out` is either whole or absent."""
    from pyrage import EncryptError, RecipientError, encrypt_file, x25519

    try:
        key = x25519.Recipient.from_str(recipient.strip())
    except (RecipientError, ValueError) as error:
        raise UsageError(f"not an age recipient: {recipient!r}", hint="an X25519 public key: age1...") from error
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        summary = export_point(index, staging / "export", types=types, progress=progress)
        archive = staging / "export.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(staging / "export", arcname=out.name.split(".")[0] or "export")
        temporary = out.with_name(f".{out.name}.part")
        try:
            encrypt_file(str(archive), str(temporary), [key])
        except EncryptError as error:
            raise UsageError(f"age encryption failed: {error}") from error
        os.replace(temporary, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**summary, "archive": str(out), "encrypted_to": recipient.strip()}

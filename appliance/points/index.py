"""Opening a backup point: read its mirror out of restic and build a local SQLite query index, cached.

This module owns the index's schema and its cache. `open_point` streams the snapshot out of restic as a tar
(`restic dump SNAPSHOT /`, faster than restoring a tree of files, see `_build_from_repository`) and builds the
index from the parts it needs (records, reports, organisation, manifest and the attachments' `index.json`;
attachment bytes are skipped and read later by path with `restic dump`). Nothing of the mirror is written to
disk but the index. The index lives at `<cache_dir>/points/<org_id>/<snapshot_id>.db` (directories mode
0700): a snapshot never changes, so an index, once built, is valid for as long as its `INDEX_VERSION`
matches. A build writes a temporary file and renames it into place, so a killed build never leaves a half
index; concurrent openers of one point wait on a file lock and the second one finds the first one's index.
The cache is bounded by a byte budget and evicted least recently opened first (`evict`).

Schema (`sqlite-utils` conventions, one table per endpoint named like the endpoint):

- `<Endpoint>`: `_id` (unique), `_hash` (sha256 of the record's canonical JSON line, as in the manifest),
  `_date`/`_updated` (ISO), `_status`, `_type`, `_contact_id`, `_contact_name`, `_number`, `_reference`,
  `_total`, `_currency`, `_raw` (the canonical JSON);
- `<Endpoint>_fields`: a view with `_id`, every scalar top-level field under its Xero name and every field of
  a nested object as `<Field>_<Sub>` (`Contact_ContactID`), extracted from `_raw` when read;
- `line_items`: line items and manual-journal lines of every document (`_endpoint`, `_parent_id`, `_line_no`,
  `LineItemID`, amounts, `AccountCode`, `AccountID`, `TaxType`, `Tracking` JSON);
- `attachments` (the attachments' `index.json` entries and their path in the snapshot), `documents`
  (`organisation`, `reports/<Name>`, `manifest`), `endpoints` (name, count), `meta`;
- full-text search: `contacts_fts` and `documents_fts` (FTS5: number, reference, contact, line descriptions).

What the documents post (`appliance.points.ledger`) is computed when first asked (`PointIndex.postings`), not
at open time: it parses every money document (2 s for a medium organisation, 25 s for a large one). It is then
kept beside the index, in `<snapshot_id>.postings` (tables `postings`, `totals`: the postings summed per
account and day, which is all the reports read, and `meta`), written whole to a temporary file and renamed
into place, so the next process reads a few thousand totals instead of parsing every document. The file
names the index build and the ledger rules it was computed for; either changing makes it stale.

It must not decide anything about what a person sees (`appliance.points.queries` does), and it talks to restic
only through `Repository`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import sqlite_utils

from appliance.backup.mirror import DATE_FIELDS, INDEX_NAME, MANIFEST_NAME, id_field
from appliance.errors import ResticFailed, StrongroomError
from appliance.points import ledger
from appliance.vault.repository import Repository
from appliance.vault.runner import widen_pipe

log = logging.getLogger(__name__)

INDEX_VERSION = 3
"""Bumped whenever the schema or the flattening changes: older cached indexes are rebuilt."""
DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3
"""Default byte budget of the points cache (all organisations together)."""

DOCUMENT_ENDPOINTS = (
    "Invoices",
    "CreditNotes",
    "BankTransactions",
    "Payments",
    "BatchPayments",
    "ManualJournals",
    "Prepayments",
    "Overpayments",
    "BankTransfers",
    "PurchaseOrders",
    "Quotes",
    "Receipts",
    "ExpenseClaims",
    "RepeatingInvoices",
    "LinkedTransactions",
)
LEDGER_ENDPOINTS = (
    "Invoices",
    "CreditNotes",
    "Payments",
    "BankTransactions",
    "Prepayments",
    "BankTransfers",
    "ManualJournals",
)
_NUMBER_FIELDS = ("InvoiceNumber", "CreditNoteNumber", "PurchaseOrderNumber", "QuoteNumber", "Code", "Name")
_LINE_COLUMNS = (
    "LineItemID",
    "Description",
    "Quantity",
    "UnitAmount",
    "ItemCode",
    "AccountCode",
    "AccountID",
    "TaxType",
    "TaxAmount",
    "LineAmount",
    "DiscountRate",
)
_CONTACT_SEARCH = ("EmailAddress", "FirstName", "LastName", "AccountNumber", "ContactNumber", "TaxNumber")
_STANDARD_COLUMNS = (
    "_id",
    "_hash",
    "_date",
    "_updated",
    "_status",
    "_type",
    "_contact_id",
    "_contact_name",
    "_number",
    "_reference",
    "_total",
    "_currency",
    "_raw",
    "_shard",
)
FIELDS_SUFFIX = "_fields"
"""`<Endpoint>_fields` is the view of an endpoint's records with every field flattened into a column."""
ProgressCallback = Callable[[str, int, int], None]
"""(phase, done, total): phases `restore`, `index`, `ledger`, `search`."""


class PointIndexError(StrongroomError):
    """A backup point could not be opened into an index."""


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; the cache holds an organisation's books
    return path


def index_path(cache_dir: Path, org_id: str, snapshot_id: str) -> Path:
    if not snapshot_id or any(c in snapshot_id for c in "/\\.") or any(c in org_id for c in "/\\"):
        raise PointIndexError(f"invalid point reference {org_id}/{snapshot_id}")
    return Path(cache_dir) / "points" / org_id / f"{snapshot_id}.db"


def postings_path(index: Path) -> Path:
    """Where the postings computed from the index at `index` are kept."""
    return Path(index).with_suffix(POSTINGS_SUFFIX)


POSTINGS_SUFFIX = ".postings"
POSTINGS_FORMAT = 1
"""The layout of the postings file (`_write_postings`); kept files of another layout are computed again."""


# -- the open index ------------------------------------------------------------------------------------------
_OPEN_INDEXES: Counter[Path] = Counter()
"""Indexes open in this process (path -> open connections): eviction passes them by, so detection, which holds
the previous and the new point at once, never loses the first to the second's open."""
_OPEN_LOCK = threading.Lock()


class PointIndex:
    """A read-only connection to one point's index."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        with _OPEN_LOCK:
            _OPEN_INDEXES[self.path] += 1
        self._closed = False
        self.db = sqlite_utils.Database(connection)
        meta = {row["key"]: row["value"] for row in self.db.query("SELECT key, value FROM meta")}
        self.org_id = str(meta.get("org_id", ""))
        self.snapshot_id = str(meta.get("snapshot_id", ""))
        self.version = int(meta.get("index_version", 0))
        self.meta = meta
        self._postings: ledger.Postings | None = None
        self._totals: ledger.Postings | None = None

    def __enter__(self) -> PointIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with _OPEN_LOCK:
                _OPEN_INDEXES[self.path] -= 1
                if _OPEN_INDEXES[self.path] <= 0:
                    del _OPEN_INDEXES[self.path]
        self.db.conn.close()

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.db.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def endpoints(self) -> list[str]:
        """Endpoints with a table in this index (every endpoint the point holds records for)."""
        return [row["name"] for row in self.query("SELECT name FROM endpoints ORDER BY name")]

    def has(self, endpoint: str) -> bool:
        return endpoint in self.endpoints()

    def document(self, name: str) -> dict[str, Any] | None:
        body = self.scalar("SELECT body FROM documents WHERE name = ?", [name])
        return orjson.loads(body) if body else None

    def manifest(self) -> dict[str, Any]:
        return self.document("manifest") or {}

    def records(self, endpoint: str) -> Iterator[dict[str, Any]]:
        """Every record of an endpoint as Xero's JSON (from `_raw`)."""
        if not self.has(endpoint):
            return
        for (raw,) in self.db.execute(f"SELECT _raw FROM [{endpoint}]"):
            yield orjson.loads(raw)

    def hashes(self, endpoint: str) -> dict[str, str]:
        if not self.has(endpoint):
            return {}
        return dict(self.db.execute(f"SELECT _id, _hash FROM [{endpoint}]").fetchall())

    def raw(self, endpoint: str, record_id: str) -> dict[str, Any] | None:
        if not self.has(endpoint):
            return None
        row = self.db.execute(f"SELECT _raw FROM [{endpoint}] WHERE _id = ?", [record_id]).fetchone()
        return orjson.loads(row[0]) if row else None

    def chart(self) -> ledger.Chart:
        return ledger.Chart.from_records(self.records("Accounts"))

    def postings(self) -> ledger.Postings:
        """What the point's documents post: computed on first use (building it at open time would add 2 s to a
        medium organisation's cold open), then kept in memory and beside the index for the next process."""
        if self._postings is None:
            self._postings = _read_postings(postings_path(self.path), self._postings_key(), "postings")
        if self._postings is None:
            documents = {endpoint: list(self.records(endpoint)) for endpoint in LEDGER_ENDPOINTS}
            self._postings = ledger.postings(self.chart(), documents)
            self._totals = ledger.daily_totals(self._postings)
            _write_postings(postings_path(self.path), self._postings_key(), self._postings, self._totals)
        return self._postings

    def ledger_totals(self) -> ledger.Postings:
        """The postings summed per account and day (`ledger.daily_totals`): what every report reads, and read
        back from beside the index without the postings themselves."""
        if self._totals is None:
            self._totals = _read_postings(postings_path(self.path), self._postings_key(), "totals")
        if self._totals is None:
            self._totals = ledger.daily_totals(self.postings())
        return self._totals

    def postings_of(self, endpoint: str, record_id: str) -> list[ledger.Posting]:
        """What one record posts."""
        if self._postings is None:
            kept = _read_postings(
                postings_path(self.path),
                self._postings_key(),
                "postings",
                where=("endpoint = ? AND record_id = ?", (endpoint, record_id)),
            )
            if kept is not None:
                return kept.lines
        return [p for p in self.postings().lines if p.endpoint == endpoint and p.record_id == record_id]

    def _postings_key(self) -> str:
        """What kept postings must have been computed from: this build of this point, these ledger rules."""
        return f"{self.snapshot_id}:{self.meta.get('built_at', '')}:{ledger.RULES_VERSION}:{POSTINGS_FORMAT}"


def _read_postings(
    path: Path, key: str, table: str, *, where: tuple[str, Sequence[Any]] = ("1", ())
) -> ledger.Postings | None:
    """The postings (or totals) kept at `path`, or None when there are none for `key` (absent, stale or
    unreadable)."""
    if not path.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("key") != key:
                return None
            condition, params = where
            rows = connection.execute(
                f"SELECT account_id, day, cents, endpoint, record_id FROM [{table}] WHERE {condition}", params
            )
            lines = list(map(ledger.Posting._make, rows))
        finally:
            connection.close()
        return ledger.Postings(lines, list(orjson.loads(meta.get("warnings") or "[]")))
    except (sqlite3.Error, orjson.JSONDecodeError) as error:
        log.info("kept postings at %s unreadable, computing them again: %s", path, error)
        return None


def _write_postings(path: Path, key: str, postings: ledger.Postings, totals: ledger.Postings) -> None:
    """Keep `postings` at `path` (whole or not at all). Best effort: the cache may be read-only or full, and
    then the next process computes them again."""
    temporary = _scratch_file(path)
    try:
        connection = sqlite3.connect(temporary)
        try:
            connection.execute("PRAGMA journal_mode = OFF")  # a temporary file, renamed into place when complete
            connection.execute("PRAGMA synchronous = OFF")
            with connection:
                connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                for table, kept in (("postings", postings), ("totals", totals)):
                    connection.execute(
                        f"CREATE TABLE {table}"
                        " (account_id TEXT, day TEXT, cents INTEGER, endpoint TEXT, record_id TEXT)"
                    )
                    connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)", kept.lines)
                connection.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("key", key), ("warnings", orjson.dumps(postings.warnings).decode())],
                )
        finally:
            connection.close()
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except (sqlite3.Error, OSError) as error:
        log.warning("could not keep the postings of %s (computed again next time): %s", path.stem, error)
    finally:
        temporary.unlink(missing_ok=True)


# -- opening -------------------------------------------------------------------------------------------------
def _valid(path: Path) -> bool:
    try:
        with PointIndex(path) as index:
            return index.version == INDEX_VERSION
    except sqlite3.Error:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_cached(cache_dir: Path, org_id: str, snapshot_id: str) -> bool:
    path = index_path(cache_dir, org_id, snapshot_id)
    return path.exists() and _valid(path)


def open_point(
    repository: Repository,
    org_id: str,
    snapshot_id: str,
    cache_dir: Path,
    *,
    max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
    progress: ProgressCallback | None = None,
    neighbours: Sequence[str] = (),
) -> PointIndex:
    """The index of one backup point (full snapshot id), built from restic on first use.

    `neighbours`: other points of the organisation, nearest first. When one of them is cached, the index is
    derived from it (`derive_index`: only the files `restic diff` names are read) instead of built from the
    whole point."""
    path = index_path(cache_dir, org_id, snapshot_id)
    if path.exists() and _valid(path):
        os.utime(path)  # least recently opened goes first
        return PointIndex(path)
    _private_dir(Path(cache_dir) / "points")
    _private_dir(path.parent)
    with _locked(path):
        if not (path.exists() and _valid(path)):
            sweep_leftovers(path.parent)
            base = next(
                (
                    candidate
                    for candidate in (
                        index_path(cache_dir, org_id, other) for other in neighbours if other != snapshot_id
                    )
                    if candidate.exists() and _valid(candidate)
                ),
                None,
            )
            if base is None or not derive_index(repository, base, snapshot_id, path, progress=progress):
                _build_from_repository(repository, snapshot_id, path, org_id=org_id, progress=progress)
        os.utime(path)
    evict(cache_dir, max_bytes, keep=(path,))
    return PointIndex(path)


def _build_from_repository(
    repository: Repository, snapshot_id: str, path: Path, *, org_id: str, progress: ProgressCallback | None
) -> None:
    """Stream `restic dump SNAPSHOT /` (a tar) through a pipe into the builder: restic decrypts while Python
    parses, and no file of the mirror is ever written. Measured on the medium sandbox organisation (16,429
    files, 72 MB of JSON): `restic restore` with include patterns 9.8 s plus 1.4 s to read the tree back, `dump`
    3.6 s plus 1.1 s, overlapping here. The dump goes without restic's lock (0.2 s of every locking start);
    should it fail, a prune having moved data meanwhile, the point is read again with the lock."""
    try:
        _stream_point(repository, snapshot_id, path, org_id=org_id, progress=progress, lock=False)
    except ResticFailed as error:
        log.info("reading point %s without restic's lock failed (%s); reading it with the lock", snapshot_id[:8], error)
        _stream_point(repository, snapshot_id, path, org_id=org_id, progress=progress, lock=True)


def _stream_point(
    repository: Repository,
    snapshot_id: str,
    path: Path,
    *,
    org_id: str,
    progress: ProgressCallback | None,
    lock: bool,
) -> None:
    read_end, write_end = os.pipe()
    widen_pipe(read_end)  # see PIPE_BYTES: the copying thread must not be starved by the parsing one
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_end, "wb") as sink:
                repository.dump(snapshot_id, "/", sink, lock=lock)
        except BaseException as error:  # handed to the consumer thread, which raises it
            failure.append(error)

    if progress:
        progress("read", 0, 0)
    producer = threading.Thread(target=produce, name=f"dump-{snapshot_id[:8]}", daemon=True)
    producer.start()
    try:
        with os.fdopen(read_end, "rb") as source:
            try:
                build_index(tar_files(source), path, org_id=org_id, snapshot_id=snapshot_id, progress=progress)
            except (tarfile.TarError, PointIndexError) as error:
                producer.join()
                if failure:
                    raise failure[0] from error
                raise PointIndexError(f"point {snapshot_id[:8]} could not be read: {error}") from error
    finally:
        producer.join()
    if failure:
        raise failure[0]


DERIVE_MAX_SHARE = 0.5
"""Derive from a neighbour only when `restic diff` names under this share of the neighbour's record files;
beyond it, reading the whole point is as cheap."""


def derive_index(
    repository: Repository,
    base: Path,
    snapshot_id: str,
    path: Path,
    *,
    progress: ProgressCallback | None = None,
) -> bool:
    """Build the index of `snapshot_id` at `path` from the cached index `base` of another point of the same
    organisation: `restic diff` names the mirror files that differ, `restic restore` reads only those, and a
    copy of `base` has their old rows replaced. The result equals a full build (tested), at the cost of two
    restic starts and the changed files instead of decrypting every file of the point (medium organisation:
    about 7% of its files change in a day). Returns False, having written nothing, when deriving is not worth
    it (too much changed) or not possible (the neighbour's index is unreadable); errors reading the point
    itself raise as for a full build."""
    try:
        with PointIndex(base) as neighbour:
            base_snapshot = neighbour.snapshot_id
            org_id = neighbour.org_id
            files = sum(
                int(neighbour.scalar(f"SELECT count(DISTINCT _shard) FROM [{e}]")) for e in neighbour.endpoints()
            )
    except sqlite3.Error:
        return False
    if progress:
        progress("read", 0, 0)
    changed: list[str] = []
    removed: list[str] = []
    try:
        changes = repository.diff(base_snapshot, snapshot_id)
    except ResticFailed as error:  # e.g. the neighbour's snapshot was forgotten since its index was cached
        log.info("point %s cannot be derived from %s: %s", snapshot_id[:8], base_snapshot[:8], error)
        return False
    for modifier, changed_path in changes:
        relative = changed_path.lstrip("/")
        if changed_path.endswith("/") or not _wanted(relative):
            continue
        if modifier == "-":
            removed.append(relative)
        elif modifier != "U":  # U: metadata only, same content
            changed.append(relative)
    if files and len(changed) > files * DERIVE_MAX_SHARE:
        log.info("point %s: %d of %d files changed, reading it whole", snapshot_id[:8], len(changed), files)
        return False
    temporary = _scratch_file(path)
    temporary.unlink(missing_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=_scratch_dir_prefix()) as scratch:
            if changed:
                repository.restore(snapshot_id, Path(scratch), include=["/" + relative for relative in changed])
            contents = []
            for relative in changed:
                try:
                    contents.append((relative, (Path(scratch) / relative).read_bytes()))
                except FileNotFoundError as error:
                    raise PointIndexError(f"point {snapshot_id[:8]}: {relative} was not restored") from error
            try:
                shutil.copyfile(base, temporary)
            except FileNotFoundError:  # another process evicted the neighbour meanwhile
                return False
            _apply_changes(temporary, contents, removed, org_id=org_id, snapshot_id=snapshot_id, base=base_snapshot)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    log.debug("point %s derived from %s: %d files read, %d removed", snapshot_id[:8], base_snapshot[:8],
              len(changed), len(removed))  # fmt: skip
    return True


def _apply_changes(
    path: Path,
    changed: list[tuple[str, bytes]],
    removed: list[str],
    *,
    org_id: str,
    snapshot_id: str,
    base: str,
) -> None:
    """Replace, in the copied index at `path`, what the changed and removed mirror files held."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    dates = _Dates()
    existing = {name for (name,) in connection.execute("SELECT name FROM endpoints")}
    shards: dict[str, set[str]] = {}
    attachment_keys: set[tuple[str, str]] = set()
    gone_documents: list[str] = []
    for relative in [*removed, *(relative for relative, _ in changed)]:
        parts = relative.split("/")
        if parts[0] == "records":
            shards.setdefault(parts[1], set()).add(relative.split("/", 2)[2])
        elif parts[0] == "attachments":
            attachment_keys.add((parts[1], parts[-2]))
        elif relative in removed:
            gone_documents.append(_document_name(relative))
    mirror = _MirrorFiles(dates)
    for relative, data in changed:
        mirror.add(relative, data)
    builders, attachment_indexes, documents = mirror.builders, mirror.attachment_indexes, mirror.documents
    with connection:
        for endpoint, names in shards.items():
            if endpoint not in existing:
                continue
            connection.execute("CREATE TEMP TABLE IF NOT EXISTS gone (id TEXT PRIMARY KEY)")
            connection.execute("DELETE FROM gone")
            marks = ", ".join("?" * len(names))
            connection.execute(
                f"INSERT OR IGNORE INTO gone SELECT _id FROM [{endpoint}] WHERE _shard IN ({marks})", sorted(names)
            )
            connection.execute(f"DELETE FROM [{endpoint}] WHERE _shard IN ({marks})", sorted(names))
            connection.execute(
                "DELETE FROM line_items WHERE _endpoint = ? AND _parent_id IN (SELECT id FROM gone)", (endpoint,)
            )
            table = "contacts_fts" if endpoint == "Contacts" else "documents_fts"
            connection.execute(
                f"DELETE FROM {table} WHERE rowid IN"
                f" (SELECT rowid FROM {table} WHERE endpoint = ? AND id IN (SELECT id FROM gone))",
                (endpoint,),
            )
        for endpoint, builder in builders.items():
            if endpoint not in existing:
                builder.write(connection)
                existing.add(endpoint)
            else:
                builder.append(connection)
            builder.write_search(connection)
        for endpoint in shards:
            if endpoint not in existing:
                continue
            count = connection.execute(f"SELECT count(*) FROM [{endpoint}]").fetchone()[0]
            if count == 0 and endpoint not in builders:  # its last shard went: as if the point never had it
                connection.execute(f"DROP VIEW IF EXISTS [{endpoint}{FIELDS_SUFFIX}]")
                connection.execute(f"DROP TABLE [{endpoint}]")
                connection.execute("DELETE FROM endpoints WHERE name = ?", (endpoint,))
                connection.execute("DELETE FROM meta WHERE key = ?", (f"fields:{endpoint}",))
            else:
                connection.execute("INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (endpoint, count))
        for endpoint, record_id in sorted(attachment_keys):
            connection.execute("DELETE FROM attachments WHERE endpoint = ? AND record_id = ?", (endpoint, record_id))
        connection.executemany(
            "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _attachment_rows(attachment_indexes)
        )
        connection.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?)", documents)
        connection.executemany("DELETE FROM documents WHERE name = ?", [(name,) for name in gone_documents])
        connection.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [("org_id", org_id), ("snapshot_id", snapshot_id), ("built_at", str(time.time())), ("derived_from", base)],
        )
    connection.close()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def cached_indexes(cache_dir: Path) -> list[tuple[Path, int, float]]:
    """(path, bytes, last opened) of every cached index, least recently opened first."""
    root = Path(cache_dir) / "points"
    found = []
    for path in root.glob("*/*.db") if root.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            found.append((path, stat.st_size + _file_size(postings_path(path)), stat.st_mtime))
    return sorted(found, key=lambda item: item[2])


def _scratch_file(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, named by the writing process and
    thread, so that two writers never share one and `sweep_leftovers` knows whose it was."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _scratch_dir_prefix() -> str:
    """Prefix of a derivation's scratch directory (`derive_index`), named by the process like a scratch file."""
    return f".derive-{os.getpid()}-"


_SCRATCH = re.compile(r"^\.(?:[^.]+\.(?:db|postings)\.(\d+)(?:\.\d+)?\.tmp|derive-(\d+)-.*)$")
"""The names `_scratch_file` and `_scratch_dir_prefix` give (and, for a file, the thread-less name of earlier
versions): group 1 or 2 is the writing process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_leftovers(folder: Path) -> list[Path]:
    """Remove from one organisation's folder of the cache what killed processes left (scratch indexes,
    postings and derivation directories, none of them counted against the cache's bound) and postings whose
    index is gone. `open_point` sweeps the folder of the organisation it builds for."""
    removed = []
    for entry in Path(folder).glob(".*"):
        match = _SCRATCH.match(entry.name)
        if match is None or _alive(int(match.group(1) or match.group(2))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    for kept in Path(folder).glob(f"*{POSTINGS_SUFFIX}"):
        if not kept.with_suffix(".db").exists():
            kept.unlink(missing_ok=True)
            removed.append(kept)
    if removed:
        log.info("removed %d leftover file(s) of interrupted builds from %s", len(removed), folder)
    return removed


def evict(cache_dir: Path, max_bytes: int, *, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete least recently opened indexes until the cache fits `max_bytes`; never those in `keep` nor those
    open in this process."""
    with _OPEN_LOCK:
        kept = {Path(p) for p in keep} | set(_OPEN_INDEXES)
    entries = cached_indexes(cache_dir)
    total = sum(size for _, size, _ in entries)
    removed = []
    for path, size, _ in entries:
        if total <= max_bytes:
            break
        if path in kept:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
            total -= size
        for companion in (postings_path(path), path.with_suffix(".lock")):
            with contextlib.suppress(FileNotFoundError):
                companion.unlink()
    if removed:
        log.info("evicted %d cached point index(es) to stay under %d bytes", len(removed), max_bytes)
    return removed


# -- building ------------------------------------------------------------------------------------------------
FileSource = Iterable[tuple[str, bytes]]
"""(path relative to the mirror root, file bytes) pairs: a restored tree (`tree_files`) or a tar (`tar_files`)."""


def _wanted(relative: str) -> bool:
    parts = relative.split("/")
    if parts[0] == "records":
        return relative.endswith(".ndjson") and len(parts) >= 3
    if parts[0] == "reports":
        return len(parts) == 2 and relative.endswith(".json")
    if parts[0] == "attachments":
        return parts[-1] == INDEX_NAME
    return len(parts) == 1 and relative.endswith(".json")


def tree_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """The files of a mirror directory the index reads (not the attachments' bytes)."""
    root = Path(root)
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if _wanted(relative):
                yield relative, path.read_bytes()


def tar_files(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """The same from a tar stream (`restic dump SNAPSHOT /`), read once, front to back.

    A small reader of its own instead of `tarfile`: the stdlib parses every field of every header in Python,
    0.5 s of a medium organisation's 16,000-file open (a third of the parsing). This one reads what the index
    needs (name, size, type) from ustar headers with POSIX prefixes, PAX `path`/`size` records and GNU long
    names, checks each header's checksum, and raises `tarfile.ReadError` on anything truncated or damaged.
    The tests compare it with `tarfile` on archives in every format `tarfile` writes."""
    pending: dict[str, str] = {}  # PAX records or a GNU long name for the next member
    while True:
        header = _read_exactly(stream, _BLOCK)
        if header is None or header == _ZERO_BLOCK:
            return  # end of archive (restic ends with two zero blocks; a clean EOF is as good)
        if sum(header) - sum(header[148:156]) + 8 * 32 != _octal(header[148:156]):
            raise tarfile.ReadError("tar header checksum mismatch: the stream is damaged")
        kind = header[156:157]
        size = int(pending.pop("size", None) or _size(header[124:136]))
        if kind in (b"x", b"L"):
            body = _read_member(stream, size, keep=True)
            if kind == b"L":
                pending["path"] = body.rstrip(b"\0").decode("utf-8", "surrogateescape")
            else:
                pending.update(_pax_records(body))
            continue
        if kind in (b"g", b"K"):  # global PAX headers and GNU long link names say nothing the index needs
            _read_member(stream, size, keep=False)
            continue
        name = pending.pop("path", None) or _header_name(header)
        pending.clear()
        relative = name.lstrip("/").removeprefix("./")
        wanted = kind in (b"0", b"\0", b"7") and _wanted(relative)
        data = _read_member(stream, size, keep=wanted)
        if wanted:
            yield relative, data


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """`size` bytes; None at a clean end of the stream; ReadError when it ends part-way."""
    data = stream.read(size)
    if not data:
        return None
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise tarfile.ReadError("the tar stream ended inside a member")
        data += more
    return data


def _read_member(stream: BinaryIO, size: int, *, keep: bool) -> bytes:
    """A member's data (or b"" when not `keep`, read in chunks and dropped), and its padding to a block."""
    padded = -(-size // _BLOCK) * _BLOCK
    if keep:
        data = _read_exactly(stream, padded) if padded else b""
        if data is None:
            raise tarfile.ReadError("the tar stream ended inside a member")
        return data[:size]
    while padded:
        chunk = _read_exactly(stream, min(padded, 1 << 20))
        if chunk is None:
            raise tarfile.ReadError("the tar stream ended inside a member")
        padded -= len(chunk)
    return b""


def _octal(field: bytes) -> int:
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError as error:
        raise tarfile.ReadError(f"a tar header holds a bad number {field!r}") from error


def _size(field: bytes) -> int:
    if field[0] & 0x80:  # base-256, for sizes beyond 8 GiB (GNU and Go's writer)
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    return _octal(field)


def _header_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":  # POSIX ustar: a name over 100 bytes is split into prefix "/" name
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_records(body: bytes) -> dict[str, str]:
    """`path` and `size` of a PAX extended header ("<length> <key>=<value>\\n" records)."""
    found: dict[str, str] = {}
    position = 0
    while position < len(body) and body[position] != 0:
        space = body.find(b" ", position)
        try:
            length = int(body[position:space])
        except ValueError as error:
            raise tarfile.ReadError("a damaged PAX header") from error
        if length <= 0 or space < 0:
            raise tarfile.ReadError("a damaged PAX header")
        key, _, value = body[space + 1 : position + length - 1].partition(b"=")
        if key in (b"path", b"size"):
            found[key.decode()] = value.decode("utf-8", "surrogateescape")
        position += length
    return found


def build_index(
    files: FileSource,
    target: Path,
    *,
    org_id: str,
    snapshot_id: str,
    progress: ProgressCallback | None = None,
) -> None:
    """Build the index of a mirror's files into `target`, atomically (temporary file, then rename)."""
    target = Path(target)
    temporary = _scratch_file(target)
    temporary.unlink(missing_ok=True)
    try:
        _build(files, temporary, org_id=org_id, snapshot_id=snapshot_id, progress=progress)
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _json_path(*keys: str) -> str:
    return "$" + "".join('."' + key.replace('"', '""') + '"' for key in keys)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_DATE_RE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
_DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)


class _Dates:
    """Xero date strings to ISO days and instants, memoised: 50,000 records share a few hundred days."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.day_texts: dict[str, str | None] = {}
        self.clocks: dict[int, str] = {}

    def _ms(self, value: Any) -> int | None:
        if not isinstance(value, str):
            return None
        match = _DATE_RE.match(value)
        return int(match.group(1)) if match else None

    def _iso_day(self, ms: int) -> str:
        number = ms // _DAY_MS
        text = self.days.get(number)
        if text is None:
            text = self.days[number] = (_EPOCH + timedelta(days=number)).isoformat()
        return text

    def day(self, value: Any) -> str | None:
        if type(value) is not str:
            return None
        try:
            return self.day_texts[value]  # most dates are whole days, repeated: a dict hit, not a regex
        except KeyError:
            pass
        ms = self._ms(value)
        text = (value[:10] if len(value) >= 10 else None) if ms is None else self._iso_day(ms)
        self.day_texts[value] = text
        return text

    def instant(self, value: Any) -> str | None:
        if type(value) is not str:
            return None
        ms = _fast_ms(value)
        if ms is None:
            ms = self._ms(value)
            if ms is None:
                return value
        seconds = (ms % _DAY_MS) // 1000
        clock = self.clocks.get(seconds)
        if clock is None:
            clock = self.clocks[seconds] = f"T{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}Z"
        return self._iso_day(ms) + clock


def _fast_ms(value: str) -> int | None:
    """The milliseconds of Xero's usual `/Date(1690156800000+0000)/` by slicing (every record has one, and the
    regular expression was a tenth of a medium open); None for any other shape, which `_DATE_RE` then reads."""
    if not value.startswith("/Date(") or not value.endswith(")/"):
        return None
    body = value[6:-2]
    if len(body) > 5 and body[-5] in "+-" and body[-4:].isdigit():
        body = body[:-5]
    return int(body) if body.isdigit() else None


def _first_text(record: dict[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value:
            return value
    return None


class _EndpointBuilder:
    """Rows of one endpoint's table, its line items, and the fields its records hold (for the view)."""

    def __init__(self, endpoint: str, dates: _Dates) -> None:
        self.endpoint = endpoint
        self.id_field = id_field(endpoint)
        self.date_field = DATE_FIELDS.get(endpoint, "Date")
        self.dates = dates
        self.rows: list[tuple[Any, ...]] = []
        self.lines: list[tuple[Any, ...]] = []
        self.search: list[tuple[str, str, str]] = []
        self.scalars: dict[str, None] = {}
        self.nested: dict[str, dict[str, Any]] = {}
        self.line_field = "JournalLines" if endpoint == "ManualJournals" else "LineItems"
        self.has_lines = endpoint in DOCUMENT_ENDPOINTS
        self.shapes: dict[frozenset[str], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        """Key set -> (its keys holding objects, its number fields): records of a type share a few shapes,
        classified once each."""

    def add(self, line: bytes, shard: str = "") -> None:
        record = orjson.loads(line)
        if type(record) is not dict:
            raise PointIndexError(f"{self.endpoint}: a record line is not a JSON object")
        shape = frozenset(record)
        known = self.shapes.get(shape)
        if known is None:
            known = self.shapes[shape] = (
                tuple(k for k, v in record.items() if type(v) is dict),
                tuple(name for name in _NUMBER_FIELDS if name in shape),
            )
            self.scalars.update((k, None) for k, v in record.items() if type(v) not in (dict, list))
        objects, number_fields = known
        for key in objects:
            value = record[key]
            if type(value) is dict:
                self.nested.setdefault(key, {}).update(value)
        if self.endpoint == "Contacts":
            contact: dict[str, Any] = record
        else:
            found = record.get("Contact") or (record.get("Invoice") or record.get("CreditNote") or {}).get("Contact")
            contact = found if type(found) is dict else {}
        total = record.get("Total", record.get("Amount"))
        record_id = str(record.get(self.id_field, ""))
        reference = record.get("Reference")
        currency = record.get("CurrencyCode")
        self.rows.append(
            (
                record_id,
                hashlib.sha256(line).hexdigest(),
                self.dates.day(record.get(self.date_field)),
                self.dates.instant(record.get("UpdatedDateUTC") or record.get("CreatedDateUTC")),
                record.get("Status") or record.get("ContactStatus"),
                record.get("Type") or record.get("PaymentType"),
                contact.get("ContactID"),
                contact.get("Name"),
                _first_text(record, number_fields),
                reference if type(reference) is str else None,
                float(total) if isinstance(total, int | float) and type(total) is not bool else None,
                currency if type(currency) is str else None,
                line.decode(),
                shard,
            )
        )
        if self.endpoint == "Contacts":
            words = " ".join(str(record[k]) for k in _CONTACT_SEARCH if record.get(k))
            self.search.append((self.endpoint, record_id, f"{contact.get('Name') or ''} {words}"))
        if self.has_lines:
            search_words = [self.rows[-1][8], reference, contact.get("Name")]
            for number, item in enumerate(record.get(self.line_field) or (), start=1):
                if type(item) is dict:
                    description = item.get("Description")
                    if type(description) is str:
                        search_words.append(description)
                    tracking = item.get("Tracking")
                    self.lines.append(
                        (
                            self.endpoint,
                            record_id,
                            number,
                            *map(item.get, _LINE_COLUMNS),
                            orjson.dumps(tracking).decode() if tracking else None,
                        )
                    )
            self.search.append((self.endpoint, record_id, " ".join(map(str, filter(None, search_words)))))

    def fields(self) -> dict[str, Any]:
        """The field names this builder saw (kept in `meta` so a derived index can extend the view)."""
        return {"scalars": sorted(self.scalars), "nested": {k: sorted(v) for k, v in sorted(self.nested.items())}}

    def merge_fields(self, fields: dict[str, Any]) -> None:
        self.scalars.update((k, None) for k in fields.get("scalars", ()))
        for key, subs in (fields.get("nested") or {}).items():
            self.nested.setdefault(key, {}).update((sub, None) for sub in subs)

    def write(self, connection: sqlite3.Connection) -> None:
        endpoint = self.endpoint
        connection.execute(f"CREATE TABLE [{endpoint}] ({', '.join(_STANDARD_COLUMNS)})")
        marks = ", ".join("?" * len(_STANDARD_COLUMNS))
        connection.executemany(f"INSERT INTO [{endpoint}] VALUES ({marks})", self.rows)
        # A unique index built after the rows go in is a sorted bulk build; a primary key on random GUIDs
        # would insert into a B-tree page by page (measured: a second of a medium organisation's open).
        # The mirror already refuses an id in two shards, so a duplicate here is a damaged point.
        try:
            connection.execute(f"CREATE UNIQUE INDEX [{endpoint}_id] ON [{endpoint}](_id)")
        except sqlite3.IntegrityError as error:
            raise PointIndexError(f"{endpoint}: a record id appears twice in the point") from error
        for column in ("_date", "_status", "_contact_id", "_number", "_shard"):
            connection.execute(f"CREATE INDEX [{endpoint}{column}] ON [{endpoint}]({column})")
        self.write_lines(connection)
        connection.execute("INSERT INTO endpoints VALUES (?, ?)", (endpoint, len(self.rows)))
        self.write_view(connection)

    def append(self, connection: sqlite3.Connection) -> None:
        """Add the rows to the endpoint's existing table (a derived index, or files of an endpoint that come
        after its table was written), and widen its view by the fields these rows bring."""
        endpoint = self.endpoint
        marks = ", ".join("?" * len(_STANDARD_COLUMNS))
        try:
            connection.executemany(f"INSERT INTO [{endpoint}] VALUES ({marks})", self.rows)
        except sqlite3.IntegrityError as error:
            raise PointIndexError(f"{endpoint}: a record id appears twice in the point") from error
        self.write_lines(connection)
        fields = connection.execute("SELECT value FROM meta WHERE key = ?", (f"fields:{endpoint}",)).fetchone()
        if fields:
            self.merge_fields(orjson.loads(fields[0]))
        self.write_view(connection)

    def write_search(self, connection: sqlite3.Connection) -> None:
        table = "contacts_fts" if self.endpoint == "Contacts" else "documents_fts"
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", self.search)

    def written(self) -> None:
        """Forget the rows once in the index (memory stays bounded by one endpoint); the fields stay."""
        self.rows, self.lines, self.search = [], [], []

    def write_lines(self, connection: sqlite3.Connection) -> None:
        if self.lines:
            marks = ", ".join("?" * (len(_LINE_COLUMNS) + 4))
            connection.executemany(f"INSERT INTO line_items VALUES ({marks})", self.lines)

    def write_view(self, connection: sqlite3.Connection) -> None:
        endpoint = self.endpoint
        connection.execute(f"DROP VIEW IF EXISTS [{endpoint}{FIELDS_SUFFIX}]")
        connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"fields:{endpoint}", _dumps(self.fields())))
        # The flattened fields are a view: json_extract runs when a query reads them, so opening a point does
        # not pay for the hundred columns nobody looks at (measured: 2 s of a medium organisation's open).
        columns = ["_id"]
        taken = {"_id"}
        for key in sorted(self.scalars):
            if key.lower() not in taken:
                taken.add(key.lower())
                columns.append(f"json_extract(_raw, {_quote(_json_path(key))}) AS [{key}]")
        for key in sorted(self.nested):
            for sub in sorted(self.nested[key]):
                name = f"{key}_{sub}"
                if name.lower() not in taken:  # SQLite column names are case-insensitive
                    taken.add(name.lower())
                    columns.append(f"json_extract(_raw, {_quote(_json_path(key, sub))}) AS [{name}]")
        connection.execute(f"CREATE VIEW [{endpoint}{FIELDS_SUFFIX}] AS SELECT {', '.join(columns)} FROM [{endpoint}]")


def _build(files: FileSource, path: Path, *, org_id: str, snapshot_id: str, progress: ProgressCallback | None) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = OFF")  # a temporary file, renamed into place only when complete
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("PRAGMA cache_size = -65536")  # 64 MiB: index creation sorts in memory
    mirror = _MirrorFiles(_Dates())
    with connection:
        _create_schema(connection)
        # restic's tar lists paths in order, so an endpoint's shards come together: its table is written when
        # the next endpoint starts, while restic still decrypts the rest (the parser would otherwise wait for
        # it), and its rows leave memory. An endpoint met again later (another source's order) is appended.
        # (A writer thread beside the parser was measured slower: 2.90 s against 2.73 s, the GIL shared.)
        tables: set[str] = set()
        current: str | None = None
        for relative, data in files:
            parts = relative.split("/")
            endpoint = parts[1] if parts[0] == "records" else None
            if current is not None and endpoint != current:
                _write_endpoint(connection, mirror.builders[current], tables)
                if progress:
                    progress("index", len(tables), 0)
            current = endpoint
            if mirror.add(relative, data) and progress and mirror.records % 5000 < 200:
                progress("read", mirror.records, 0)
        if current is not None:
            _write_endpoint(connection, mirror.builders[current], tables)
        if not any(name == "manifest" for name, _ in mirror.documents):
            raise PointIndexError(f"point {snapshot_id[:8]} holds no manifest.json: not a Strongroom mirror")
        connection.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?)", mirror.documents)
        connection.execute("CREATE INDEX line_items_parent ON line_items(_endpoint, _parent_id)")
        connection.execute("CREATE INDEX line_items_account ON line_items(AccountCode)")
        _build_attachments(connection, mirror.attachment_indexes)
        if progress:
            progress("search", 1, 1)
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("index_version", str(INDEX_VERSION)),
                ("org_id", org_id),
                ("snapshot_id", snapshot_id),
                ("built_at", str(time.time())),
            ],
        )
    connection.close()


def _create_schema(connection: sqlite3.Connection) -> None:
    """The tables every index has, before any endpoint's."""
    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    connection.execute("CREATE TABLE documents (name TEXT PRIMARY KEY, body TEXT)")
    connection.execute("CREATE TABLE endpoints (name TEXT PRIMARY KEY, count INTEGER)")
    connection.execute(
        "CREATE TABLE line_items (_endpoint TEXT, _parent_id TEXT, _line_no INTEGER, "
        + ", ".join(_LINE_COLUMNS)
        + ", Tracking TEXT)"
    )
    connection.execute("CREATE VIRTUAL TABLE contacts_fts USING fts5(endpoint UNINDEXED, id UNINDEXED, text)")
    connection.execute("CREATE VIRTUAL TABLE documents_fts USING fts5(endpoint UNINDEXED, id UNINDEXED, text)")


def _write_endpoint(connection: sqlite3.Connection, builder: _EndpointBuilder, tables: set[str]) -> None:
    """Put what `builder` holds into the index: a new table with its indexes, or rows appended to one."""
    if builder.endpoint in tables:
        builder.append(connection)
        count = connection.execute(f"SELECT count(*) FROM [{builder.endpoint}]").fetchone()[0]
        connection.execute("INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (builder.endpoint, count))
    else:
        builder.write(connection)
        tables.add(builder.endpoint)
    builder.write_search(connection)
    builder.written()


def _document_name(relative: str) -> str:
    """`documents` row name of a top-level or report file: `manifest`, `organisation`, `reports/<Name>`."""
    return "manifest" if relative == MANIFEST_NAME else relative.removesuffix(".json")


class _MirrorFiles:
    """A mirror's files sorted for the index (a full build and a derived one read them alike): records into
    one builder per endpoint, attachments' `index.json` files, and the documents."""

    def __init__(self, dates: _Dates) -> None:
        self.dates = dates
        self.builders: dict[str, _EndpointBuilder] = {}
        self.attachment_indexes: list[tuple[str, bytes]] = []
        self.documents: list[tuple[str, str]] = []
        self.records = 0

    def add(self, relative: str, data: bytes) -> int:
        """Take one file (`_wanted` paths only); returns the records it held."""
        parts = relative.split("/")
        if parts[0] == "records":
            builder = self.builders.get(parts[1])
            if builder is None:
                builder = self.builders[parts[1]] = _EndpointBuilder(parts[1], self.dates)
            added = _add_shard(builder, relative, data)
            self.records += added
            return added
        if parts[0] == "attachments":
            self.attachment_indexes.append((relative, data))
        else:
            self.documents.append((_document_name(relative), data.decode()))
        return 0


def _add_shard(builder: _EndpointBuilder, relative: str, data: bytes) -> int:
    """Add one shard file's records (`records/<Endpoint>/<shard>.ndjson`); returns how many."""
    shard = relative.split("/", 2)[2]
    added = 0
    # Split on b"\n" only: canonical JSON escapes newlines, but U+2028 inside strings is no line end.
    for line in data.split(b"\n"):
        if line:
            builder.add(line, shard)
            added += 1
    return added


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _build_attachments(connection: sqlite3.Connection, indexes: list[tuple[str, bytes]]) -> None:
    connection.execute(
        "CREATE TABLE attachments (endpoint TEXT, record_id TEXT, AttachmentID TEXT, FileName TEXT, MimeType TEXT,"
        " ContentLength INTEGER, file TEXT, sha256 TEXT, size INTEGER, snapshot_path TEXT)"
    )
    connection.executemany("INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _attachment_rows(indexes))
    connection.execute("CREATE INDEX attachments_record ON attachments(endpoint, record_id)")


def _attachment_rows(indexes: list[tuple[str, bytes]]) -> list[tuple[Any, ...]]:
    rows = []
    for relative, data in indexes:
        parts = relative.split("/")
        directory = "/".join(parts[:-1])
        for entry in orjson.loads(data):
            rows.append(
                (
                    parts[1],
                    parts[-2],
                    entry.get("AttachmentID"),
                    entry.get("FileName"),
                    entry.get("MimeType"),
                    entry.get("ContentLength"),
                    entry.get("file"),
                    entry.get("sha256"),
                    entry.get("size"),
                    f"/{directory}/{entry.get('file')}",
                )
            )
    return rows

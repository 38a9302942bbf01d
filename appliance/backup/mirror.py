"""The canonical on-disk mirror of one Xero organisation: the directory restic backs up.

This module owns the mirror's layout, its crash-safe rebuild and its read side. Layout, under a path that
never changes for an organisation (restic picks the parent snapshot and groups `forget` by host and path,
`../shared/research/restic.md` §1.4)::

    <root>/<org_id>/current/
        records/<Endpoint>/<YYYY-MM>/<xx>.ndjson  dated types: document month, then 2 hex digits of the id
        records/<Endpoint>/<xx>.ndjson            undated types: 2 hex digits of the id
                                                  (one record per line, canonical JSON, lines in id order)
        attachments/<Endpoint>/<record_id>/<safe file name>
        attachments/<Endpoint>/<record_id>/index.json   safe name -> Xero FileName, AttachmentID, sha256, ...
        reports/<Name>.json
        organisation.json
        manifest.json

Why shards: restic splits files into content-defined chunks of about 1 MiB and does not split files under
512 KiB, so a changed record costs the whole chunk (or small file) it lives in, plus the tree blob of its
directory (about 350 bytes per entry before compression). Shards by document month put the day's edits,
which land mostly on recent documents, into a few files; undated types shard by id prefix.
`bench/mirror_layout.py` measured the candidates (`LAYOUTS`) on sandbox churn with real restic; the figures
and the choice are in `docs/BENCHMARKS.md` ("Mirror layout").

Crash safety: changed files are staged in `<root>/<org_id>/next` and published by `commit` in one of two
ways (`MirrorWriter`, `publish`): "exchange" completes `next` with hard links and swaps it with `current`
atomically (`renameat2(RENAME_EXCHANGE)`); "journal" makes a commit journal durable and then renames the
staged files into `current`, rolled forward by `recover()` after a crash. Either way a killed run leaves a
`current` that is, or is recovered into, a complete mirror (old or new), and the next `begin` cleans up.
The files of `current` are never written in place: a change is a new file renamed over the old name.

It must not talk to Xero or restic, and it decides nothing about what to read: callers pass records in.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from appliance.backup.manifest import (
    ATTACHMENTS_KEY,
    build_manifest,
    canonical_json,
    endpoint_hash,
    line_hash,
    truth_from_manifest,
)
from appliance.errors import OrganisationLocked, StrongroomError
from appliance.files import fsync_dir

log = logging.getLogger(__name__)

# The id field of each endpoint's records. appliance/xero/catalogue.py holds the same knowledge for reading;
# this copy keeps the mirror independent until the two are unified.
ID_FIELDS: dict[str, str] = {
    "Accounts": "AccountID",
    "BankTransactions": "BankTransactionID",
    "BankTransfers": "BankTransferID",
    "BatchPayments": "BatchPaymentID",
    "BrandingThemes": "BrandingThemeID",
    "Budgets": "BudgetID",
    "ContactGroups": "ContactGroupID",
    "Contacts": "ContactID",
    "CreditNotes": "CreditNoteID",
    "Currencies": "Code",
    "Employees": "EmployeeID",
    "ExpenseClaims": "ExpenseClaimID",
    "Invoices": "InvoiceID",
    "Items": "ItemID",
    "Journals": "JournalID",
    "LinkedTransactions": "LinkedTransactionID",
    "ManualJournals": "ManualJournalID",
    "Overpayments": "OverpaymentID",
    "Payments": "PaymentID",
    "Prepayments": "PrepaymentID",
    "PurchaseOrders": "PurchaseOrderID",
    "Quotes": "QuoteID",
    "Receipts": "ReceiptID",
    "RepeatingInvoices": "RepeatingInvoiceID",
    "TaxRates": "TaxType",
    "TrackingCategories": "TrackingCategoryID",
    "Users": "UserID",
}

# Dated document types and the field holding the document date (Xero's `/Date(ms+0000)/` form). Accounting
# edits land mostly on recent documents, so these shard by document month; everything else by id prefix.
DATE_FIELDS: dict[str, str] = {
    "BankTransactions": "Date",
    "BankTransfers": "Date",
    "BatchPayments": "Date",
    "CreditNotes": "Date",
    "ExpenseClaims": "ReportingDate",
    "Invoices": "Date",
    "Journals": "JournalDate",
    "ManualJournals": "Date",
    "Overpayments": "Date",
    "Payments": "Date",
    "Prepayments": "Date",
    "PurchaseOrders": "Date",
    "Quotes": "Date",
    "Receipts": "Date",
}

LAYOUT_VERSION = 1
INDEX_NAME = "index.json"
MANIFEST_NAME = "manifest.json"
_SHARD_SUFFIX = ".ndjson"
_ENDPOINT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_DOCUMENT_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_XERO_DATE_RE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
_ISO_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})")
_HEX_RE = re.compile(r"^[0-9a-f]+$")


class MirrorError(StrongroomError):
    """The mirror could not be written or read (bad input, a damaged file, a full disk)."""


def id_field(endpoint: str) -> str:
    """The id field of `endpoint`'s records: the table above, else Xero's convention `<Singular>ID`."""
    if endpoint in ID_FIELDS:
        return ID_FIELDS[endpoint]
    return (endpoint[:-1] if endpoint.endswith("s") else endpoint) + "ID"


def _check_endpoint(endpoint: str) -> None:
    if not _ENDPOINT_RE.match(endpoint):
        raise MirrorError(f"not an endpoint name: {endpoint!r}")


def _check_record_id(record_id: object, endpoint: str) -> str:
    # Record ids become file and directory names (attachments) and tab-separated keys (the ops journal).
    if (
        not isinstance(record_id, str)
        or not record_id
        or record_id.startswith(".")
        or len(record_id) > 200
        or any(c in record_id for c in "/\\\t\n\r\0")
    ):
        raise MirrorError(f"{endpoint}: unusable record id {record_id!r}")
    return record_id


def _month_of(value: object) -> str | None:
    """`YYYY-MM` (UTC) of a Xero date: `/Date(1539993600000+0000)/` or an ISO string; None if absent."""
    if not isinstance(value, str):
        return None
    match = _XERO_DATE_RE.match(value)
    if match:
        # The milliseconds are the UTC instant; the offset only says how Xero would display it.
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC).strftime("%Y-%m")
    match = _ISO_MONTH_RE.match(value)
    return f"{match.group(1)}-{match.group(2)}" if match else None


def _id_prefix(record_id: str, chars: int) -> str:
    """The first `chars` hex digits of a GUID, or of the sha256 of an id that is not one (TaxType, Code)."""
    head = record_id[:chars].lower()
    if len(head) == chars and _HEX_RE.match(head):
        return head
    return hashlib.sha256(record_id.encode()).hexdigest()[:chars]


@dataclass(frozen=True)
class Layout:
    """How records are split into shard files: by document month or year for dated types, by id prefix."""

    name: str
    dated: str
    """"none", "year" or "month": how dated endpoints (`DATE_FIELDS`) shard."""
    prefix_chars: int
    """Characters of the id (hex GUIDs; a sha256 of other ids) naming undated shards; 0 = one shard."""
    attachment_prefix_chars: int = 0
    """0: `attachments/<Endpoint>/<record_id>/`; n: `attachments/<Endpoint>/<n id chars>/<record_id>/`."""
    dated_split_chars: int = 0
    """0: one file per period (`2025-03.ndjson`); n: a directory per period split by id (`2025-03/a.ndjson`)."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": LAYOUT_VERSION,
            "dated": self.dated,
            "prefix_chars": self.prefix_chars,
            "attachment_prefix_chars": self.attachment_prefix_chars,
            "dated_split_chars": self.dated_split_chars,
        }

    def attachment_dir(self, endpoint: str, record_id: str) -> str:
        """The directory of a record's attachments, relative to the mirror."""
        if self.attachment_prefix_chars == 0:
            return f"attachments/{endpoint}/{record_id}"
        return f"attachments/{endpoint}/{_id_prefix(record_id, self.attachment_prefix_chars)}/{record_id}"

    def shards_by_date(self, endpoint: str) -> bool:
        """Whether a record's shard depends on its content (date), not only on its id."""
        return self.dated != "none" and endpoint in DATE_FIELDS

    def id_shard(self, record_id: str) -> str:
        return _id_prefix(record_id, self.prefix_chars) if self.prefix_chars else "all"

    def shard(self, endpoint: str, record_id: str, record: dict[str, Any]) -> str:
        if self.shards_by_date(endpoint):
            month = _month_of(record.get(DATE_FIELDS[endpoint]))
            period = "undated" if month is None else month[:4] if self.dated == "year" else month
            if self.dated_split_chars:
                return f"{period}/{_id_prefix(record_id, self.dated_split_chars)}"
            return period
        return self.id_shard(record_id)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("single", dated="none", prefix_chars=0),
        Layout("prefix1", dated="none", prefix_chars=1),
        Layout("prefix2", dated="none", prefix_chars=2),
        Layout("year-p1", dated="year", prefix_chars=1),
        Layout("month-p0", dated="month", prefix_chars=0),
        Layout("month-p1", dated="month", prefix_chars=1),
        Layout("month-p2", dated="month", prefix_chars=2),
        Layout("month-p1-a2", dated="month", prefix_chars=1, attachment_prefix_chars=2),
        Layout("month16-p2", dated="month", prefix_chars=2, dated_split_chars=1),
        Layout("month256-p2", dated="month", prefix_chars=2, dated_split_chars=2),
    )
}
DEFAULT_LAYOUT = LAYOUTS["month256-p2"]
"""Chosen from the measurements in docs/BENCHMARKS.md ("Mirror layout"): dated records in
`<Endpoint>/<YYYY-MM>/<2 hex digits>.ndjson`, undated in `<Endpoint>/<2 hex digits>.ndjson`."""
DEFAULT_PUBLISH = "journal"
"""Chosen from the same measurements: "exchange" relinks every file, and restic then stores every directory's
tree again at each backup (the relinked inodes' ctime changed), 25-60 % more growth a day."""


def safe_file_name(file_name: str, attachment_id: str, taken: set[str]) -> str:
    """A portable file name for an attachment (ASCII letters, digits, `._-`), unique case-insensitively
    within its record directory. Xero rejects `< > : " / \\ | ? * NUL` in names but allows nearly anything
    else (https://developer.xero.com/documentation/api/accounting/attachments), so names are not trusted."""
    decomposed = unicodedata.normalize("NFKD", file_name)
    ascii_name = "".join(c for c in decomposed if not unicodedata.combining(c)).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._-") or "attachment"
    stem, dot, extension = cleaned.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, extension = cleaned, ""
    stem = stem[:100]
    suffix = f".{extension}" if extension else ""
    taken_lower = {name.lower() for name in taken} | {INDEX_NAME}
    for candidate in (f"{stem}{suffix}", f"{stem}-{attachment_id[:8]}{suffix}", f"{stem}-{attachment_id}{suffix}"):
        if candidate.lower() not in taken_lower:
            return candidate
    raise MirrorError(f"no unique file name for attachment {attachment_id!r} ({file_name!r})")


def _read_lines(path: Path) -> list[bytes]:
    # Split on b"\n" only: canonical JSON escapes newlines inside strings, but keeps U+2028/U+2029 and other
    # characters that str.splitlines() would treat as line breaks.
    return [line for line in path.read_bytes().split(b"\n") if line]


def _parse(line: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        doc = json.loads(line)  # integers beyond 64 bits, which orjson refuses
    if not isinstance(doc, dict):
        raise MirrorError("a mirror line is not a JSON object")
    return doc


def _line_id(line: bytes, field: str, where: Path) -> str:
    try:
        record_id = _parse(line)[field]
    except (ValueError, KeyError) as error:
        raise MirrorError(f"{where}: damaged line ({error})") from error
    if not isinstance(record_id, str):
        raise MirrorError(f"{where}: {field} is not a string")
    return record_id


def _write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` by writing a sibling temporary file and renaming it over `path`: the old
    inode (possibly shared with `current` through a hard link) is never written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp.{path.name}")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h; renameat2(2) since Linux 3.15, glibc wrapper since 2.28


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two directory entries with renameat2(RENAME_EXCHANGE). False if the platform or the
    file system does not support it (the caller then falls back to two renames)."""
    libc = _libc()
    function = getattr(libc, "renameat2", None) if libc is not None else None
    if function is None:
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first))


def _sync_file_system(path: Path) -> None:
    """Flush every dirty file and directory of the file system holding `path` (syncfs(2)): one call instead
    of an fsync per file and per directory of the new mirror."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = _libc()
        function = getattr(libc, "syncfs", None) if libc is not None else None
        if function is None or function(descriptor) != 0:
            os.sync()
    finally:
        os.close(descriptor)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


_JOURNAL_NAME = "commit.json"
PUBLISH_MODES = ("exchange", "journal")


def _apply_journal(org_dir: Path) -> None:
    """Roll a durable commit journal forward into `current` (idempotent: safe to repeat after a crash)."""
    journal = org_dir / _JOURNAL_NAME
    plan = json.loads(journal.read_bytes())
    current, staged = org_dir / "current", org_dir / "next"
    touched: set[Path] = set()
    for relative in plan["deletes"]:
        path = current / relative
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        touched.add(path.parent)
    for relative in plan["puts"]:  # manifest.json comes last
        source, target = staged / relative, current / relative
        if source.exists():  # else it was moved before a crash
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            touched.add(target.parent)
    for directory in sorted(touched, key=lambda path: len(path.parts), reverse=True):
        while directory != current and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent
    _sync_file_system(current)
    journal.unlink()
    fsync_dir(org_dir)


def recover(root: Path, org_id: str) -> None:
    """Bring `<root>/<org_id>` back to a complete `current` after a crash: finish a commit whose journal is
    durable (journal mode), put `previous` back if the two-rename fallback of exchange mode was cut between
    its renames, then drop the leftovers (`next`, `previous`, `work`)."""
    org_dir = Path(root) / org_id
    current, previous = org_dir / "current", org_dir / "previous"
    if (org_dir / _JOURNAL_NAME).exists():
        _apply_journal(org_dir)
    if not current.exists() and previous.is_dir():
        os.replace(previous, current)
        fsync_dir(org_dir)
    for leftover in (org_dir / "next", previous, org_dir / "work"):
        _remove_tree(leftover)


@dataclass
class _EndpointWork:
    replaced: bool = False
    index: dict[str, str] | None = None
    """record id -> shard, for layouts where a record's shard depends on its date (built on first use)."""
    touched: set[str] = dataclasses.field(default_factory=set)


class MirrorWriter:
    """Builds the next mirror of one organisation from the current one plus changes, then publishes it.

    Usage: `begin(full=...)`, any number of `upsert`/`replace_endpoint`/`delete`/`put_attachment`/
    `drop_attachments`/`put_document`, then `commit(manifest)` or `abort()`. Record changes are journalled
    to `<org>/work` as they arrive and applied shard by shard at commit, so memory stays bounded by one shard.
    Files whose bytes change are staged in `<org>/next`; files that keep their bytes are never rewritten.

    Publishing (`publish`):
    - "exchange": `next` is completed with hard links to every unchanged file of `current`, flushed, and
      swapped with `current` by one `renameat2(RENAME_EXCHANGE)`: `current` is complete at every instant.
      Cost: each link bumps the inode's ctime, which restic stores in the tree, so every directory's tree
      blob is stored again at every backup (docs/BENCHMARKS.md, "Mirror layout").
    - "journal": the staged files and the list of deletions are flushed, a commit journal is made durable,
      then the changes are renamed into `current`. A crash before the journal leaves `current` untouched; a
      crash after it is rolled forward by `recover()` (run by every `begin`), so a backup, which only ever
      follows a successful `commit`, always sees a complete mirror. Unchanged files keep inode and ctime.

    A full run starts with no records and no documents; attachments are carried over from `current` (a full
    sweep re-reads records, not attachment bytes) and, at commit, those of records that no longer exist in a
    mirrored endpoint are dropped, as are the attachments the caller drops explicitly.
    """

    def __init__(
        self, root: Path, org_id: str, *, layout: Layout = DEFAULT_LAYOUT, publish: str = DEFAULT_PUBLISH
    ) -> None:
        if not _DOCUMENT_PART_RE.match(org_id):
            raise MirrorError(f"not a usable organisation id for a directory name: {org_id!r}")
        if publish not in PUBLISH_MODES:
            raise MirrorError(f"unknown publish mode {publish!r}")
        self.root = Path(root)
        self.org_id = org_id
        self.layout = layout
        self.publish = publish
        self.org_dir = self.root / org_id
        self.current = self.org_dir / "current"
        self.next = self.org_dir / "next"
        self.work = self.org_dir / "work"
        self._lock_handle: BinaryIO | None = None
        self._mode: str | None = None
        self._has_current = False
        self._staged: set[str] = set()
        self._staged_by_dir: dict[str, set[str]] = {}
        """parent directory -> staged files in it, so listing one directory does not scan every staged file."""
        self._deleted: set[str] = set()
        self._endpoints: dict[str, _EndpointWork] = {}
        self._carried_empty: set[str] = set()
        self._attachments: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._ids: dict[str, set[str]] = {}
        self._temporary_counter = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def begin(self, *, full: bool) -> None:
        """Start a new mirror: empty (`full`) or the current one (incremental; full if there is no current
        yet). Leftovers of a crashed run are recovered or removed first."""
        if self._mode is not None:
            raise MirrorError("begin() called twice without commit() or abort()")
        self.org_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            recover(self.root, self.org_id)
            self.next.mkdir()
            self.work.mkdir()
            self._has_current = self.current.is_dir()
            base_manifest = self._current_manifest()
            base_layout = base_manifest.get("layout") or {}
            self._mode = "full" if full or not self._has_current else "incremental"
            if self._has_current and full:
                # Logically empty: every record and document is deleted unless this run writes it again
                # (identical bytes then simply stay, see `_stage`); attachments are carried over.
                self._deleted = {
                    path
                    for path in self._current_files("")
                    if not path.startswith("attachments/") and path != MANIFEST_NAME
                }
            elif self._has_current:
                self._carried_empty = {
                    name for name, entry in base_manifest.get("endpoints", {}).items() if entry.get("count") == 0
                }
                if base_layout != self.layout.describe():
                    self._reshard()
            old_attachment_prefix = int(base_layout.get("attachment_prefix_chars", 0))
            if self._has_current and old_attachment_prefix != self.layout.attachment_prefix_chars:
                self._reshard_attachments(old_attachment_prefix)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Throw the next mirror away; `current` is untouched."""
        _remove_tree(self.next)
        _remove_tree(self.work)
        self._reset()

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Finish the next mirror, write `manifest.json` (caller's fields plus counts and hashes), flush it to
        disk and publish it as `current`. Returns the path of `current`."""
        self._require_begun()
        assert self._mode is not None
        try:
            endpoint_figures = self._finish_records()
            attachment_figures = self._finish_attachments(endpoint_figures)
            full_manifest = build_manifest(
                manifest,
                org_id=self.org_id,
                mode=self._mode,
                layout=self.layout.describe(),
                endpoints=endpoint_figures,
                attachments=attachment_figures,
                documents=self._documents(),
            )
            _write_bytes(
                self.next / MANIFEST_NAME, (json.dumps(full_manifest, indent=1, sort_keys=True) + "\n").encode()
            )
            self._mark_staged(MANIFEST_NAME)
            _remove_tree(self.work)
            if self._has_current and self.publish == "exchange":
                self._fill_from_current()
            _sync_file_system(self.next)
            self._swap()
        except BaseException:
            # `current` is still the old mirror unless publishing completed or its journal is durable (then
            # the next `begin` rolls it forward); either way it is, or becomes, complete.
            self._reset()
            raise
        _remove_tree(self.next)  # after an exchange: the previous mirror
        self._reset()
        return self.current

    def _swap(self) -> None:
        """Publish `next` (complete in exchange mode, the changes only in journal mode) as `current`."""
        if not self._has_current:
            os.replace(self.next, self.current)
        elif self.publish == "journal":
            self._write_journal()
            _apply_journal(self.org_dir)
        elif not _exchange(self.next, self.current):
            # No RENAME_EXCHANGE (an old kernel, or a file system without it): two renames; `recover()`
            # puts `previous` back if a crash falls between them.
            previous = self.org_dir / "previous"
            os.replace(self.current, previous)
            os.replace(self.next, self.current)
            fsync_dir(self.org_dir)
            _remove_tree(previous)
        fsync_dir(self.org_dir)

    def _write_journal(self) -> None:
        """The commit point of journal mode: once this file exists, `recover()` finishes the commit."""
        journal = self.org_dir / _JOURNAL_NAME
        puts = [*sorted(self._staged - {MANIFEST_NAME}), MANIFEST_NAME]
        # Durable before it exists under its name: a journal that is there is always complete.
        temporary = journal.with_name(f".tmp.{journal.name}")
        with open(temporary, "wb") as handle:
            handle.write(json.dumps({"puts": puts, "deletes": sorted(self._deleted)}).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, journal)
        fsync_dir(self.org_dir)

    def _fill_from_current(self) -> None:
        for relative in self._current_files(""):
            if relative not in self._staged and relative not in self._deleted:
                target = self.next / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(self.current / relative, target)

    def _lock(self) -> None:
        # One writer per organisation: the daemon serialises jobs per organisation, this catches the rest.
        handle = open(self.org_dir / ".lock", "ab")  # noqa: SIM115 - held until commit() or abort()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.close()
            raise OrganisationLocked(f"another process is writing the mirror of {self.org_id}") from error
        self._lock_handle = handle

    def _reset(self) -> None:
        self._mode = None
        self._staged, self._deleted, self._staged_by_dir = set(), set(), {}
        self._endpoints, self._attachments, self._ids = {}, {}, {}
        self._carried_empty = set()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _require_begun(self) -> None:
        if self._mode is None:
            raise MirrorError("the mirror writer has not begun (call begin())")

    def _current_manifest(self) -> dict[str, Any]:
        try:
            loaded = json.loads((self.current / MANIFEST_NAME).read_bytes())
        except FileNotFoundError:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _reshard(self) -> None:
        """The current mirror was written with another layout: rewrite its records in this one."""
        log.info("re-sharding the mirror of %s into layout %s", self.org_id, self.layout.name)
        source = Mirror(self.current)
        for endpoint in source.endpoints():
            self.replace_endpoint(endpoint, source.iter_records(endpoint))

    def _reshard_attachments(self, old_prefix: int) -> None:
        """Move every attachment directory to where this layout puts it."""
        old = dataclasses.replace(self.layout, attachment_prefix_chars=old_prefix)
        for relative in self._current_files("attachments"):
            parts = relative.split("/")
            endpoint, record_id, name = parts[1], parts[-2], parts[-1]
            if relative != f"{old.attachment_dir(endpoint, record_id)}/{name}":
                continue
            target = f"{self.layout.attachment_dir(endpoint, record_id)}/{name}"
            (self.next / target).parent.mkdir(parents=True, exist_ok=True)
            os.link(self.current / relative, self.next / target)
            self._mark_staged(target)
            self._deleted.add(relative)

    # -- the overlay: `current`, minus `_deleted`, plus files staged in `next` ---------------------
    def _current_files(self, relative_dir: str) -> list[str]:
        """Relative paths of the files under `current/relative_dir` (recursive)."""
        base = self.current / relative_dir if relative_dir else self.current
        if not self._has_current or not base.is_dir():
            return []
        found: list[str] = []
        stack = [base]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False) and not entry.name.startswith(".tmp."):
                        found.append(Path(entry.path).relative_to(self.current).as_posix())
        return sorted(found)

    def _files(self, relative_dir: str) -> list[str]:
        """Relative paths of the next mirror's files under `relative_dir`."""
        prefix = f"{relative_dir}/" if relative_dir else ""
        live = {path for path in self._current_files(relative_dir) if path not in self._deleted}
        for directory, staged in self._staged_by_dir.items():
            if directory == relative_dir or directory.startswith(prefix):
                live |= staged
        return sorted(live)

    def _resolve(self, relative: str) -> Path | None:
        if relative in self._staged:
            return self.next / relative
        if relative in self._deleted or not self._has_current:
            return None
        path = self.current / relative
        return path if path.is_file() else None

    def _read(self, relative: str) -> bytes | None:
        path = self._resolve(relative)
        return path.read_bytes() if path is not None else None

    def _stage(self, relative: str, data: bytes) -> None:
        """Make the next mirror's `relative` hold `data`; a file of `current` with these bytes stays as is."""
        if self._has_current and _same_bytes(self.current / relative, data):
            self._unstage(relative)
            self._deleted.discard(relative)
            return
        _write_bytes(self.next / relative, data)
        self._mark_staged(relative)
        self._deleted.discard(relative)

    def _stage_file(self, relative: str, source: Path) -> None:
        target = self.next / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        self._mark_staged(relative)
        self._deleted.discard(relative)

    def _mark_staged(self, relative: str) -> None:
        self._staged.add(relative)
        self._staged_by_dir.setdefault(relative.rpartition("/")[0], set()).add(relative)

    def _unstage(self, relative: str) -> None:
        if relative in self._staged:
            self._staged.discard(relative)
            self._staged_by_dir[relative.rpartition("/")[0]].discard(relative)
            with contextlib.suppress(FileNotFoundError):
                (self.next / relative).unlink()

    def _remove(self, relative: str) -> None:
        self._unstage(relative)
        if self._has_current and (self.current / relative).is_file():
            self._deleted.add(relative)

    def _remove_dir(self, relative_dir: str) -> None:
        for relative in self._files(relative_dir):
            self._remove(relative)

    # -- records ------------------------------------------------------------------------------
    def upsert(self, endpoint: str, records: Iterable[dict[str, Any]]) -> None:
        """Insert or replace records by their id field (the last one wins if an id repeats)."""
        self._require_begun()
        self._journal(endpoint, self._work_for(endpoint), records)

    def replace_endpoint(self, endpoint: str, records: Iterable[dict[str, Any]]) -> None:
        """Make `records` the whole content of the endpoint (unpaged endpoints, full sweeps)."""
        self._require_begun()
        _check_endpoint(endpoint)
        work = _EndpointWork(replaced=True, index={} if self.layout.shards_by_date(endpoint) else None)
        self._endpoints[endpoint] = work
        _remove_tree(self.work / "ops" / endpoint)
        self._journal(endpoint, work, records)

    def delete(self, endpoint: str, record_ids: Iterable[str]) -> None:
        """Remove records (ids the mirror does not hold are ignored)."""
        self._require_begun()
        work = self._work_for(endpoint)
        operations: dict[str, list[bytes]] = {}
        for raw_id in record_ids:
            record_id = _check_record_id(raw_id, endpoint)
            if work.index is not None:
                shard = work.index.pop(record_id, None)
                if shard is None:
                    continue
            else:
                shard = self.layout.id_shard(record_id)
            operations.setdefault(shard, []).append(b"D\t" + record_id.encode() + b"\n")
        self._append_operations(endpoint, work, operations)

    def _work_for(self, endpoint: str) -> _EndpointWork:
        _check_endpoint(endpoint)
        work = self._endpoints.get(endpoint)
        if work is None:
            work = _EndpointWork()
            if self.layout.shards_by_date(endpoint):
                work.index = self._scan_index(endpoint)
            self._endpoints[endpoint] = work
        return work

    def _scan_index(self, endpoint: str) -> dict[str, str]:
        index: dict[str, str] = {}
        field = id_field(endpoint)
        for relative in self._files(f"records/{endpoint}"):
            path = self._resolve(relative)
            if path is None or not relative.endswith(_SHARD_SUFFIX):
                continue
            shard = relative[len(f"records/{endpoint}/") : -len(_SHARD_SUFFIX)]
            for line in _read_lines(path):
                index[_line_id(line, field, path)] = shard
        return index

    def _journal(self, endpoint: str, work: _EndpointWork, records: Iterable[dict[str, Any]]) -> None:
        field = id_field(endpoint)
        operations: dict[str, list[bytes]] = {}
        pending = 0
        for record in records:
            if not isinstance(record, dict):
                raise MirrorError(f"{endpoint}: a record is not a JSON object")
            record_id = _check_record_id(record.get(field), endpoint)
            shard = self.layout.shard(endpoint, record_id, record)
            try:
                line = canonical_json(record).encode()
            except (TypeError, ValueError, UnicodeEncodeError) as error:
                raise MirrorError(f"{endpoint} {record_id}: not serialisable as JSON ({error})") from error
            if work.index is not None:
                previous = work.index.get(record_id)
                if previous is not None and previous != shard:
                    operations.setdefault(previous, []).append(b"D\t" + record_id.encode() + b"\n")
                work.index[record_id] = shard
            operations.setdefault(shard, []).append(b"U\t" + record_id.encode() + b"\t" + line + b"\n")
            pending += 1
            if pending >= 1000:  # bounded memory for endpoints streamed in one call (replace_endpoint)
                self._append_operations(endpoint, work, operations)
                operations, pending = {}, 0
        self._append_operations(endpoint, work, operations)

    def _append_operations(self, endpoint: str, work: _EndpointWork, operations: dict[str, list[bytes]]) -> None:
        if not operations:
            return
        directory = self.work / "ops" / endpoint
        for shard, batch in operations.items():
            (directory / shard).parent.mkdir(parents=True, exist_ok=True)
            with open(directory / f"{shard}.ops", "ab") as handle:
                handle.write(b"".join(batch))
            work.touched.add(shard)

    def _finish_records(self) -> dict[str, dict[str, Any]]:
        """Apply the journal shard by shard, then count and hash every endpoint of the next mirror."""
        for endpoint, work in sorted(self._endpoints.items()):
            self._apply(endpoint, work)
        names = set(self._endpoints) | self._carried_empty
        names |= {relative.split("/")[1] for relative in self._files("records")}
        return {endpoint: self._figures(endpoint) for endpoint in sorted(names)}

    def _apply(self, endpoint: str, work: _EndpointWork) -> None:
        field = id_field(endpoint)
        directory = f"records/{endpoint}"
        for shard in sorted(work.touched):
            relative = f"{directory}/{shard}{_SHARD_SUFFIX}"
            lines: dict[str, bytes] = {}
            path = None if work.replaced else self._resolve(relative)
            if path is not None:
                lines = {_line_id(line, field, path): line for line in _read_lines(path)}
            with open(self.work / "ops" / endpoint / f"{shard}.ops", "rb") as handle:
                for operation in handle:
                    kind, _, rest = operation.rstrip(b"\n").partition(b"\t")
                    if kind == b"U":
                        record_id, _, line = rest.partition(b"\t")
                        lines[record_id.decode()] = line
                    else:
                        lines.pop(rest.decode(), None)
            if lines:
                self._stage(relative, b"".join(lines[record_id] + b"\n" for record_id in sorted(lines)))
            else:
                self._remove(relative)
        if work.replaced:
            for relative in self._files(directory):
                if relative[len(directory) + 1 : -len(_SHARD_SUFFIX)] not in work.touched:
                    self._remove(relative)

    def _figures(self, endpoint: str) -> dict[str, Any]:
        field = id_field(endpoint)
        pairs: list[tuple[str, str]] = []
        shards = 0
        size = 0
        for relative in self._files(f"records/{endpoint}"):
            path = self._resolve(relative)
            if path is None:
                continue
            shards += 1
            size += path.stat().st_size
            pairs.extend((_line_id(line, field, path), line_hash(line)) for line in _read_lines(path))
        ids = {record_id for record_id, _ in pairs}
        if len(ids) != len(pairs):
            raise MirrorError(f"{endpoint}: a record id appears in two shards")
        self._ids[endpoint] = ids
        return {"count": len(pairs), "hash": endpoint_hash(pairs), "shards": shards, "bytes": size}

    # -- attachments ----------------------------------------------------------------------------
    def put_attachment(self, endpoint: str, record_id: str, attachment_meta: dict[str, Any], content: BinaryIO) -> None:
        """Store one attachment's bytes (streamed) and its Xero metadata (every field kept in the index).
        The same AttachmentID replaces the earlier file; identical bytes leave the file untouched."""
        self._require_begun()
        _check_endpoint(endpoint)
        _check_record_id(record_id, endpoint)
        attachment_id = attachment_meta.get("AttachmentID")
        file_name = attachment_meta.get("FileName")
        if not isinstance(attachment_id, str) or not attachment_id or not isinstance(file_name, str):
            raise MirrorError(f"{endpoint} {record_id}: attachment metadata needs AttachmentID and FileName")
        if {"file", "sha256", "size", "path"} & set(attachment_meta):
            raise MirrorError("attachment metadata must not use the mirror's own keys file, sha256, size, path")
        self._temporary_counter += 1
        temporary = self.work / f"attachment-{self._temporary_counter}"
        digest = hashlib.sha256()
        size = 0
        with open(temporary, "wb") as handle:
            while chunk := content.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        sha256 = digest.hexdigest()
        entries = self._attachment_entries(endpoint, record_id)
        existing = next((entry for entry in entries if entry.get("AttachmentID") == attachment_id), None)
        directory = self.layout.attachment_dir(endpoint, record_id)
        if (
            existing is not None
            and existing.get("sha256") == sha256
            and self._resolve(f"{directory}/{existing['file']}")
        ):
            temporary.unlink()
            safe = existing["file"]
        else:
            others = {entry["file"] for entry in entries if entry is not existing}
            safe = existing["file"] if existing is not None else safe_file_name(file_name, attachment_id, others)
            self._stage_file(f"{directory}/{safe}", temporary)
        if existing is not None:
            entries.remove(existing)
        entries.append({**attachment_meta, "file": safe, "sha256": sha256, "size": size})

    def drop_attachments(self, endpoint: str, record_id: str, keep_ids: set[str]) -> None:
        """Remove the record's attachments whose AttachmentID is not in `keep_ids` (deleted in Xero)."""
        self._require_begun()
        _check_endpoint(endpoint)
        _check_record_id(record_id, endpoint)
        entries = self._attachment_entries(endpoint, record_id)
        directory = self.layout.attachment_dir(endpoint, record_id)
        for entry in [entry for entry in entries if entry.get("AttachmentID") not in keep_ids]:
            entries.remove(entry)
            self._remove(f"{directory}/{entry['file']}")

    def _attachment_entries(self, endpoint: str, record_id: str) -> list[dict[str, Any]]:
        key = (endpoint, record_id)
        if key not in self._attachments:
            data = self._read(f"{self.layout.attachment_dir(endpoint, record_id)}/{INDEX_NAME}")
            self._attachments[key] = json.loads(data) if data else []
        return self._attachments[key]

    def _finish_attachments(self, endpoint_figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
        for (endpoint, record_id), entries in sorted(self._attachments.items()):
            directory = self.layout.attachment_dir(endpoint, record_id)
            if not entries:
                self._remove_dir(directory)
                continue
            entries.sort(key=lambda entry: str(entry["AttachmentID"]))
            self._stage(f"{directory}/{INDEX_NAME}", (canonical_json(entries) + "\n").encode())
            referenced = {f"{directory}/{entry['file']}" for entry in entries} | {f"{directory}/{INDEX_NAME}"}
            for relative in self._files(directory):
                if relative not in referenced:
                    self._remove(relative)
        by_record: dict[tuple[str, str], str] = {}
        for relative in self._files("attachments"):
            parts = relative.split("/")
            if parts[-1] == INDEX_NAME:
                by_record[(parts[1], parts[-2])] = relative
        pairs: list[tuple[str, str]] = []
        size = 0
        for (endpoint, record_id), index in sorted(by_record.items()):
            known = self._ids.get(endpoint) if endpoint in endpoint_figures else None
            if known is not None and record_id not in known:
                log.info("dropping the attachments of %s %s: the record is gone", endpoint, record_id)
                self._remove_dir(self.layout.attachment_dir(endpoint, record_id))
                continue
            for entry in json.loads(self._read(index) or b"[]"):
                pairs.append((f"{endpoint}/{record_id}/{entry['FileName']}", entry["sha256"]))
                size += int(entry["size"])
        return {"count": len(pairs), "hash": endpoint_hash(pairs), "bytes": size}

    # -- documents ------------------------------------------------------------------------------
    def put_document(self, name: str, data: dict[str, Any]) -> None:
        """Store a whole document: `organisation`, or `reports/<Name>` (a `.json` suffix is added)."""
        self._require_begun()
        self._stage(_document_path(name), (canonical_json(data) + "\n").encode())

    def _documents(self) -> list[str]:
        top = [path for path in self._files("") if "/" not in path and path.endswith(".json")]
        return sorted([path for path in top if path != MANIFEST_NAME] + self._files("reports"))


def _document_path(name: str) -> str:
    relative = name if name.endswith(".json") else f"{name}.json"
    parts = relative.split("/")
    valid = all(_DOCUMENT_PART_RE.match(part) for part in parts) and (
        (len(parts) == 1 and relative != MANIFEST_NAME) or (len(parts) == 2 and parts[0] == "reports")
    )
    if not valid:
        raise MirrorError(f"not a document name: {name!r} (use a plain name or reports/<Name>)")
    return relative


class Mirror:
    """Reads a mirror: `<root>/<org_id>/current`, or the same tree restored from a backup point."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._indexes: dict[str, dict[str, str]] = {}

    def manifest(self) -> dict[str, Any]:
        if self.path.name == "current" and (self.path.parent / _JOURNAL_NAME).exists():
            # A journal-mode commit was cut short: the files are between the old and the new mirror.
            raise MirrorError(
                f"the mirror at {self.path} has an unfinished commit",
                hint="the next backup run finishes it (appliance.backup.mirror.recover)",
            )
        try:
            loaded = json.loads((self.path / MANIFEST_NAME).read_bytes())
        except FileNotFoundError as error:
            raise MirrorError(f"no mirror at {self.path} (manifest.json missing)") from error
        if not isinstance(loaded, dict):
            raise MirrorError(f"{self.path / MANIFEST_NAME} is not a JSON object")
        return loaded

    def endpoints(self) -> list[str]:
        """Endpoints holding at least one record."""
        records = self.path / "records"
        if not records.is_dir():
            return []
        return sorted(path.name for path in records.iterdir() if path.is_dir() and _ENDPOINT_RE.match(path.name))

    def _shards(self, endpoint: str) -> list[Path]:
        _check_endpoint(endpoint)
        directory = self.path / "records" / endpoint
        return sorted(directory.rglob(f"*{_SHARD_SUFFIX}")) if directory.is_dir() else []

    def iter_records(self, endpoint: str) -> Iterator[dict[str, Any]]:
        """Every record of the endpoint, shard by shard (record-id order within a shard)."""
        for path in self._shards(endpoint):
            for line in _read_lines(path):
                yield _parse(line)

    def iter_lines(self, endpoint: str) -> Iterator[tuple[str, bytes]]:
        """(record id, canonical JSON line) pairs, for hashing or copying without re-serialising."""
        field = id_field(endpoint)
        for path in self._shards(endpoint):
            for line in _read_lines(path):
                yield _line_id(line, field, path), line

    def get(self, endpoint: str, record_id: str) -> dict[str, Any] | None:
        field = id_field(endpoint)
        needle = json.dumps(record_id, ensure_ascii=False).encode()
        for path in self._candidate_shards(endpoint, record_id):
            for line in _read_lines(path):
                if needle in line:
                    doc = _parse(line)
                    if doc.get(field) == record_id:
                        return doc
        return None

    def _candidate_shards(self, endpoint: str, record_id: str) -> list[Path]:
        layout = self._layout()
        if layout is not None and not layout.shards_by_date(endpoint):
            path = self.path / "records" / endpoint / f"{layout.id_shard(record_id)}{_SHARD_SUFFIX}"
            return [path] if path.exists() else []
        return self._shards(endpoint)

    def _layout(self) -> Layout | None:
        try:
            described = self.manifest().get("layout") or {}
        except MirrorError:
            return None
        layout = LAYOUTS.get(str(described.get("name")))
        return layout if layout is not None and layout.describe() == described else None

    def ids(self, endpoint: str) -> set[str]:
        return {record_id for record_id, _ in self.iter_lines(endpoint)}

    def attachments(self, endpoint: str, record_id: str) -> list[dict[str, Any]]:
        """The record's attachments: every Xero field (AttachmentID, FileName, MimeType, ...), plus `file`
        (the safe name on disk), `path` (absolute), `sha256` and `size`."""
        _check_endpoint(endpoint)
        _check_record_id(record_id, endpoint)
        directory = self.path / self._attachment_layout().attachment_dir(endpoint, record_id)
        index = directory / INDEX_NAME
        if not index.exists():
            return []
        return [{**entry, "path": str(directory / entry["file"])} for entry in json.loads(index.read_bytes())]

    def attachment_records(self, endpoint: str) -> list[str]:
        """Ids of the endpoint's records that have attachments in the mirror."""
        _check_endpoint(endpoint)
        directory = self.path / "attachments" / endpoint
        if not directory.is_dir():
            return []
        return sorted(index.parent.name for index in directory.rglob(INDEX_NAME))

    def attachment_endpoints(self) -> list[str]:
        directory = self.path / "attachments"
        return sorted(path.name for path in directory.iterdir() if path.is_dir()) if directory.is_dir() else []

    def _attachment_layout(self) -> Layout:
        try:
            described = self.manifest().get("layout") or {}
        except MirrorError:
            described = {}
        return Layout("reader", "none", 0, int(described.get("attachment_prefix_chars", 0)))

    def document(self, name: str) -> dict[str, Any] | None:
        path = self.path / _document_path(name)
        return json.loads(path.read_bytes()) if path.exists() else None

    def truth(self) -> dict[str, dict[str, Any]]:
        """`{endpoint: {"count", "hash"}}` computed from the files exactly as `sandbox/store.py` `truth()`
        computes it from the sandbox (see `appliance.backup.manifest`), attachment bytes re-read and hashed."""
        result: dict[str, dict[str, Any]] = {}
        for endpoint in self.endpoints():
            pairs = [(record_id, line_hash(line)) for record_id, line in self.iter_lines(endpoint)]
            if pairs:
                result[endpoint] = {"count": len(pairs), "hash": endpoint_hash(pairs)}
        attachment_pairs: list[tuple[str, str]] = []
        for endpoint in self.attachment_endpoints():
            for record_id in self.attachment_records(endpoint):
                for entry in self.attachments(endpoint, record_id):
                    digest = hashlib.sha256()
                    with open(entry["path"], "rb") as handle:
                        while chunk := handle.read(1 << 20):
                            digest.update(chunk)
                    attachment_pairs.append((f"{endpoint}/{record_id}/{entry['FileName']}", digest.hexdigest()))
        result[ATTACHMENTS_KEY] = {"count": len(attachment_pairs), "hash": endpoint_hash(attachment_pairs)}
        return result

    def verify(self) -> list[str]:
        """Differences between what the manifest promises and what the files hold (empty: consistent)."""
        expected = truth_from_manifest(self.manifest())
        actual = self.truth()
        problems = []
        for name in sorted(set(expected) | set(actual)):
            if expected.get(name) != actual.get(name):
                problems.append(f"{name}: manifest {expected.get(name)} != files {actual.get(name)}")
        return problems

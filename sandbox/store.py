"""The sandbox's persistent state: one SQLite file shared by every process using the sandbox.

This module owns the schema and the low-level reads and writes. It is the contract between the
data side (`generate`, `ledger`, `reports`, `churn`) and the HTTP side (`app`, `identity`,
`accounting`, `admin`). Records are stored exactly as Xero's JSON would show them with
`unitdp=4` and line items (the "full" form); the HTTP side derives the summary form (no line
items) and 2-dp rounding from it. Dates inside documents are Xero's `/Date(ms+0000)/` strings;
the indexed columns (`updated_ms`, `date_ms`) are epoch milliseconds.

Ground truth (`truth`) is defined here so that tests and the backup can compute the same hash:
per endpoint, sha256 over the sorted lines `"<record_id>\t<sha256 of canonical JSON>\n"`,
where canonical JSON is `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- One row per Xero organisation (tenant).
CREATE TABLE IF NOT EXISTS orgs (
    tenant_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,            -- AU NZ GB US CA
    base_currency TEXT NOT NULL,
    tier TEXT NOT NULL DEFAULT 'core',-- the Xero app tier rules applied to calls for this tenant
    size TEXT,                        -- small/medium/large/empty
    seed INTEGER,
    created_ms INTEGER NOT NULL,
    doc TEXT NOT NULL                 -- the Organisation element as Xero returns it
);

-- Every record of every endpoint, in Xero's full JSON form.
CREATE TABLE IF NOT EXISTS records (
    tenant_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,           -- Xero collection name: Invoices, Contacts, Accounts, ...
    record_id TEXT NOT NULL,          -- the record's GUID (InvoiceID, ContactID, ...)
    updated_ms INTEGER,               -- UpdatedDateUTC in epoch ms (NULL where Xero has none)
    date_ms INTEGER,                  -- Date in epoch ms (NULL for undated types)
    status TEXT,
    type TEXT,
    contact_id TEXT,
    number TEXT,                      -- InvoiceNumber, CreditNoteNumber, Code, ... for lookups
    has_attachments INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant_id, endpoint, record_id)
);  -- a rowid table: documents are KBs, and WITHOUT ROWID halves bulk-insert speed for rows that large
CREATE INDEX IF NOT EXISTS records_by_updated ON records (tenant_id, endpoint, updated_ms, record_id);
CREATE INDEX IF NOT EXISTS records_by_number ON records (tenant_id, endpoint, number);

-- Attachments: bytes stored inline (they are small in the sandbox).
CREATE TABLE IF NOT EXISTS attachments (
    attachment_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    record_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    include_online INTEGER NOT NULL DEFAULT 0,
    content BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_by_record ON attachments (tenant_id, endpoint, record_id);

-- History and notes per record (`/{Endpoint}/{id}/History`).
CREATE TABLE IF NOT EXISTS history (
    tenant_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    record_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    date_ms INTEGER NOT NULL,
    changes TEXT NOT NULL,
    user TEXT NOT NULL,
    details TEXT NOT NULL,
    PRIMARY KEY (tenant_id, endpoint, record_id, seq)
) WITHOUT ROWID;

-- The general ledger: one row per journal (`/Journals`), lines in `journal_lines`.
CREATE TABLE IF NOT EXISTS journals (
    tenant_id TEXT NOT NULL,
    journal_number INTEGER NOT NULL,
    journal_id TEXT NOT NULL,
    journal_date_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    source_id TEXT,
    source_type TEXT,
    reference TEXT,
    PRIMARY KEY (tenant_id, journal_number)
) WITHOUT ROWID;
-- Voids and deletions reverse everything posted for a source document.
CREATE INDEX IF NOT EXISTS journals_by_source ON journals (tenant_id, source_id);
CREATE TABLE IF NOT EXISTS journal_lines (
    tenant_id TEXT NOT NULL,
    journal_number INTEGER NOT NULL,
    line_no INTEGER NOT NULL,
    journal_line_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    account_code TEXT,
    account_type TEXT,
    account_name TEXT,
    description TEXT,
    net_amount REAL NOT NULL,         -- debit positive, credit negative (Xero's sign convention)
    gross_amount REAL NOT NULL,
    tax_amount REAL NOT NULL,
    tax_type TEXT,
    tax_name TEXT,
    contact_id TEXT,
    date_ms INTEGER NOT NULL,
    tracking TEXT,                    -- JSON list of {TrackingCategoryID, TrackingOptionID, Name, Option}
    PRIMARY KEY (tenant_id, journal_number, line_no)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS journal_lines_by_account ON journal_lines (tenant_id, account_id, date_ms);

-- OAuth: registered apps, people, codes, tokens, connections.
CREATE TABLE IF NOT EXISTS apps (
    client_id TEXT PRIMARY KEY,
    client_secret TEXT,               -- NULL for a PKCE-only app
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,      -- JSON list
    allowed_scopes TEXT NOT NULL,     -- space separated
    tier TEXT NOT NULL DEFAULT 'core',
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_orgs (
    user_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (user_id, tenant_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_codes (
    code TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    tenants TEXT NOT NULL,            -- JSON list of tenant ids consented
    auth_event_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,        -- one per consent (user x app); refresh tokens rotate within it
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,      -- sha256 of the token; tokens themselves are not stored
    grant_id TEXT NOT NULL,
    issued_ms INTEGER NOT NULL,
    superseded_ms INTEGER,            -- set when it was used to refresh; valid 30 min more
    successor_hash TEXT
);
CREATE TABLE IF NOT EXISTS access_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    auth_event_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    UNIQUE (client_id, user_id, tenant_id)
);

-- Usage and limits that must survive restarts and be shared between processes.
CREATE TABLE IF NOT EXISTS usage (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,                -- UTC date the fixed day window belongs to
    calls INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    rejected_429 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;

-- Ground-truth log of damage scenarios and other admin actions.
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL              -- JSON
);

-- Sandbox-wide settings: faults, token lifetimes, clock offset (JSON values).
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def canonical_json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def doc_hash(doc: Any) -> str:
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def endpoint_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """Hash of (record_id, doc_hash) pairs in record_id order: the ground-truth content hash."""
    digest = hashlib.sha256()
    for record_id, h in sorted(pairs):
        digest.update(f"{record_id}\t{h}\n".encode())
    return digest.hexdigest()


def ms_date(ms: int) -> str:
    """Xero's JSON date form for an epoch-millisecond instant: `/Date(1539993600000+0000)/`."""
    return f"/Date({ms}+0000)/"


@dataclass(frozen=True)
class Record:
    tenant_id: str
    endpoint: str
    record_id: str
    doc: dict[str, Any]
    updated_ms: int | None = None
    date_ms: int | None = None
    status: str | None = None
    type: str | None = None
    contact_id: str | None = None
    number: str | None = None
    has_attachments: bool = False


class SandboxStore:
    """A connection to the sandbox state file. One per thread; apsw connections are not shared."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = apsw.Connection(self.path)
        self.db.setbusytimeout(30_000)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.db:
            self.db.execute(SCHEMA)
            self.db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------
    def transaction(self) -> apsw.Connection:
        """`with store.transaction():` groups writes atomically (apsw savepoint)."""
        return self.db

    def query(self, sql: str, params: tuple | dict = ()) -> Iterator[tuple]:
        return self.db.execute(sql, params)

    def scalar(self, sql: str, params: tuple | dict = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    # -- config -------------------------------------------------------------------------
    def get_config(self, key: str, default: Any = None) -> Any:
        value = self.scalar("SELECT value FROM config WHERE key=?", (key,))
        return default if value is None else json.loads(value)

    def set_config(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO config(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )

    # -- clock --------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The sandbox's business clock, the single source of "now" for every sandbox module.

        The clock is virtual so that generation and `advance` are deterministic: `set_clock` records a
        business instant (`clock_ms`) and the wall time it was set at (`clock_wall_ms`); from then on the
        business clock runs at wall speed from that instant. With no virtual clock set it is wall time plus
        the optional `clock_offset_ms`.
        """
        wall = int(time.time() * 1000)
        clock_ms = self.get_config("clock_ms")
        if clock_ms is None:
            return wall + int(self.get_config("clock_offset_ms", 0))
        return int(clock_ms) + max(0, wall - int(self.get_config("clock_wall_ms", wall)))

    def set_clock(self, business_ms: int) -> None:
        """Set the business clock to `business_ms` now; it runs on at wall speed from there."""
        self.set_config("clock_ms", int(business_ms))
        self.set_config("clock_wall_ms", int(time.time() * 1000))

    # -- records ------------------------------------------------------------------------
    def put_records(self, records: Iterable[Record]) -> int:
        rows = [
            (
                r.tenant_id,
                r.endpoint,
                r.record_id,
                r.updated_ms,
                r.date_ms,
                r.status,
                r.type,
                r.contact_id,
                r.number,
                int(r.has_attachments),
                canonical_json(r.doc),
            )
            for r in records
        ]
        self.db.executemany(
            "INSERT OR REPLACE INTO records(tenant_id, endpoint, record_id, updated_ms, date_ms, status, type,"
            " contact_id, number, has_attachments, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        return len(rows)

    def put_record_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Bulk insert of pre-serialised rows, in `records` column order (see `put_records`).

        For the generator: it serialises each document once (orjson) instead of through `canonical_json`;
        `truth` re-parses and canonicalises, so the hash does not depend on the stored text's formatting.
        """
        self.db.executemany(
            "INSERT OR REPLACE INTO records(tenant_id, endpoint, record_id, updated_ms, date_ms, status, type,"
            " contact_id, number, has_attachments, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def get_record(self, tenant_id: str, endpoint: str, record_id: str) -> dict[str, Any] | None:
        doc = self.scalar(
            "SELECT doc FROM records WHERE tenant_id=? AND endpoint=? AND record_id=?",
            (tenant_id, endpoint, record_id),
        )
        return json.loads(doc) if doc else None

    def delete_record(self, tenant_id: str, endpoint: str, record_id: str) -> None:
        """A hard delete: Xero leaves no tombstone for Items, tracking options, attachments."""
        self.db.execute(
            "DELETE FROM records WHERE tenant_id=? AND endpoint=? AND record_id=?",
            (tenant_id, endpoint, record_id),
        )

    def iter_records(self, tenant_id: str, endpoint: str) -> Iterator[dict[str, Any]]:
        for (doc,) in self.db.execute(
            "SELECT doc FROM records WHERE tenant_id=? AND endpoint=? ORDER BY updated_ms, record_id",
            (tenant_id, endpoint),
        ):
            yield json.loads(doc)

    def count(self, tenant_id: str, endpoint: str) -> int:
        return int(self.scalar("SELECT count(*) FROM records WHERE tenant_id=? AND endpoint=?", (tenant_id, endpoint)))

    # -- ground truth -------------------------------------------------------------------
    def truth(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        """Per endpoint: record count and content hash (see module docstring), plus attachments."""
        result: dict[str, dict[str, Any]] = {}
        rows = self.db.execute(
            "SELECT endpoint, record_id, doc FROM records WHERE tenant_id=? ORDER BY endpoint, record_id",
            (tenant_id,),
        )
        pairs: dict[str, list[tuple[str, str]]] = {}
        for endpoint, record_id, doc in rows:
            pairs.setdefault(endpoint, []).append((record_id, doc_hash(json.loads(doc))))
        for endpoint, items in pairs.items():
            result[endpoint] = {"count": len(items), "hash": endpoint_hash(items)}
        attachment_pairs = [
            (f"{endpoint}/{record_id}/{file_name}", hashlib.sha256(content).hexdigest())
            for endpoint, record_id, file_name, content in self.db.execute(
                "SELECT endpoint, record_id, file_name, content FROM attachments WHERE tenant_id=?",
                (tenant_id,),
            )
        ]
        result["Attachments"] = {"count": len(attachment_pairs), "hash": endpoint_hash(attachment_pairs)}
        return result

    # -- usage --------------------------------------------------------------------------
    def add_usage(self, tenant_id: str, day: str, calls: int, nbytes: int, rejected: int = 0) -> None:
        self.db.execute(
            "INSERT INTO usage(tenant_id, day, calls, bytes, rejected_429) VALUES (?,?,?,?,?)"
            " ON CONFLICT(tenant_id, day) DO UPDATE SET calls=calls+excluded.calls,"
            " bytes=bytes+excluded.bytes, rejected_429=rejected_429+excluded.rejected_429",
            (tenant_id, day, calls, nbytes, rejected),
        )

    def log_event(self, tenant_id: str | None, kind: str, detail: Any) -> None:
        self.db.execute(
            "INSERT INTO events(tenant_id, at_ms, kind, detail) VALUES (?,?,?,?)",
            (tenant_id, self.now_ms(), kind, canonical_json(detail)),
        )


_local = threading.local()


def for_thread(path: Path | str) -> SandboxStore:
    """A store connection private to the calling thread (cached)."""
    stores: dict[str, SandboxStore] = getattr(_local, "stores", None) or {}
    _local.stores = stores
    key = str(path)
    if key not in stores:
        stores[key] = SandboxStore(key)
    return stores[key]

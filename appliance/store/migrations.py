"""The state database schema, as an append-only list of migrations.

Migration N (1-based) takes a database from `PRAGMA user_version = N-1` to `N`; `appliance.store.db.migrate`
applies each in its own transaction with the version bump. To add tables (restore journals, replication
state, alerts...), APPEND a new SQL string to `MIGRATIONS`; never edit or reorder one that has shipped,
because installed databases have already run it. A database newer than this list is refused.

Conventions: timestamps are UNIX seconds (REAL, UTC); JSON columns are TEXT holding compact JSON with
sorted keys and are named for what they hold, not `*_json`; secrets live only in `*_blob` columns holding
age ciphertext (see `appliance.secrets`). Deleting an organisation never cascades to its repository keys:
a key deleted by accident is a backup lost.

This module holds schema only: no queries, no I/O.
"""

from __future__ import annotations

_V1_CONNECT_AND_BACKUP = """
CREATE TABLE apps (
    name        TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    tier        TEXT,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL
);

CREATE TABLE grants (
    grant_id    TEXT PRIMARY KEY,
    app_name    TEXT NOT NULL REFERENCES apps(name),
    user_id     TEXT,
    user_name   TEXT,
    scopes      TEXT NOT NULL DEFAULT '',
    token_blob  BLOB,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_consent', 'revoked')),
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    tokens_saved_at REAL
);

CREATE TABLE organisations (
    org_id          TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    app_name        TEXT NOT NULL REFERENCES apps(name),
    grant_id        TEXT NOT NULL REFERENCES grants(grant_id),
    connection_id   TEXT,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_consent', 'disconnected')),
    region          TEXT,
    country         TEXT,
    base_currency   TEXT,
    integrations    TEXT NOT NULL DEFAULT '[]',
    settings        TEXT NOT NULL DEFAULT '{}',
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX organisations_by_grant ON organisations(grant_id);

CREATE TABLE repo_keys (
    org_id          TEXT NOT NULL REFERENCES organisations(org_id) ON DELETE RESTRICT,
    region          TEXT NOT NULL,
    password_blob   BLOB NOT NULL,
    created_at      REAL NOT NULL,
    PRIMARY KEY (org_id, region)
);

CREATE TABLE jobs (
    job_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    org_id          TEXT REFERENCES organisations(org_id),
    params          TEXT NOT NULL DEFAULT '{}',
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    progress        TEXT NOT NULL DEFAULT '{}',
    result          TEXT,
    error           TEXT,
    priority        INTEGER NOT NULL DEFAULT 0,
    not_before      REAL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner_pid       INTEGER,
    owner_start     TEXT,
    created_at      REAL NOT NULL,
    started_at      REAL,
    heartbeat_at    REAL,
    finished_at     REAL
);
CREATE INDEX jobs_queue ON jobs(state, priority DESC, job_id);
CREATE INDEX jobs_by_org ON jobs(org_id, state);

CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organisations(org_id),
    job_id      INTEGER REFERENCES jobs(job_id),
    mode        TEXT NOT NULL CHECK (mode IN ('full', 'incremental')),
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'paused', 'interrupted')),
    started_at  REAL NOT NULL,
    finished_at REAL,
    calls       INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    checkpoint  TEXT
);
CREATE INDEX runs_by_org ON runs(org_id, started_at);

CREATE TABLE points (
    org_id      TEXT NOT NULL REFERENCES organisations(org_id),
    snapshot_id TEXT NOT NULL,
    run_id      TEXT REFERENCES runs(run_id),
    taken_at    REAL NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('full', 'incremental')),
    summary     TEXT NOT NULL DEFAULT '{}',
    size_bytes  INTEGER,
    PRIMARY KEY (org_id, snapshot_id)
);
CREATE INDEX points_by_time ON points(org_id, taken_at);

CREATE TABLE watermarks (
    org_id          TEXT NOT NULL REFERENCES organisations(org_id),
    endpoint        TEXT NOT NULL,
    updated_ms      INTEGER,
    full_sweep_at   REAL,
    journal_offset  INTEGER,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (org_id, endpoint)
);

CREATE TABLE org_locks (
    org_id      TEXT PRIMARY KEY REFERENCES organisations(org_id),
    owner_pid   INTEGER NOT NULL,
    owner_start TEXT,
    job_id      INTEGER,
    purpose     TEXT NOT NULL DEFAULT '',
    acquired_at REAL NOT NULL
);
"""

_V2_DAEMON_FLEET = """
CREATE TABLE daemon (
    name        TEXT PRIMARY KEY,
    owner_pid   INTEGER NOT NULL,
    owner_start TEXT,
    started_at  REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    status      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE fleet (
    org_id          TEXT PRIMARY KEY REFERENCES organisations(org_id),
    last_attempt_at REAL,
    last_status     TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    paused_until    REAL,
    last_calls      INTEGER,
    last_error      TEXT,
    updated_at      REAL NOT NULL
);

CREATE TABLE replicas (
    org_id              TEXT NOT NULL REFERENCES organisations(org_id),
    region              TEXT NOT NULL,
    replicated_through  REAL,
    replicated_at       REAL,
    snapshots           INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    updated_at          REAL NOT NULL,
    PRIMARY KEY (org_id, region)
);

CREATE TABLE maintenance (
    org_id      TEXT NOT NULL REFERENCES organisations(org_id),
    region      TEXT NOT NULL,
    task        TEXT NOT NULL CHECK (task IN ('retention', 'check')),
    last_at     REAL NOT NULL,
    ok          INTEGER NOT NULL,
    error       TEXT,
    PRIMARY KEY (org_id, region, task)
);

CREATE TABLE alerts_sent (
    alert_key   TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    org_id      TEXT,
    sent_at     REAL NOT NULL,
    delivered   INTEGER NOT NULL,
    repeats     INTEGER NOT NULL DEFAULT 0
);
"""

_V3_RESTORES = """
CREATE TABLE restores (
    restore_id      TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organisations(org_id),
    snapshot_id     TEXT NOT NULL,
    target_tenant_id TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'planned'
                    CHECK (status IN ('planned', 'running', 'paused', 'cancelled', 'finished', 'failed')),
    plan            TEXT NOT NULL DEFAULT '{}',
    options         TEXT NOT NULL DEFAULT '{}',
    step            TEXT,
    calls           INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    resume_after    REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    verification    TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX restores_by_org ON restores(org_id, created_at);

CREATE TABLE restore_elements (
    restore_id  TEXT NOT NULL REFERENCES restores(restore_id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'done', 'refused', 'skipped')),
    target_id   TEXT,
    request_key TEXT,
    sent_at     REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    reason      TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (restore_id, step, source_id)
);
CREATE INDEX restore_elements_by_status ON restore_elements(restore_id, step, status, seq);

CREATE TABLE restore_ids (
    restore_id  TEXT NOT NULL REFERENCES restores(restore_id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    PRIMARY KEY (restore_id, kind, source_id)
);

CREATE TABLE restore_checklist (
    restore_id  TEXT NOT NULL REFERENCES restores(restore_id) ON DELETE CASCADE,
    item        TEXT NOT NULL,
    ticked_at   REAL,
    note        TEXT,
    PRIMARY KEY (restore_id, item)
);
"""

_V4_FINDINGS = """
CREATE TABLE findings (
    finding_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          TEXT NOT NULL REFERENCES organisations(org_id),
    rule            TEXT NOT NULL,
    fingerprint     TEXT NOT NULL DEFAULT '',
    severity        TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    summary         TEXT NOT NULL,
    evidence        TEXT NOT NULL DEFAULT '{}',
    point_before    TEXT,
    point_after     TEXT NOT NULL,
    last_clean_point TEXT,
    suspected_start TEXT,
    created_at      REAL NOT NULL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    UNIQUE (org_id, point_after, rule, fingerprint)
);
CREATE INDEX findings_by_org ON findings(org_id, created_at);

CREATE TABLE detect_steps (
    org_id          TEXT NOT NULL REFERENCES organisations(org_id),
    point_after     TEXT NOT NULL,
    point_before    TEXT,
    taken_at        REAL NOT NULL,
    counts          TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (org_id, point_after)
);
"""

MIGRATIONS: tuple[str, ...] = (_V1_CONNECT_AND_BACKUP, _V2_DAEMON_FLEET, _V3_RESTORES, _V4_FINDINGS)
"""Append-only. Index i holds the SQL that moves `user_version` from i to i+1."""

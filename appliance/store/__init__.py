"""The state database: apps, grants, organisations, runs, backup points, watermarks, jobs, locks and restores.

`State.open(settings)` opens `<data_dir>/state.db` (apsw, WAL, migrated) and the appliance key
(`<data_dir>/keys/identity.age`), and exposes one small class per table family. Everything secret
(token sets, repository passwords) is age-encrypted before it is written.

Thread and process safety: each thread gets its own SQLite connection; writes use `BEGIN IMMEDIATE`;
`grants.refresh_lock` is a kernel file lock (threads, asyncio via `arefresh_lock`, processes); `locks`
holds per-organisation run locks that survive, and recover from, a `kill -9` of their holder.

Several writes that must land together go in one `with state.transaction():` block (nested table
writes become savepoints). Nothing above this package sees apsw: errors arrive as `StoreError`,
`NotFound` or `OrganisationLocked`.

Layout under `data_dir`: `state.db` (+ `-wal`, `-shm`), `keys/identity.age`, `locks/`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from appliance.models import OrgStatus
from appliance.secrets import Keyring
from appliance.settings import Settings
from appliance.store.apps import App, Apps
from appliance.store.db import StateDB, open_state
from appliance.store.findings import Findings
from appliance.store.grants import Grant, Grants, GrantStatus
from appliance.store.jobs import Job, Jobs, JobState
from appliance.store.locks import LockHolder, OrgLocks
from appliance.store.orgs import LOCAL_REGION, Organisations
from appliance.store.points import BackupPoint, Points
from appliance.store.restores import Restores
from appliance.store.runs import Run, Runs, RunStatus
from appliance.store.watermarks import Watermark, Watermarks

__all__ = [
    "LOCAL_REGION",
    "App",
    "BackupPoint",
    "Grant",
    "GrantStatus",
    "Job",
    "JobState",
    "LockHolder",
    "Run",
    "RunStatus",
    "State",
    "StateDB",
    "Watermark",
    "open_state",
    "state_path",
]

STATE_FILE = "state.db"
LOCK_DIR = "locks"


def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILE


class State:
    """The facade every use case receives: one attribute per table family, plus the keyring."""

    def __init__(self, db: StateDB, keyring: Keyring, data_dir: Path) -> None:
        self.db = db
        self.keyring = keyring
        self.data_dir = Path(data_dir)
        self.apps = Apps(db)
        self.grants = Grants(db, keyring, self.data_dir / LOCK_DIR)
        self.orgs = Organisations(db, keyring)
        self.runs = Runs(db)
        self.points = Points(db)
        self.restores = Restores(db)
        self.watermarks = Watermarks(db)
        self.jobs = Jobs(db)
        self.locks = OrgLocks(db)
        self.findings = Findings(db)

    @classmethod
    def open(cls, settings: Settings) -> State:
        """Open the state of the install `settings.data_dir` names (the key is read when first needed)."""
        return cls.open_dir(settings.data_dir)

    @classmethod
    def open_dir(cls, data_dir: Path) -> State:
        data_dir = Path(data_dir)
        db = open_state(state_path(data_dir))
        return cls(db, Keyring(data_dir), data_dir)

    @classmethod
    def initialise(cls, settings: Settings) -> State:
        """`strongroom init`: create the key if there is none, then open (and migrate) the database."""
        keyring = Keyring(settings.data_dir)
        if not keyring.exists():
            keyring.create()
        state = cls.open(settings)
        state.keyring.load()
        return state

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """Make every write inside the block land together or not at all."""
        with self.db.transaction():
            yield self

    def consent_lost(self, grant_id: str) -> list[str]:
        """Xero said `invalid_grant`: the grant and its active organisations need consent again.

        Returns the organisations that changed, for the alert that tells a person to reconnect.
        """
        with self.transaction():
            self.grants.set_status(grant_id, GrantStatus.NEEDS_CONSENT)
            return self.orgs.set_status_for_grant(grant_id, OrgStatus.NEEDS_CONSENT)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

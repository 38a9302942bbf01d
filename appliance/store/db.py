"""The state database connection: opening, pragmas, migrations, transactions and error translation.

This module is the only place in Strongroom that touches apsw. It owns:

- `open_state(path)`: the file (mode 0600, parent directory 0700), WAL, `synchronous=FULL`, foreign keys,
  a busy timeout, and the schema migrations (`PRAGMA user_version`; see `appliance.store.migrations`).
- `StateDB.transaction()`: `BEGIN IMMEDIATE`, so a writer takes SQLite's write lock up front and two
  processes never interleave read-modify-write sequences (in WAL mode a deferred transaction that
  reads and then writes fails with SQLITE_BUSY instead of waiting, https://sqlite.org/lang_transaction.html).
  Nested calls on the same thread become savepoints, so a use case can wrap several table modules'
  writes in one atomic unit.
- Translation of every apsw exception into `StoreError` here, so nothing above sees apsw.

Connections are per thread (and per process: a forked child never reuses its parent's connection, which
SQLite forbids, https://sqlite.org/howtocorrupt.html#_carrying_an_open_database_connection_across_a_fork_).
That makes the store safe for threads and for asyncio code calling it through `asyncio.to_thread`.

It must not know table semantics (the table modules do) and must not hold secrets in clear.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw
import orjson

from appliance.errors import StoreError
from appliance.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another process's write transaction before failing (SQLite busy_timeout)."""

_WAL_RETRY = 0.02
Row = dict[str, Any]
Params = Sequence[Any] | dict[str, Any]


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Re-raise apsw errors as `StoreError` with a human message (the adapter boundary)."""
    try:
        yield
    except apsw.BusyError as error:
        raise StoreError(
            f"the state database stayed busy while {action}",
            hint="another strongroom process holds a long write transaction; retry, or look for a stuck process",
        ) from error
    except apsw.ConstraintError as error:
        raise StoreError(f"the state database refused a change while {action}: {error}") from error
    except (apsw.CorruptError, apsw.NotADBError) as error:
        raise StoreError(
            f"the state database is damaged ({action}): {error}",
            hint="restore it from a recovery kit with `strongroom recover`",
        ) from error
    except (apsw.CantOpenError, apsw.PermissionsError, apsw.ReadOnlyError, apsw.IOError, apsw.FullError) as error:
        raise StoreError(f"cannot access the state database while {action}: {error}") from error
    except apsw.Error as error:
        raise StoreError(f"state database error while {action}: {error}") from error


class StateDB:
    """One state database file; hands each thread its own apsw connection."""

    def __init__(
        self, path: Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.now = clock
        """Wall clock (UNIX seconds) for every timestamp the table modules write; injectable for tests."""
        self._local = threading.local()
        self._all: list[tuple[int, apsw.Connection]] = []
        self._all_lock = threading.Lock()
        self._inherited: list[apsw.Connection] = []
        self._closed = False

    # --- connections -----------------------------------------------------------------------

    def connection(self) -> apsw.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise StoreError("the state database is closed")
        pid = os.getpid()
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            if getattr(self._local, "pid", None) == pid:
                return conn
            # Inherited over fork: never use it, and never let it be closed here either (closing runs
            # SQLite's last-connection cleanup against the parent's open database).
            self._inherited.append(conn)
        with translate_errors("opening it"):
            conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
            conn.set_busy_timeout(self.busy_timeout_ms)
            # Per-connection pragmas: foreign keys are off by default in SQLite, and synchronous=FULL makes
            # every commit fsync the WAL so a saved refresh token survives a power cut
            # (https://sqlite.org/pragma.html#pragma_synchronous).
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
        self._local.conn = conn
        self._local.pid = pid
        self._local.depth = 0
        with self._all_lock:
            self._all.append((pid, conn))
        return conn

    def close(self) -> None:
        """Close every connection this process opened (connections inherited over fork are left alone)."""
        self._closed = True
        pid = os.getpid()
        with self._all_lock:
            mine = [conn for owner, conn in self._all if owner == pid]
            self._all.clear()
        for conn in mine:
            with contextlib.suppress(apsw.Error):
                conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- statements ------------------------------------------------------------------------

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; returns the number of rows it changed."""
        conn = self.connection()
        with translate_errors("writing"):
            conn.execute(sql, params)
            return conn.changes()

    def insert(self, sql: str, params: Params | None = None) -> int:
        """Run one INSERT; returns the new rowid."""
        conn = self.connection()
        with translate_errors("writing"):
            conn.execute(sql, params)
            return conn.last_insert_rowid()

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        conn = self.connection()
        with translate_errors("reading"):
            cursor = conn.cursor()
            cursor.row_trace = _row_as_dict
            return list(cursor.execute(sql, params))

    def query_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params | None = None) -> Any:
        conn = self.connection()
        with translate_errors("reading"):
            # fetchall ends the statement now, so it holds no read snapshot after this returns.
            rows = conn.execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    # --- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StateDB]:
        """An IMMEDIATE write transaction; nested use on the same thread becomes a savepoint.

        Any exception inside the block rolls back (to the savepoint, when nested) and propagates.
        """
        conn = self.connection()
        depth: int = self._local.depth
        savepoint = f"sp{depth}"
        with translate_errors("starting a transaction"):
            conn.execute(f"SAVEPOINT {savepoint}" if depth else "BEGIN IMMEDIATE")
        self._local.depth = depth + 1
        try:
            yield self
        except BaseException:
            self._local.depth = depth
            with contextlib.suppress(apsw.Error):
                if depth:
                    conn.execute(f"ROLLBACK TO {savepoint}; RELEASE {savepoint}")
                else:
                    conn.execute("ROLLBACK")
            raise
        self._local.depth = depth
        try:
            with translate_errors("committing"):
                conn.execute(f"RELEASE {savepoint}" if depth else "COMMIT")
        except StoreError:
            if not depth:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
            raise

    @property
    def in_transaction(self) -> bool:
        return bool(getattr(self._local, "depth", 0)) and getattr(self._local, "pid", None) == os.getpid()

    # --- introspection ---------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    @property
    def journal_mode(self) -> str:
        return str(self.scalar("PRAGMA journal_mode"))


def _row_as_dict(cursor: apsw.Cursor, row: apsw.SQLiteValues) -> Row:
    # The description is only available while the statement runs, i.e. inside the row tracer.
    return dict(zip((column[0] for column in cursor.get_description()), row, strict=True))


def _secure_parent(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
        if stat.S_IMODE(info.st_mode) & 0o077:
            if info.st_uid == os.getuid():
                os.chmod(directory, 0o700)
            else:
                log.warning("%s is accessible to other users and not ours to tighten", directory)
    except OSError as error:
        raise StoreError(f"cannot prepare the state directory {directory}: {error.strerror}") from error


def _secure_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite would use 0644 under a usual umask).

    SQLite gives the -wal and -shm files the same permissions as the database file
    (https://sqlite.org/src/doc/trunk/src/os_unix.c, findCreateFileMode), so they follow.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as error:
        raise StoreError(f"cannot create the state database {path}: {error.strerror}") from error


def _enable_wal(db: StateDB) -> None:
    """Switch the file to WAL, which lets readers (TUI, `status`) run while a backup writes.

    The mode is persistent in the file. Switching needs exclusive access, and SQLite does not call the busy
    handler for it when another connection holds a lock (deadlock avoidance), so several processes opening a
    fresh file at once would fail here: retry until the busy timeout instead.
    """
    conn = db.connection()
    deadline = time.monotonic() + db.busy_timeout_ms / 1000
    while True:
        try:
            mode = str(next(iter(conn.execute("PRAGMA journal_mode = WAL")))[0])
            break
        except apsw.BusyError:
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"the state database {db.path} stayed locked while switching it to WAL",
                    hint="another process holds it open in another journal mode",
                ) from None
            time.sleep(_WAL_RETRY)
        except apsw.Error:
            with translate_errors("switching to WAL"):
                raise
    if mode.lower() != "wal":
        raise StoreError(f"the state database {db.path} cannot use WAL (journal mode is {mode})")


def migrate(db: StateDB, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the schema up to date; returns the number of migrations applied.

    Each migration runs in its own IMMEDIATE transaction together with its `user_version` bump, and the
    version is re-read inside that transaction, so two processes opening a fresh file at once apply
    each migration exactly once.
    """
    known = len(migrations)
    applied = 0
    while True:
        with db.transaction():
            version = db.schema_version
            if version > known:
                raise StoreError(
                    f"the state database {db.path} has schema version {version}, newer than this strongroom "
                    f"knows ({known})",
                    hint="upgrade strongroom; an older version must not write to a newer database",
                )
            if version == known:
                return applied
            conn = db.connection()
            with translate_errors(f"applying migration {version + 1}"):
                conn.execute(migrations[version])
                # PRAGMA takes no bound parameters; the value is our own integer.
                conn.execute(f"PRAGMA user_version = {version + 1}")
            log.info("state database %s migrated to schema version %d", db.path, version + 1)
            applied += 1


def open_state(
    path: Path,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    migrations: Sequence[str] = MIGRATIONS,
    clock: Callable[[], float] = time.time,
) -> StateDB:
    """Open (creating if needed) and migrate the state database at `path`."""
    path = Path(path)
    _secure_parent(path.parent)
    _secure_file(path)
    db = StateDB(path, busy_timeout_ms=busy_timeout_ms, clock=clock)
    try:
        _enable_wal(db)
        migrate(db, migrations)
    except BaseException:
        db.close()
        raise
    return db


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys, the form every JSON column holds."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def from_json(text: str | bytes | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise StoreError(f"a JSON column in the state database is damaged: {error}") from error

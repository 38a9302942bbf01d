"""Grants: one person's consent to one Xero app, with its OAuth token set encrypted at rest.

This module implements the `TokenStore` protocol of `appliance.xero.tokens` on the state database:

- `load(grant_id) -> TokenSet | None` and `save(grant_id, TokenSet)`. The token set is serialised to JSON
  and age-encrypted with the appliance key before it is written; the clear tokens never touch the disk.
  `save` commits in its own IMMEDIATE transaction on a connection with `synchronous=FULL`, so when it
  returns the WAL frame is fsynced: a rotated refresh token is durable before anyone uses it (Xero
  rotates refresh tokens on every use, https://developer.xero.com/documentation/guides/oauth2/auth-flow/).
- `refresh_lock(grant_id)`: a cross-process exclusive lock, implemented with `fcntl.flock` on
  `<data_dir>/locks/grant-<hash>.lock`. Each acquisition opens its own file description, and flock
  locks conflict between descriptions even inside one process, so the lock excludes threads, asyncio
  tasks (through `arefresh_lock`, which acquires in a worker thread) and separate processes alike.
  The kernel drops it when the holder dies, so `kill -9` never leaves a grant locked. Lock files are
  never deleted: unlinking a flock'd file lets two holders lock two different inodes.

It must not talk to Xero or decide when to refresh (that is `appliance.xero.tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance import logs
from appliance.errors import NotFound, StoreError
from appliance.models import TokenSet
from appliance.secrets import Keyring
from appliance.store.db import Row, StateDB, from_json, to_json

DEFAULT_LOCK_TIMEOUT = 120.0
"""Seconds to wait for another holder of a grant's refresh lock: longer than one refresh with retries."""
_LOCK_POLL = 0.05


class GrantStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_CONSENT = "needs_consent"
    """Xero answered `invalid_grant`: a person must consent again."""
    REVOKED = "revoked"


@dataclass(frozen=True)
class Grant:
    """A consent, without its tokens (those only come out through `Grants.load`)."""

    grant_id: str
    app_name: str
    user_id: str | None
    user_name: str | None
    scopes: str
    status: GrantStatus
    created_at: float
    updated_at: float
    tokens_saved_at: float | None


def _grant(row: Row) -> Grant:
    return Grant(
        grant_id=row["grant_id"],
        app_name=row["app_name"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        scopes=row["scopes"],
        status=GrantStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        tokens_saved_at=row["tokens_saved_at"],
    )


_TOKEN_FIELDS = {f.name for f in dataclasses.fields(TokenSet)}


def _register(tokens: TokenSet) -> None:
    for value in (tokens.access_token, tokens.refresh_token, tokens.previous_refresh_token, tokens.id_token):
        logs.register_secret(value)


class Grants:
    """The `grants` table, and the `TokenStore` the Xero token manager uses."""

    def __init__(self, db: StateDB, keyring: Keyring, lock_dir: Path) -> None:
        self.db = db
        self.keyring = keyring
        self.lock_dir = Path(lock_dir)

    # --- the grant rows --------------------------------------------------------------------

    def create(
        self,
        app_name: str,
        tokens: TokenSet | None = None,
        *,
        grant_id: str | None = None,
        user_id: str | None = None,
        user_name: str | None = None,
        scopes: str | None = None,
    ) -> Grant:
        """Record a new consent (and its first token set). `app_name` must be recorded in `apps` first."""
        grant_id = grant_id or str(uuid.uuid4())
        blob = self._seal(tokens) if tokens is not None else None
        now = self.db.now()
        with self.db.transaction():
            if self.db.scalar("SELECT 1 FROM apps WHERE name = ?", (app_name,)) is None:
                raise NotFound(f"no Xero app named {app_name!r} is recorded", hint="call State.apps.record first")
            self.db.execute(
                "INSERT INTO grants(grant_id, app_name, user_id, user_name, scopes, token_blob, status, "
                "created_at, updated_at, tokens_saved_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                (
                    grant_id,
                    app_name,
                    user_id,
                    user_name,
                    scopes if scopes is not None else (tokens.scope if tokens else ""),
                    blob,
                    now,
                    now,
                    now if blob is not None else None,
                ),
            )
            return self.get(grant_id)

    def find(self, grant_id: str) -> Grant | None:
        row = self.db.query_one("SELECT * FROM grants WHERE grant_id = ?", (grant_id,))
        return _grant(row) if row else None

    def get(self, grant_id: str) -> Grant:
        grant = self.find(grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id!r}", hint="`strongroom connect` creates one")
        return grant

    def find_for_user(self, app_name: str, user_id: str) -> Grant | None:
        """The grant a person already made through an app: reconnecting reuses it instead of adding one."""
        row = self.db.query_one(
            "SELECT * FROM grants WHERE app_name = ? AND user_id = ? ORDER BY created_at DESC LIMIT 1",
            (app_name, user_id),
        )
        return _grant(row) if row else None

    def list(self, *, app_name: str | None = None, status: GrantStatus | None = None) -> list[Grant]:
        rows = self.db.query(
            "SELECT * FROM grants WHERE (?1 IS NULL OR app_name = ?1) AND (?2 IS NULL OR status = ?2) "
            "ORDER BY created_at",
            (app_name, status.value if status else None),
        )
        return [_grant(row) for row in rows]

    def tokens_saved(self) -> dict[str, float]:
        """grant_id -> when its tokens were last saved (a refresh rotates them), for every active grant that
        holds tokens and still reaches an active organisation: the refresh tokens whose age matters."""
        rows = self.db.query(
            "SELECT grant_id, tokens_saved_at FROM grants WHERE status = 'active' AND tokens_saved_at IS NOT NULL "
            "AND token_blob IS NOT NULL AND EXISTS (SELECT 1 FROM organisations AS o "
            "WHERE o.grant_id = grants.grant_id AND o.status = 'active') ORDER BY tokens_saved_at, grant_id"
        )
        return {row["grant_id"]: float(row["tokens_saved_at"]) for row in rows}

    def set_status(self, grant_id: str, status: GrantStatus) -> None:
        changed = self.db.execute(
            "UPDATE grants SET status = ?, updated_at = ? WHERE grant_id = ?", (status.value, self.db.now(), grant_id)
        )
        if not changed:
            raise NotFound(f"no grant {grant_id!r}")

    # --- TokenStore ------------------------------------------------------------------------

    def load(self, grant_id: str) -> TokenSet | None:
        """The grant's current token set, decrypted; None if the grant or its tokens do not exist."""
        blob = self.db.scalar("SELECT token_blob FROM grants WHERE grant_id = ?", (grant_id,))
        if blob is None:
            return None
        data = from_json(self.keyring.decrypt(bytes(blob), register=False))
        if not isinstance(data, dict):
            raise StoreError(f"the stored token set of grant {grant_id!r} is damaged")
        # Ignore fields a newer version added, so a downgrade can still read its tokens.
        tokens = TokenSet(**{key: value for key, value in data.items() if key in _TOKEN_FIELDS})
        _register(tokens)
        return tokens

    def save(self, grant_id: str, token_set: TokenSet) -> None:
        """Store a new token set durably (fsynced WAL commit) before the caller may use it."""
        blob = self._seal(token_set)
        now = self.db.now()
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE grants SET token_blob = ?, scopes = CASE WHEN ? = '' THEN scopes ELSE ? END, "
                "updated_at = ?, tokens_saved_at = ? WHERE grant_id = ?",
                (blob, token_set.scope, token_set.scope, now, now, grant_id),
            )
            if not changed:
                raise NotFound(f"no grant {grant_id!r} to save tokens for", hint="create the grant first")

    @contextlib.contextmanager
    def refresh_lock(self, grant_id: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the grant's refresh lock (blocking up to `timeout` seconds, then `StoreError`)."""
        fd = self._open_lock_file(grant_id)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"timed out after {timeout:g}s waiting for the refresh lock of grant {grant_id!r}",
                            hint="another strongroom process is refreshing this grant's tokens",
                        ) from None
                    time.sleep(_LOCK_POLL)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def arefresh_lock(
        self,
        grant_id: str,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,  # noqa: ASYNC109 - mirrors refresh_lock
    ) -> AsyncIterator[None]:
        """`refresh_lock` for asyncio: waits in a worker thread so the event loop keeps running."""
        manager = self.refresh_lock(grant_id, timeout=timeout)
        acquiring = asyncio.ensure_future(asyncio.to_thread(manager.__enter__))
        try:
            await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # The worker thread cannot be stopped: release the lock as soon as it has been taken.
            def release(done: asyncio.Future[None]) -> None:
                if not done.cancelled() and done.exception() is None:
                    manager.__exit__(None, None, None)

            acquiring.add_done_callback(release)
            raise
        try:
            yield
        finally:
            # Unlocking never blocks; doing it inline also releases the lock if the task is cancelled.
            manager.__exit__(None, None, None)

    # --- internals -------------------------------------------------------------------------

    def _seal(self, tokens: TokenSet) -> bytes:
        _register(tokens)
        return self.keyring.encrypt(to_json(dataclasses.asdict(tokens)).encode("utf-8"))

    def _open_lock_file(self, grant_id: str) -> int:
        # Hash the id: grant ids come from outside (Xero's ids or ours) and must not shape a path.
        digest = hashlib.sha256(grant_id.encode("utf-8")).hexdigest()[:32]
        path = self.lock_dir / f"grant-{digest}.lock"
        try:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StoreError(f"cannot open the lock file {path}: {error.strerror}") from error

"""Access tokens per grant: refresh that is safe under concurrency and crashes.

This module owns the refresh discipline Xero's rotating refresh tokens demand (OAUTH-FAQ; CM-RT; research
§5.1 and §8.1):

- one refresh per grant at a time: an asyncio lock inside the process and the store's `refresh_lock` across
  processes; after taking them the token set is re-read, because another task or process may have
  refreshed already (a second refresh with the superseded token would burn the grace window);
- the rotated set is durably saved BEFORE its access token is handed out, so a crash can lose at most a
  response, never the only valid refresh token;
- a lost refresh response (timeout, dropped connection, 5xx) is retried with the same, still-stored refresh
  token: Xero honours it for 30 minutes after its first use ("you can retry refreshing your existing refresh
  token for a grace period of 30 minutes");
- `invalid_grant` becomes `ConsentRequired` (the caller marks the organisation as needing consent; it does
  not retry in a loop). If the current refresh token is refused but the previous one is still inside its
  grace window, that one is tried once.

Access tokens are refreshed proactively two minutes before expiry. This module must not persist anything
itself (the `TokenStore` does), nor talk HTTP other than through `XeroIdentity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Protocol

from appliance import logs
from appliance.errors import ConsentRequired, XeroUnavailable
from appliance.models import TokenSet
from appliance.settings import XeroApp, XeroHosts
from appliance.xero.governor import RetryPolicy
from appliance.xero.oauth import XeroIdentity

logger = logging.getLogger(__name__)

REFRESH_MARGIN = 120.0
"""Refresh this many seconds before the access token expires."""
GRACE_WINDOW = 30 * 60.0
"""Xero honours a superseded refresh token for 30 minutes after its first use (OAUTH-FAQ)."""


class TokenStore(Protocol):
    """Durable storage of one token set per grant (the state store implements it on SQLite).

    `save` must be durable when it returns (committed and synced): the manager relies on it before using a
    rotated token. `refresh_lock` is an exclusive lock per grant that also excludes other processes; it is
    a plain (blocking) context manager, entered and left on a worker thread.
    """

    def load(self, grant_id: str) -> TokenSet | None: ...

    def save(self, grant_id: str, token_set: TokenSet) -> None: ...

    def refresh_lock(self, grant_id: str) -> AbstractContextManager[None]: ...


class Refresher(Protocol):
    async def refresh(self, refresh_token: str) -> TokenSet: ...


_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _grant_lock(grant_id: str) -> asyncio.Lock:
    """The one in-process lock of a grant, shared by every `TokenManager` on this event loop.

    The daemon runs each job with its own manager; with a lock per manager, 16 jobs whose shared grant's
    token expired all waited for the cross-process lock in worker threads, filled the default executor (6
    threads on 2 cores), and the holder could not run its own `to_thread` save: every waiter timed out after
    120 s (measured in the 5,000-organisation fleet round). Sharing the lock per loop leaves at most one
    waiter per grant in a thread."""
    loop = asyncio.get_running_loop()
    locks = _LOOP_LOCKS.get(loop)
    if locks is None:
        locks = _LOOP_LOCKS[loop] = {}
    lock = locks.get(grant_id)
    if lock is None:
        lock = locks[grant_id] = asyncio.Lock()
    return lock


class TokenManager:
    """Hands out a valid access token per grant (`await access_token(grant_id)`)."""

    def __init__(
        self,
        store: TokenStore,
        refresher_for: Callable[[str], Refresher],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = asyncio.sleep,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        margin: float = REFRESH_MARGIN,
    ) -> None:
        """`refresher_for(grant_id)` gives the `XeroIdentity` of the grant's app (see `for_apps`)."""
        self._store = store
        self._refresher_for = refresher_for
        self._clock = clock
        self._sleep = sleep
        self._retry = retry or RetryPolicy(max_retries=4, base=1.0, cap=15.0)
        self._rng = rng or random.Random()
        self._margin = margin
        self.refreshes = 0
        """Refresh calls that succeeded (for tests and run statistics)."""

    @classmethod
    def for_apps(
        cls,
        store: TokenStore,
        hosts: XeroHosts,
        app_for_grant: Callable[[str], XeroApp],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> TokenManager:
        """A manager that refreshes each grant through its own app's identity client."""

        def refresher(grant_id: str) -> Refresher:
            return XeroIdentity(app_for_grant(grant_id), hosts, clock=clock)

        return cls(store, refresher, clock=clock, sleep=sleep)

    def _fresh(self, token_set: TokenSet) -> bool:
        return token_set.expires_at - self._clock() > self._margin

    async def access_token(self, grant_id: str, *, rejected: str | None = None) -> str:
        """A valid access token for the grant.

        `rejected`: an access token Xero just answered 401 to; a different one is returned (refreshing
        unless another task already did). Raises ConsentRequired when the grant needs a person again.
        """
        token_set = await asyncio.to_thread(self._store.load, grant_id)
        if token_set is None:
            raise ConsentRequired(f"no token set is stored for grant {grant_id}", hint="run `strongroom connect`")
        if self._usable(token_set, rejected):
            return token_set.access_token
        async with _grant_lock(grant_id), self._cross_process_lock(grant_id):
            # Someone may have refreshed while we waited (another task here, or another process).
            token_set = await asyncio.to_thread(self._store.load, grant_id)
            if token_set is None:
                raise ConsentRequired(f"no token set is stored for grant {grant_id}", hint="run `strongroom connect`")
            if self._usable(token_set, rejected):
                return token_set.access_token
            token_set = await self._refresh(grant_id, token_set)
            return token_set.access_token

    def _usable(self, token_set: TokenSet, rejected: str | None) -> bool:
        logs.register_secret(token_set.access_token)
        logs.register_secret(token_set.refresh_token)
        if rejected is not None and token_set.access_token == rejected:
            return False
        return self._fresh(token_set)

    @contextlib.asynccontextmanager
    async def _cross_process_lock(self, grant_id: str) -> AsyncIterator[None]:
        manager = self._store.refresh_lock(grant_id)
        entering = asyncio.ensure_future(asyncio.to_thread(manager.__enter__))
        try:
            await asyncio.shield(entering)
        except asyncio.CancelledError:
            # The worker thread may still obtain the lock after we were cancelled: release it when it does,
            # or the grant would stay locked for every other process.
            def release(done: asyncio.Future[None]) -> None:
                if not done.cancelled() and done.exception() is None:
                    manager.__exit__(None, None, None)

            entering.add_done_callback(release)
            raise
        try:
            yield
        finally:
            await asyncio.to_thread(manager.__exit__, None, None, None)

    async def _refresh(self, grant_id: str, current: TokenSet) -> TokenSet:
        refresher = self._refresher_for(grant_id)
        try:
            new = await self._refresh_with_retries(refresher, current.refresh_token)
        except ConsentRequired:
            previous = current.previous_refresh_token
            rotated_at = current.rotated_at
            if previous is None or rotated_at is None or self._clock() - rotated_at >= GRACE_WINDOW:
                raise
            # The stored token was refused but its predecessor is inside Xero's grace window: a rotation
            # whose response was saved but never accepted by Xero, or a store restored from a backup.
            logger.warning("grant %s: current refresh token refused; retrying with the previous one", grant_id)
            new = await self._refresh_with_retries(refresher, previous)
        # Durable before use: if this save fails, the access token is never handed out.
        await asyncio.to_thread(self._store.save, grant_id, new)
        self.refreshes += 1
        logger.info("grant %s: access token refreshed", grant_id)
        return new

    async def _refresh_with_retries(self, refresher: Refresher, refresh_token: str) -> TokenSet:
        attempt = 0
        while True:
            try:
                return await refresher.refresh(refresh_token)
            except XeroUnavailable as error:
                # The response may be lost after Xero rotated the token: retrying with the same token is what
                # the grace window is for.
                attempt += 1
                delay = self._retry.next_delay(attempt, self._rng)
                if delay is None:
                    raise
                logger.warning("token refresh failed (%s); retry %d in %.1f s", error, attempt, delay)
                result = self._sleep(delay)
                if asyncio.iscoroutine(result):
                    await result

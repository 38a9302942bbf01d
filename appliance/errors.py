"""The StrongroomError tree and the exit-code table.

This module is the only place that decides exit codes. Adapters translate library exceptions
(httpx, apsw, subprocess) into these types at their boundary, so nothing above an adapter ever
sees a third-party exception. Each error carries a human message and an optional hint saying
what to do next.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes: a contract for scripts and systemd (pinned by a test)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 3
    XERO_UNAVAILABLE = 4
    LOCKED = 5
    INTERRUPTED = 130


class StrongroomError(Exception):
    """Root of every error Strongroom raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


# --- usage and configuration -------------------------------------------------------------


class UsageError(StrongroomError):
    """The command line asked for something that cannot be done."""

    exit_code = ExitCode.USAGE


class ConfigError(StrongroomError):
    """A settings file or environment value is invalid."""

    exit_code = ExitCode.USAGE


class NotFound(StrongroomError):
    """A named organisation, point, job or record does not exist."""

    exit_code = ExitCode.USAGE


class Interrupted(StrongroomError):
    """The operation was cancelled by a signal or by the user."""

    exit_code = ExitCode.INTERRUPTED


class PartialFailure(StrongroomError):
    """Some organisations succeeded and some failed; the summary says which."""

    exit_code = ExitCode.PARTIAL


# --- state database and secrets ----------------------------------------------------------


class StoreError(StrongroomError):
    """The state database could not be read or written."""


class SecretsError(StrongroomError):
    """A key or encrypted secret is missing, unreadable or has the wrong permissions."""


# --- Xero --------------------------------------------------------------------------------


class XeroError(StrongroomError):
    """Any failure talking to Xero (or a Xero-compatible server)."""

    exit_code = ExitCode.XERO_UNAVAILABLE


class XeroAuthError(XeroError):
    """OAuth failed: bad client credentials, state or PKCE mismatch, refused token."""


class ConsentRequired(XeroAuthError):
    """The refresh token is no longer valid (`invalid_grant`): a person must consent again."""


class XeroForbidden(XeroError):
    """Xero refused the call for this tenant or scope (401/403 on a data call)."""


class XeroRateLimited(XeroError):
    """Xero answered 429. `limit` is which limit (minute, day, concurrent, app)."""

    def __init__(self, message: str, *, retry_after: float, limit: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.limit = limit


class DayBudgetExhausted(XeroRateLimited):
    """The tenant's day limit is spent: checkpoint and resume after `retry_after` seconds."""


class XeroUnavailable(XeroError):
    """5xx, timeouts or dropped connections persisted past the retry budget."""


class XeroRejected(XeroError):
    """Xero refused the request's content (400, validation errors)."""

    exit_code = ExitCode.FAILURE

    def __init__(
        self,
        message: str,
        *,
        status: int,
        detail: object = None,
        correlation_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.detail = detail
        self.correlation_id = correlation_id


# --- the vault (restic) ------------------------------------------------------------------


class VaultError(StrongroomError):
    """restic failed."""


class ResticMissing(VaultError):
    """The restic binary is not installed or too old."""

    exit_code = ExitCode.USAGE


class RepositoryMissing(VaultError):
    """No repository at the location (restic exit 10, or its message on 0.14)."""


class RepositoryLocked(VaultError):
    """Another process holds the repository lock (restic exit 11)."""

    exit_code = ExitCode.LOCKED


class WrongPassword(VaultError):
    """The repository password is wrong (restic exit 12)."""


class IncompleteSnapshot(VaultError):
    """restic could not read some source files (exit 3): the point is not trusted."""

    snapshot_id: str | None = None
    """The snapshot restic created anyway, when known (set by the vault so the caller can forget it)."""


class ResticFailed(VaultError):
    """Any other restic failure."""


class ResticCancelled(VaultError):
    """restic was interrupted (exit 130)."""

    exit_code = ExitCode.INTERRUPTED


class OrganisationLocked(StrongroomError):
    """Another job already runs on this organisation."""

    exit_code = ExitCode.LOCKED


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for any exception that reaches the CLI's top level."""
    if isinstance(error, StrongroomError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.FAILURE

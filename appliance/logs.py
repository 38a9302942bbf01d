"""Logging: journald-friendly output, per-organisation context and secret masking.

Under systemd (`JOURNAL_STREAM` set and the journal socket present) records go to the journal
with structured fields (`ORG_ID`, `RUN_ID`, `PRIORITY`); otherwise they are human lines on
stderr. Every handler masks secrets: values registered with `register_secret`, bearer tokens,
and `*_token=`/`password=` pairs, so tokens never reach a log even by accident.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator

org_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("org_id", default=None)
run_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

_secrets: set[str] = set()
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:access|refresh|id)_token[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
    re.compile(r"(?i)((?:client_secret|password|code_verifier)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?basic\s+)[A-Za-z0-9+/=]+"),
]
MASK = "***"


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it would appear in a log line (ignored if short or empty)."""
    if value and len(value) >= 6:
        _secrets.add(value)


def mask(text: str) -> str:
    """Return `text` with every known secret and token-looking value replaced by ***."""
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


@contextlib.contextmanager
def context(*, org_id: str | None = None, run_id: str | None = None) -> Iterator[None]:
    """Tag every record logged inside the block with the organisation and run."""
    tokens = []
    if org_id is not None:
        tokens.append((org_id_var, org_id_var.set(org_id)))
    if run_id is not None:
        tokens.append((run_id_var, run_id_var.set(run_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _record_context(record: logging.LogRecord) -> tuple[str | None, str | None]:
    return record.__dict__.get("org_id"), record.__dict__.get("run_id")


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.org_id = org_id_var.get()  # type: ignore[attr-defined]
        record.run_id = run_id_var.get()  # type: ignore[attr-defined]
        return True


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = []
        org_id, run_id = _record_context(record)
        if org_id:
            prefix.append(f"org={org_id}")
        if run_id:
            prefix.append(f"run={run_id}")
        if prefix:
            text = f"[{' '.join(prefix)}] {text}"
        return mask(text)


_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalHandler(logging.Handler):
    """Send records to journald's native socket with structured fields (no python-systemd)."""

    def __init__(self, path: str = "/run/systemd/journal/socket", identifier: str = "strongroom") -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @staticmethod
    def _field(name: str, value: str) -> bytes:
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            return name.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        return name.encode() + b"=" + data + b"\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = mask(self.format(record))
            fields = [
                self._field("MESSAGE", message),
                self._field("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
                self._field("SYSLOG_IDENTIFIER", self.identifier),
                self._field("LOGGER", record.name),
            ]
            org_id, run_id = _record_context(record)
            if org_id:
                fields.append(self._field("ORG_ID", org_id))
            if run_id:
                fields.append(self._field("RUN_ID", run_id))
            self.sock.sendto(b"".join(fields), self.path)
        except Exception:
            self.handleError(record)


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists("/run/systemd/journal/socket")


def setup(verbosity: int = 0, *, quiet: bool = False) -> None:
    """Configure the root logger once per process (idempotent). 0 = INFO, 1+ = DEBUG."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbosity > 0 else logging.INFO)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_strongroom", False):
            root.removeHandler(old)
    handler: logging.Handler = JournalHandler() if under_journald() else logging.StreamHandler(sys.stderr)
    if isinstance(handler, JournalHandler):
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_ContextFilter())
    setattr(handler, "_strongroom", True)  # noqa: B010 - marks our own handler for idempotent setup
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

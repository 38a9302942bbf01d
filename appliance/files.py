"""Files written whole or not at all, and made durable: the one way Strongroom writes a file that must survive
a kill or a power cut (a recovery kit, a restic key file, a journal).

Adapter-level helpers: plain `os` calls, no policy. A writer puts the bytes in a temporary file beside the
target (created exclusively, mode 0600, so no other user ever reads a half-written secret), fsyncs it, gives
it its final mode, renames it over the target and fsyncs the directory so the new name survives too.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's new or renamed entries durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_whole(path: Path, content: bytes, *, mode: int = 0o600) -> None:
    """Write `path` (replacing any file there) whole or not at all, durably; `mode` once complete."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)

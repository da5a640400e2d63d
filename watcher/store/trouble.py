"""Store trouble in one clear line: which file, what is wrong, what the operator should do.

SQLite reports a read-only directory, a full disk and a damaged file as terse
``sqlite3`` errors ("unable to open database file", "file is not a database"). The CLI must
exit 2 with one line naming the path and the fix, and a self-alert must say the same, so
every such error is translated here, once, into a ``StoreError``.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from watcher.core.errors import WatcherError


class StoreError(WatcherError):
    """The state file cannot be opened, written or read; the message names path and fix."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "unwritable", "full", "damaged", "locked", "io"


def describe(path: Path, exc: BaseException) -> StoreError:
    """Translate an OSError or sqlite3 error about ``path`` into a one-line StoreError."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    text = detail.lower()
    where = path.parent
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in text:
        return StoreError(
            f"state file {path}: the disk is full ({detail}); free space on the file "
            f"system holding {where}",
            kind="full",
        )
    if (
        isinstance(exc, PermissionError)
        or (isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS))
        or "readonly" in text
        or "read-only" in text
        or "unable to open database file" in text
    ):
        return StoreError(
            f"state file {path}: cannot be written ({detail}); make {where} and the file "
            "writable by the watcher's user, or set state_dir to a writable directory",
            kind="unwritable",
        )
    if (
        "not a database" in text
        or "malformed" in text
        or "corrupt" in text
        or (
            isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
        )
    ):
        return StoreError(
            f"state file {path} is damaged or not a watcher database ({detail}); restore it "
            "from a backup, or move it aside to start with an empty store",
            kind="damaged",
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"state file {path} is locked by another process ({detail}); run one watcher "
            "per state_dir, and close any sqlite3 shell holding a write transaction on it",
            kind="locked",
        )
    return StoreError(
        f"state file {path}: {detail}; check the file system holding {where}", kind="io"
    )

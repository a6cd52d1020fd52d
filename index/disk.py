"""A full disk as one error a user can act on, whichever layer hit it.

SQLite says "database or disk is full" (SQLITE_FULL), the OS ENOSPC or EDQUOT, FAISS a
RuntimeError whose text ends in "(No space left on device)". `full_disk_as_error(path)` turns each
into StorageFullError; the server answers it with 507 Insufficient Storage (RFC 4918), the status
WebDAV servers and object stores use for "the write was refused for lack of space". Callers make
sure nothing half-written stays behind: SQLite rolls the transaction back, and vistas/atomic.py
removes its temp file.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = (
    "No space left on device", "Disk quota exceeded", "database or disk is full",
    # FAISS's own writer reports a short fwrite by its byte counts (index_write.cpp, "write error in
    # FILE: n != m (strerror)"): the strerror is what tells a full disk from other write errors.
)


class StorageFullError(OSError):
    """A write refused because the file system holding `path` has no space (or quota) left."""

    def __init__(self, path: str | Path, detail: str):
        super().__init__(
            errno.ENOSPC,
            f"no space left on the file system holding {str(path)!r} ({detail}). The write was not stored; "
            "free disk space (or raise the quota) there, then retry.",
        )
        self.path = Path(path)

    def __str__(self) -> str:
        return self.strerror


def is_full_disk(e: BaseException, path: str | Path | None = None) -> bool:
    """Whether `e` says the disk is full. SQLite reports some of its own failed writes only as
    "disk I/O error" (SQLITE_IOERR_*: e.g. a -shm file it cannot extend when opening a database);
    given the `path` it touched, such an error counts when that file system has no space left."""
    if isinstance(e, StorageFullError):
        return True
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None) or 0
        if code == sqlite3.SQLITE_FULL:
            return True
        return path is not None and code & 0xFF == sqlite3.SQLITE_IOERR and _no_space_left(Path(path))
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
        return True
    return isinstance(e, RuntimeError) and any(t in str(e) for t in _NO_SPACE_TEXT)


def _no_space_left(path: Path) -> bool:
    for candidate in (path, *path.parents):  # the nearest that exists
        try:
            return os.statvfs(candidate).f_bavail == 0
        except OSError:
            continue
    return False


@contextmanager
def full_disk_as_error(path: str | Path) -> Iterator[None]:
    """Re-raise a full-disk error of any layer inside the block as StorageFullError(path)."""
    try:
        yield
    except StorageFullError:
        raise
    except (sqlite3.Error, OSError, RuntimeError) as e:
        if not is_full_disk(e, path):
            raise
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StorageFullError(path, detail[:200]) from e

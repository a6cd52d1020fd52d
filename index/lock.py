"""One writer per collection: an exclusive flock(2) on `<collection>/collection.lock`, held for as
long as the collection is open.

Two processes on one collection directory corrupt it quietly: each keeps its own FAISS index in
memory and writes its own snapshots, so a `vistas index rebuild` beside a running server reported
success and the server's next snapshot undid it. With the lock the second one is refused, naming
the holder.

flock locks belong to the open file: the kernel drops the lock when its holder exits, `kill -9`
included, so a lock never outlives its process and there is nothing stale to clean up. The file
stays (deleting a lock file races with the next holder). The holder's pid is written into it for
the refusal message only; the lock is the flock. Two opens in one process conflict too (each
open is its own open file), which is right: two Collection objects on one directory would be two
writers. Linux and macOS; on NFS flock is emulated with fcntl locks where the server supports them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "collection.lock"


class CollectionLockedError(RuntimeError):
    """Another process (or another open in this one) holds the collection."""

    def __init__(self, directory: Path, pid: int | None):
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"collection {str(directory)!r} is in use by {holder} (a `vistas serve`, `vistas demo` or index job "
            f"holds {LOCK_FILE}): one process writes a collection at a time. Stop that process first, or send "
            f"the work to it (a server takes writes at POST /v1/collections/{Path(directory).name}/items)."
        )
        self.directory, self.pid = Path(directory), pid


class DirectoryLock:
    """The exclusive lock on one collection directory. `release()` (or process exit) drops it."""

    def __init__(self, fd: int, path: Path):
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: str | Path) -> "DirectoryLock":
        """Lock `directory` (which must exist) or raise CollectionLockedError at once (never waits)."""
        path = Path(directory) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise CollectionLockedError(Path(directory), pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the pid only makes the refusal message nicer
            pass
        return cls(fd, path)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the last descriptor of the open file drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None

"""Atomic file replacement: a reader, or the file system after a crash, sees the old file or the
new one, never a part of either.

The steps: write `<name>.tmp`, fsync it (its data is on disk), rename it over `<name>` (atomic
within one file system), fsync the directory (a rename is data of the directory: without this
fsync a power loss can undo it, or keep a rename made after it and lose this one). Every file the
project replaces in place (index snapshots and shards, training's metrics log) goes through
`atomic_write`, so no caller forgets a step. Floor 1: imports nothing of ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp_path)` writes the new content; then fsync, rename over `path`, fsync its directory."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves no partial file behind
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the renames and creations in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""A real small file system for full-disk tests: a tmpfs of a few MiB mounted on a temp directory.

Mounting needs root (CAP_SYS_ADMIN); CI runs the tests as root. Where mounting is impossible the
test is skipped with the reason (and fails when CI=true), never simulated behind the reader's back.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.components import missing


@contextmanager
def small_filesystem(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` (made if missing) for the block; unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True)  # fmt: skip
    if mount.returncode != 0:
        missing(f"cannot mount a small tmpfs here ({mount.stderr.strip() or mount.returncode}); run as root")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # still busy: detach now, free when closed


def fill(directory: Path) -> Path:
    """Write a filler file until the file system is full (ENOSPC); returns it (delete it to free space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        block = b"\0" * 4096
        while True:
            os.write(fd, block)
    except OSError as e:
        if e.errno != 28:  # ENOSPC
            raise
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler

"""What vistas publishes (bundles, checkpoints) gets the modes the umask gives, as `cp -r` would.

Both are made in private places first: `tempfile` directories are 700 and safetensors writes its
file 600, and a directory copied or renamed out keeps those modes. With umask 022 a bundle was
`drwx------`, unreadable to any other user, the uid the Docker image serves as included.
`publish_tree` sets what `mkdir` and `open` would have made: 777 and 666 less the umask (a file
with an x bit keeps it, through 777). Floor 1: imports nothing of ours.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc, kernel >= 4.7)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (process-wide for that instant)
    os.umask(mask)
    return mask


def publish_tree(root: str | Path) -> None:
    """chmod `root` and everything under it to 777 (directories) / 666 (files) less the umask."""
    mask = current_umask()
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):  # a link's mode means nothing; its target is not ours to change
                continue
            os.chmod(path, (0o777 if mode & 0o111 else 0o666) & ~mask)

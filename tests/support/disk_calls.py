"""Records os.fsync and os.replace, for tests of durable file replacement (vistas/atomic.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def node(path: Path) -> tuple[int, int]:
    """(device, inode): what a path and an open fd of the same file have in common."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


class DiskCalls:
    """os.fsync calls, as ("fsync", node of the fd's file), and os.replace calls, as ("replace",
    target path), in call order."""

    def __init__(self):
        self.events: list[tuple[str, object]] = []

    def assert_replaced_durably(self, path: Path) -> None:
        """The last write of `path` was vistas/atomic.py's: data fsynced, renamed into place, then
        the directory fsynced (without that, a power loss can undo the rename)."""
        events = self.events
        assert ("replace", path) in events, f"{path} was not written by a rename; calls: {events}"
        at = len(events) - 1 - events[::-1].index(("replace", path))
        assert at > 0 and events[at - 1] == ("fsync", node(path)), f"{path}: renamed before its data was fsynced"
        assert ("fsync", node(path.parent)) in events[at + 1:], f"{path}: directory not fsynced after the rename"


@pytest.fixture
def disk_calls(monkeypatch) -> DiskCalls:
    """Records os.fsync and os.replace. A crash between a rename and the fsync of its directory
    cannot be produced in a test; the order of these calls is what makes a rename durable."""
    calls = DiskCalls()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        calls.events.append(("fsync", (st.st_dev, st.st_ino)))
        real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.events.append(("replace", Path(dst)))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls

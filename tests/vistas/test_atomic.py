"""Atomic replacement (vistas/atomic.py): a file is fsynced, renamed into place, and its directory
fsynced, so a crash leaves the old file or the new one and a finished write survives a power
loss; a write that fails leaves the old file. The collection's snapshot files go through it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vistas.atomic import atomic_write
from vistas.index import Collection


def test_atomic_write_fsyncs_the_file_then_renames_then_fsyncs_the_directory(tmp_path, disk_calls):
    target = tmp_path / "d" / "state.json"
    target.parent.mkdir()
    target.write_text("old")
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["state.json"]
    assert len(disk_calls.events) == 3, disk_calls.events  # file fsync, rename, directory fsync: nothing else
    disk_calls.assert_replaced_durably(target)


def test_a_failed_write_leaves_the_old_file(tmp_path, disk_calls):
    target = tmp_path / "state.json"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert not [e for e in disk_calls.events if e[0] == "replace"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # the partial temp file is removed


def test_snapshot_and_collection_json_are_replaced_durably(tmp_path, disk_calls):
    path = tmp_path / "col"
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    with Collection.create(path, dim=8, space_id="sha256:s") as col:
        col.upsert([f"i{j}" for j in range(20)], x)
    snapshot = path / json.loads((path / "collection.json").read_text())["snapshot"]
    disk_calls.assert_replaced_durably(snapshot)
    disk_calls.assert_replaced_durably(path / "collection.json")
    assert not list(path.glob("*.tmp"))

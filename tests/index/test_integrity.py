"""What a collection trusts at start-up (issue 12, items 5, 6 and 9): damaged snapshots and
collection.json are caught by their checksums and rebuilt from SQLite; a snapshot whose contents
are wrong under a valid checksum is caught by searching for its own items; a deleted -wal file
after a crash (acknowledged writes gone from SQLite) is reported loudly; temp files left by a
crash are removed; a copied directory answers under its own name. Real files throughout: the
damage is done to the bytes on disk, the crash is a real process that exits without closing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vistas.index import Collection, Collections
from vistas.index.snapshots import file_sha256, info_checksum

REPO = Path(__file__).resolve().parents[2]
DIM, N, SPACE = 16, 300, "sha256:test-space"


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(path: Path, n: int = N) -> np.ndarray:
    """A closed Flat collection of n random unit vectors "i<j>"; returns the vectors."""
    x = unit_rows(n, seed=0)
    with Collection.create(path, dim=DIM, space_id=SPACE) as col:
        col.upsert([f"i{j}" for j in range(n)], x, [{"n": j} for j in range(n)])
    return x


def snapshot_of(path: Path) -> Path:
    return path / json.loads((path / "collection.json").read_text())["snapshot"]


def scramble(file: Path, seed: int = 1, n: int = 2000, spare_tail: int = 0) -> None:
    """Random bytes at n random places past the header (a disk or copy that went bad), sparing
    the last `spare_tail` bytes."""
    data = bytearray(file.read_bytes())
    rng = np.random.default_rng(seed)
    for at in rng.integers(200, len(data) - spare_tail, size=n):
        data[at] = rng.integers(0, 256)
    file.write_bytes(bytes(data))


def finds_itself(col: Collection, x: np.ndarray) -> int:
    """How many items are their own nearest neighbour (an exact index: all of them)."""
    return sum(col.search(v, k=1)[0].id == f"i{j}" for j, v in enumerate(x))


def test_random_bytes_in_a_snapshot_are_caught_by_its_checksum(tmp_path, caplog):
    path = tmp_path / "col"
    x = make(path)
    scramble(snapshot_of(path), spare_tail=3000)  # the vectors: the id map (8 bytes x 300 at the end) stays readable
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"):
        col = Collection.open(path)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and "does not match its checksum" in errors[0].getMessage(), caplog.text
    assert "rebuilding the FAISS index from SQLite" in errors[0].getMessage()
    assert col.recoveries == {"snapshot_checksum": 1}
    assert finds_itself(col, x) == N and col.info()["recall_at_10"] == 1.0
    col.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"):
        Collection.open(path).close()  # the rebuilt snapshot and its checksum were written
    assert "rebuilding" not in caplog.text


def test_an_edited_collection_json_is_caught_by_its_checksum(tmp_path, caplog):
    path = tmp_path / "col"
    x = make(path)
    info = json.loads((path / "collection.json").read_text())
    info["wal_seq"] = 0  # would replay the whole log onto a snapshot that has it: keys twice
    (path / "collection.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"):
        col = Collection.open(path)
    assert "collection.json does not match its checksum" in caplog.text
    assert col.recoveries == {"info_checksum": 1}
    assert finds_itself(col, x) == N
    col.close()


def test_wrong_contents_under_a_valid_checksum_fail_the_self_check(tmp_path, caplog):
    """A snapshot written from a damaged in-memory index: both checksums hold, the neighbours do not."""
    path = tmp_path / "col"
    x = make(path)
    snapshot = snapshot_of(path)
    scramble(snapshot, spare_tail=3000)  # the vectors only: the id map (8 bytes x 300 at the end) stays readable
    info = json.loads((path / "collection.json").read_text())
    info["snapshot_sha256"] = file_sha256(snapshot)
    info["checksum"] = info_checksum(info)
    (path / "collection.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"):
        col = Collection.open(path)
    assert "sampled items find themselves" in caplog.text, caplog.text
    assert col.recoveries == {"self_check": 1}
    assert finds_itself(col, x) == N
    col.close()


def test_a_deleted_wal_file_after_a_crash_is_reported_loudly(tmp_path, caplog):
    """kill -9 after acknowledged writes and a snapshot; then collection.sqlite-wal is deleted
    (copied without it, cleaned up by hand): the writes are gone from SQLite. Nothing can bring
    them back, but the loss must not be silent."""
    path = tmp_path / "col"
    script = textwrap.dedent(f"""
        import os, sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_integrity import unit_rows, DIM, SPACE
        from vistas.index import Collection
        x = unit_rows(50, seed=0)
        Collection.create(sys.argv[1], dim=DIM, space_id=SPACE).close()  # a clean close: all in the main file
        col = Collection.open(sys.argv[1])
        col.upsert([f"i{{j}}" for j in range(50)], x)  # acknowledged: committed to the -wal file
        col.flush()                                    # a snapshot that has them
        os._exit(0)                                    # a crash: no close, no checkpoint
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, cwd=REPO, timeout=120)
    wal = path / "collection.sqlite-wal"
    assert wal.stat().st_size > 0
    wal.unlink()
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"), Collections(tmp_path) as cols:
        col = cols.get("col")
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors and "ACKNOWLEDGED WRITES LOST" in errors[0] and "the last 50 logged item changes" in errors[0]
        assert col.recoveries == {"writes_lost": 1} and "ACKNOWLEDGED WRITES LOST" in col.warnings[0]
        assert "ACKNOWLEDGED WRITES LOST" in cols.problems()["col"]  # what the server's GET /ready shows
        assert col.count == 0 and col.search(unit_rows(1, seed=0)[0], k=5) == []  # serves what SQLite has


def test_temp_files_left_by_a_crash_are_removed_at_open(tmp_path):
    path = tmp_path / "col"
    make(path, n=20)
    left = [path / "index-000000000007-0123abcd.faiss.tmp", path / "collection.json.tmp",
            path / "collection.sqlite.new", path / "collection.sqlite.new-wal"]
    for f in left:
        f.write_bytes(b"half a file")
    with Collection.open(path) as col:
        assert col.count == 20
        assert not [f.name for f in left if f.exists()]


def test_a_copied_directory_answers_under_its_own_name(tmp_path):
    import shutil

    make(tmp_path / "walc", n=10)
    shutil.copytree(tmp_path / "walc", tmp_path / "sqc")
    with Collections(tmp_path) as cols:
        assert cols.names() == ["sqc", "walc"]
        assert [c.name for c in cols.all()] == ["sqc", "walc"]
        assert cols.get("sqc").info()["name"] == "sqc"
        cols.get("sqc").upsert(["only-in-sqc"], unit_rows(1, seed=9))
        assert cols.get("walc").get("only-in-sqc") is None
    assert json.loads((tmp_path / "sqc" / "collection.json").read_text())["name"] == "sqc"


@pytest.mark.parametrize("name", ["other", None])
def test_create_names_the_collection_by_its_directory(tmp_path, name):
    if name is None:
        with Collection.create(tmp_path / "d", dim=DIM, space_id=SPACE) as col:
            assert col.name == "d"
    else:
        with pytest.raises(ValueError, match="named by its directory"):
            Collection.create(tmp_path / "d", dim=DIM, space_id=SPACE, name=name)

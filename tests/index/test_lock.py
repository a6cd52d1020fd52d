"""One writer per collection (issue 12, item 6): a second process that opens a collection another
holds is refused with a message naming the holder; `vistas index rebuild` beside a running server
fails instead of reporting a success the server then overwrites; the kernel drops the lock of a
killed holder. Real processes and real flock locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest

from support.serve_process import start_serve
from support.tiny_bundle import DIM, build_bundle
from vistas.index import Collection, CollectionLockedError, Collections, CollectionUnavailableError, IndexConfig

REPO = Path(__file__).resolve().parents[2]
SPACE = "sha256:test-space"


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))  # the tiny bundle's dim
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def hold(path: Path) -> subprocess.Popen:
    """Another process that opens the collection and keeps it open until killed; returns once it holds it."""
    script = textwrap.dedent("""
        import sys
        from vistas.index import Collection
        col = Collection.open(sys.argv[1])
        print("holding", flush=True)
        sys.stdin.read()  # until the test closes our stdin or kills us
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env, cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()  # blocks until the child has the lock (or died)
    assert line.strip() == "holding", proc.stderr.read()
    return proc


def test_a_second_process_is_refused_and_a_killed_holder_releases(tmp_path):
    path = tmp_path / "col"
    with Collection.create(path, dim=DIM, space_id=SPACE) as col:
        col.upsert(["a"], unit_rows(1))
    holder = hold(path)
    try:
        with pytest.raises(CollectionLockedError, match=rf"in use by process {holder.pid}\b"):
            Collection.open(path)
        with pytest.raises(CollectionLockedError):  # creating over it is refused too, and deletes nothing
            Collection.create(path, dim=DIM, space_id=SPACE)
        assert (path / "collection.sqlite").is_file()
        with Collections(tmp_path) as cols:  # a server starting beside it: reported, not written
            assert f"in use by process {holder.pid}" in cols.unavailable()["col"]
            with pytest.raises(CollectionUnavailableError, match="unavailable"):
                cols.get_or_create("col", DIM, SPACE)
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup in the holder: the kernel drops its lock
        holder.wait()
    with Collection.open(path) as col:
        assert col.get("a") is not None


def test_two_opens_in_one_process_conflict_until_the_first_closes(tmp_path):
    path = tmp_path / "col"
    Collection.create(path, dim=DIM, space_id=SPACE).close()
    first = Collection.open(path)
    with pytest.raises(CollectionLockedError, match=f"process {os.getpid()}"):
        Collection.open(path)
    first.close()
    Collection.open(path).close()


@pytest.mark.slow
def test_index_rebuild_beside_a_running_server_is_refused(tmp_path):
    bundle = build_bundle(tmp_path / "bundle")
    index_dir = tmp_path / "index"
    env = {"VISTAS_INDEX_DIR": str(index_dir), "VISTAS_THREADS": "1", "VISTAS_LOG_LEVEL": "warning"}
    proc, url = start_serve(bundle, env, log=tmp_path / "server.log")
    try:
        items = [{"id": f"v{j}", "vector": v.tolist()} for j, v in enumerate(unit_rows(5))]
        assert httpx.post(f"{url}/v1/collections/photos/items", json={"items": items}, timeout=30).status_code == 200
        rebuild = subprocess.run(
            [sys.executable, "-m", "vistas.cli", "index", "rebuild", str(index_dir / "photos"), "--index", "HNSW32"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert rebuild.returncode == 2, rebuild.stdout + rebuild.stderr
        assert f"in use by process {proc.pid}" in rebuild.stderr and "Traceback" not in rebuild.stderr
        r = httpx.get(f"{url}/v1/collections/photos", timeout=30)  # the server goes on, untouched
        assert r.status_code == 200 and r.json()["count"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert json.loads((index_dir / "photos" / "collection.json").read_text())["index"] == "Flat"
    with Collection.open(index_dir / "photos") as col:  # the server is gone: now the rebuild may run
        assert col.rebuild(IndexConfig("HNSW32"))["index"] == "HNSW32"

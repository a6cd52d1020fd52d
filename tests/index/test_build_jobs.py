"""Batch indexing jobs: Parquet sources, embedding shards, kill -9 and resume with nothing missing
or doubled, and the Ray engine building the same collection as the local one."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.components import require
from support.tiny_bundle import build_bundle
from vistas.index import Collections
from vistas.index.build import build_index, read_shards
from vistas.inference.model import load_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def model(bundle):
    return load_model(str(bundle), threads=1)


def png(rgb, size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(int(c) for c in rgb)).save(buf, format="PNG")
    return buf.getvalue()


def image_folder(root: Path, n: int, bad: tuple[int, ...] = ()) -> Path:
    """n small images of random colours in two sub-folders, sidecar metadata, some corrupt files."""
    rng = np.random.default_rng(0)
    for j in range(n):
        path = root / f"d{j % 2}" / f"img{j:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an image" if j in bad else png(rng.integers(0, 256, 3)))
        path.with_suffix(".json").write_text(json.dumps({"j": j}))
    return root


def collection_state(out: Path, name: str = "default") -> dict[str, tuple[dict, np.ndarray]]:
    with Collections(out) as colls:
        coll = colls.get(name)
        db = sqlite3.connect(out / name / "collection.sqlite")
        ids = [i for (i,) in db.execute("SELECT id FROM items ORDER BY id")]
        db.close()
        return {i: (coll.get(i)["metadata"], coll.get(i)["vector"]) for i in ids}


def shard_rows(directory: Path) -> list[tuple[str, dict, np.ndarray]]:
    return [(i, m, v) for ids, vecs, metas, _ in read_shards(directory) for i, v, m in zip(ids, vecs, metas)]


def test_parquet_source_and_embedding_shards(tmp_path, model):
    import pyarrow as pa
    import pyarrow.parquet as pq

    colors = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "blue.png").write_bytes(png(colors["blue"]))
    table = pa.table({
        "id": ["r", "g", "b", "broken"],
        "image": [{"bytes": png(colors["red"]), "path": None}, {"bytes": png(colors["green"]), "path": None},
                  {"bytes": None, "path": "files/blue.png"}, {"bytes": b"garbage", "path": None}],
        "caption": ["a red one", None, "blue", "x"],
        "shade": ["warm", "cool", "cool", "none"],
    })
    pq.write_table(table, tmp_path / "data.parquet")
    report = build_index(str(tmp_path / "data.parquet"), tmp_path / "idx", model, progress=False,
                         embeddings_out=str(tmp_path / "emb"))
    assert (report.indexed, report.failed) == (3, 1) and report.failures_by_code == {"invalid_image": 1}
    assert report.failures[0].startswith("broken: invalid_image:")
    state = collection_state(tmp_path / "idx")
    assert state["r"][0] == {"shade": "warm", "caption": "a red one"} and state["g"][0] == {"shade": "cool"}
    rows = shard_rows(tmp_path / "emb")
    assert [r[0] for r in rows] == ["r", "g", "b"]
    for id, meta, vector in rows:  # the shards hold exactly what the collection holds
        assert meta == state[id][0]
        np.testing.assert_allclose(vector, state[id][1], atol=1e-6)
    with Collections(tmp_path / "idx") as colls:
        assert colls.get("default").search(model.embed_texts(["blue"])[0], k=1)[0].id == "b"
    saved = json.loads((tmp_path / "idx" / "default" / "build_report.json").read_text())
    assert saved["failures"] == report.failures and saved["index"]["index"] == "Flat"


def test_build_replaces_its_files_durably(tmp_path, model, disk_calls):
    """Each embedding shard and the report: data fsynced, renamed into place, directory fsynced
    (index/atomic.py), so a shard a resumed job counts on survives a power loss."""
    src = image_folder(tmp_path / "src", 6)
    emb = tmp_path / "emb"
    build_index(str(src), tmp_path / "idx", model, unit_size=3, progress=False, embeddings_out=str(emb))
    shards = sorted(emb.glob("part-*.parquet"))
    assert len(shards) == 2
    for path in [*shards, tmp_path / "idx" / "default" / "build_report.json"]:
        disk_calls.assert_replaced_durably(path)


def read_progress(db_path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT state FROM jobs WHERE name LIKE 'build:%' AND name NOT LIKE '%/failures/%'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return json.loads(row[0])["units_done"] if row else 0


@pytest.mark.slow
def test_killed_build_resumes_with_nothing_missing_or_doubled(tmp_path, bundle, model):
    n, bad = 600, (5, 333)
    src = image_folder(tmp_path / "src", n, bad)
    out, emb = tmp_path / "idx", tmp_path / "emb"
    cmd = [sys.executable, "-m", "vistas.cli", "index", "build", "--bundle", str(bundle), "--source", str(src),
           "--out", str(out), "--unit-size", "20", "--batch-size", "8", "--embeddings-out", str(emb), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "killed.log"  # a file, not a pipe: an unread full pipe would stall the build
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while read_progress(out / "default" / "collection.sqlite") < 5:
        assert proc.poll() is None, f"the build ended before it could be killed: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = read_progress(out / "default" / "collection.sqlite")
    assert 5 <= done < n // 20, "killed mid-run"

    resumed = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed at unit {done}/{n // 20}" in resumed.stdout

    report = json.loads((out / "default" / "build_report.json").read_text())
    assert (report["indexed"], report["failed"]) == (n - len(bad), len(bad))
    assert sorted(f.split(":")[0] for f in report["failures"]) == [f"d{j % 2}/img{j:04d}.png" for j in bad]
    state = collection_state(out)
    expected = {f"d{j % 2}/img{j:04d}.png" for j in range(n) if j not in bad}
    assert set(state) == expected  # none missing, none extra (ids are unique in SQLite)
    rows = shard_rows(emb)
    assert sorted(r[0] for r in rows) == sorted(expected)  # every id in exactly one shard
    assert len(list(emb.glob("part-*.parquet"))) == n // 20 and not list(emb.glob("*.tmp"))

    # the same vectors as an uninterrupted build
    fresh = build_index(str(src), tmp_path / "fresh", model, unit_size=20, progress=False)
    assert fresh.indexed == n - len(bad)
    fresh_state = collection_state(tmp_path / "fresh")
    for id, (meta, vector) in state.items():
        assert meta == fresh_state[id][0] == {"j": int(id[-8:-4])}
        np.testing.assert_allclose(vector, fresh_state[id][1], atol=1e-6)

    # a finished job run again starts over (nothing to resume) and changes nothing
    again = build_index(str(src), out, model, unit_size=20, progress=False)
    assert again.resumed_at_unit == 0 and again.indexed == n - len(bad)
    assert set(collection_state(out)) == expected


def test_resume_over_a_changed_source_is_refused(tmp_path, model):
    src = image_folder(tmp_path / "src", 30)
    out = tmp_path / "idx"
    with Collections(out) as colls:  # an interrupted job: progress saved, never completed
        coll = colls.get_or_create("default", model.dim, model.space_id)
        coll.upsert([], np.zeros((0, model.dim)), jobs={f"build:{src.resolve()}": {
            "fingerprint": "0" * 16, "units_done": 1, "items": 20, "indexed": 20, "failed": 0, "by_code": {},
            "bulk": True, "complete": False}})
    with pytest.raises(ValueError, match="source changed"):
        build_index(str(src), out, model, unit_size=20, progress=False)
    assert build_index(str(src), out, model, unit_size=20, progress=False, resume=False).indexed == 30


@pytest.fixture(scope="module")
def local_ray():
    ray = require("ray", "the `ray` extra: pip install '.[ray]' (make install does)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_builds_the_same_index_as_the_local_engine(tmp_path, bundle, model, local_ray):
    src = image_folder(tmp_path / "src", 90, bad=(7,))
    common = dict(unit_size=16, batch_size=8, progress=False)
    local = build_index(str(src), tmp_path / "local", model, embeddings_out=str(tmp_path / "le"), **common)
    remote = build_index(str(src), tmp_path / "ray", model, engine="ray", ray_actors=1,
                         model_factory=partial(load_model, str(bundle), threads=1),
                         embeddings_out=str(tmp_path / "re"), **common)
    assert (remote.indexed, remote.failed, remote.failures) == (local.indexed, local.failed, local.failures)
    a, b = collection_state(tmp_path / "local"), collection_state(tmp_path / "ray")
    assert a.keys() == b.keys() and len(a) == 89
    for id in a:
        assert a[id][0] == b[id][0]
        np.testing.assert_allclose(a[id][1], b[id][1], atol=1e-6)
    assert [r[0] for r in shard_rows(tmp_path / "le")] == [r[0] for r in shard_rows(tmp_path / "re")]
    queries = model.embed_texts(["red", "green", "blue"])
    with Collections(tmp_path / "local") as la, Collections(tmp_path / "ray") as ra:
        for q in queries:
            assert [h.id for h in la.get("default").search(q, k=10)] == [h.id for h in ra.get("default").search(q, k=10)]
        assert la.get("default").info() == ra.get("default").info()
        thumbs = ra.get("default").thumbnail("d0/img0000.png")
        assert thumbs is not None and thumbs == la.get("default").thumbnail("d0/img0000.png")


def test_import_shards_builds_the_same_collection(tmp_path, model):
    """Shards from one job -> a collection elsewhere, with an IVF-PQ index trained once."""
    src = image_folder(tmp_path / "src", 60)
    build_index(str(src), tmp_path / "idx", model, unit_size=16, progress=False, embeddings_out=str(tmp_path / "emb"))
    from vistas.index import IndexConfig
    from vistas.index.build import import_shards

    info = import_shards(tmp_path / "emb", tmp_path / "imported", "copy", IndexConfig(factory="IVF4,PQ4x4"))
    assert info["count"] == 60 and info["index"] == "IVF4,PQ4x4" and info["recall_at_10"] >= 0.95
    original, copy = collection_state(tmp_path / "idx"), collection_state(tmp_path / "imported", "copy")
    assert original.keys() == copy.keys()
    for id in original:
        assert original[id][0] == copy[id][0]
        np.testing.assert_allclose(original[id][1], copy[id][1], atol=1e-6)
    other = build_bundle(tmp_path / "other", "other", seed=3)
    build_index(str(src), tmp_path / "x", load_model(str(other)), progress=False, embeddings_out=str(tmp_path / "emb2"))
    with pytest.raises(ValueError, match="space"):  # shards of another model never mix in
        import_shards(tmp_path / "emb2", tmp_path / "imported", "copy")
    assert collection_state(tmp_path / "imported", "copy").keys() == original.keys()

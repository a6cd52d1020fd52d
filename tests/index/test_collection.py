"""Collection contracts: exact search equals brute force, writes persist and survive a
lost snapshot, filters return k matches, and bad input is refused before anything is written."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from vistas.index import Collection, CollectionNotFoundError, Collections, SpaceMismatchError

REPO = Path(__file__).resolve().parents[2]
DIM, N, SPACE = 16, 200, "sha256:test-space"


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def items(n=N, seed=0):
    """n random unit vectors with ids "i<j>" and metadata {"n": j, "group": j % 4, "kind": even/odd}."""
    x = unit(np.random.default_rng(seed).normal(size=(n, DIM)))
    ids = [f"i{j}" for j in range(n)]
    meta = [{"n": j, "group": j % 4, "kind": "even" if j % 2 == 0 else "odd"} for j in range(n)]
    return ids, x, meta


def brute_force(x, ids, q, k):
    """Exact top-k by numpy inner product: [(id, score)] best first."""
    scores = x @ q  # (n,)
    order = np.argsort(-scores)[:k]
    return [(ids[j], float(scores[j])) for j in order]


def as_pairs(hits):
    return [(h.id, h.score) for h in hits]


def assert_same(hits, expected):
    assert [h.id for h in hits] == [e[0] for e in expected]
    np.testing.assert_allclose([h.score for h in hits], [e[1] for e in expected], atol=1e-5)


@pytest.fixture
def filled(tmp_path):
    ids, x, meta = items()
    col = Collection.create(tmp_path / "col", dim=DIM, space_id=SPACE)
    assert col.upsert(ids, x, meta, space_id=SPACE) == N
    col.flush()
    yield col, ids, x, meta
    col.close()


def test_search_is_exact(filled):
    col, ids, x, meta = filled
    assert col.count == N
    queries = unit(np.random.default_rng(1).normal(size=(5, DIM)))
    for q, hits in zip(queries, col.search_batch(queries, k=10)):
        assert_same(hits, brute_force(x, ids, q, 10))
    top = col.search(x[7], k=1)[0]  # an indexed vector finds itself
    assert top.id == "i7" and top.score == pytest.approx(1.0, abs=1e-5) and top.metadata == meta[7]
    assert len(col.search(x[0], k=10_000)) == N  # k beyond count: everything, no padding


def test_inputs_are_normalised(filled):
    col, ids, x, _ = filled
    col.upsert(["scaled"], 7.5 * x[3].astype(np.float64))
    np.testing.assert_allclose(col.get("scaled")["vector"], x[3], atol=1e-6)
    assert {h.id for h in col.search(3 * x[3], k=2)} == {"i3", "scaled"}


def test_upsert_replaces_vector_and_metadata(filled):
    col, ids, x, _ = filled
    new = unit(np.random.default_rng(2).normal(size=DIM))
    assert col.upsert(["i5"], new[None], [{"kind": "replaced"}]) == 1
    assert col.count == N  # replaced, not duplicated
    item = col.get("i5")
    assert item["metadata"] == {"kind": "replaced"}
    np.testing.assert_allclose(item["vector"], new, atol=1e-6)
    hits = col.search(new, k=N)
    assert [h.id for h in hits].count("i5") == 1
    assert hits[0].id == "i5" and hits[0].metadata == {"kind": "replaced"}
    x2 = x.copy()
    x2[5] = new
    assert_same(col.search(x[5], k=10), brute_force(x2, ids, x[5], 10))  # the old vector is gone


def test_delete(filled):
    col, ids, x, _ = filled
    assert col.delete(["i1", "i2", "i2", "nope"]) == 2  # repeats and unknown ids count once / not at all
    assert col.count == N - 2 and col.get("i1") is None
    keep = [j for j in range(N) if j not in (1, 2)]
    assert_same(col.search(x[1], k=5), brute_force(x[keep], [ids[j] for j in keep], x[1], 5))
    assert col.delete(["i1"]) == 0


def test_reopen_in_same_process(filled, tmp_path):
    col, ids, x, _ = filled
    q = x[11]
    before = as_pairs(col.search(q, k=8, filter={"kind": "odd"}))
    col.close()
    with Collection.open(tmp_path / "col") as again:
        assert again.count == N and again.name == "col" and again.space_id == SPACE and again.dim == DIM
        assert as_pairs(again.search(q, k=8, filter={"kind": "odd"})) == before
    info = json.loads((tmp_path / "col" / "collection.json").read_text())
    assert info["count"] == N and info["dim"] == DIM and info["space_id"] == SPACE and info["index"] == "Flat"


def test_writes_from_another_process_persist(tmp_path, caplog):
    """A separate process writes, flushes, writes again, and dies before the second flush."""
    script = textwrap.dedent(f"""
        import os, sys, numpy as np
        from vistas.index import Collection
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_collection import items, DIM, SPACE
        ids, x, meta = items()
        col = Collection.create(sys.argv[1], dim=DIM, space_id=SPACE)
        col.upsert(ids[:150], x[:150], meta[:150])
        col.flush()
        col.upsert(ids[150:], x[150:], meta[150:])  # committed to SQLite, never flushed
        os._exit(0)                                  # no close(), no atexit: a crash
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "col")], check=True, env=env, cwd=REPO, timeout=120)
    ids, x, _ = items()
    with caplog.at_level(logging.INFO, logger="vistas.index.collection"):
        col = Collection.open(tmp_path / "col")
    assert "replayed 50 adds" in caplog.text and "rebuilding" not in caplog.text  # snapshot: 150, log: 50 more
    assert col.count == N
    q = unit(np.random.default_rng(3).normal(size=DIM))
    assert_same(col.search(q, k=10), brute_force(x, ids, q, 10))
    col.close()


@pytest.mark.parametrize("damage", ["missing", "corrupt", "no_info", "log_lost"])
def test_snapshot_is_rebuilt_from_sqlite(filled, tmp_path, caplog, damage):
    col, ids, x, _ = filled
    if damage == "log_lost":  # the log after the snapshot is gone: the snapshot misses a live item
        x = x.copy()
        x[0] = unit(np.random.default_rng(5).normal(size=DIM))
        col.upsert(["i0"], x[0], [{"moved": True}])
        col._store._conn.execute("DELETE FROM wal")
        col._store.close()  # a crash: no snapshot of the last write
        col._dir_lock.release()  # as the kernel does when the process dies
        col._closed = True
    else:
        col.close()
    path = tmp_path / "col"
    snapshot = path / json.loads((path / "collection.json").read_text())["snapshot"]
    if damage == "missing":
        snapshot.unlink()
    elif damage == "corrupt":
        snapshot.write_bytes(b"\x00garbage" * 10)
    elif damage == "no_info":
        (path / "collection.json").unlink()
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"):
        again = Collection.open(path)
    assert "rebuilding the FAISS index from SQLite" in caplog.text
    assert again.count == N
    assert_same(again.search(x[0], k=10), brute_force(x, ids, x[0], 10))
    again.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vistas.index.collection"):
        Collection.open(path).close()  # the rebuilt snapshot was written: no second rebuild
    assert "rebuilding" not in caplog.text


@pytest.mark.parametrize(
    "filter, keep",
    [
        ({"kind": "odd"}, lambda m: m["kind"] == "odd"),
        ({"group": 3}, lambda m: m["group"] == 3),
        ({"group": {"$eq": 3}}, lambda m: m["group"] == 3),
        ({"group": {"$in": [1, 2]}}, lambda m: m["group"] in (1, 2)),
        ({"n": {"$gte": 150, "$lt": 170}}, lambda m: 150 <= m["n"] < 170),
        ({"n": {"$gt": 190}, "kind": "even"}, lambda m: m["n"] > 190 and m["kind"] == "even"),
    ],
)
def test_filters_return_k_matches(filled, filter, keep):
    col, ids, x, meta = filled
    mask = np.array([keep(m) for m in meta])
    q = x[0]  # "i0" is even, group 0, n=0: none of the filters above keeps it
    hits = col.search(q, k=10, filter=filter)
    expected = brute_force(x[mask], [i for i, m in zip(ids, mask) if m], q, 10)
    assert len(hits) == min(10, mask.sum())
    assert_same(hits, expected)
    assert all(keep(h.metadata) for h in hits)


def test_filter_reaches_beyond_unfiltered_top_k(filled):
    """The only matches are the items least like the query: an exact filter still finds them."""
    col, ids, x, _ = filled
    q = x[0]
    worst = [ids[j] for j in np.argsort(x @ q)[:5]]
    col.upsert(worst, x[[ids.index(i) for i in worst]], [{"tag": "rare"}] * 5)
    hits = col.search(q, k=5, filter={"tag": "rare"})
    assert sorted(h.id for h in hits) == sorted(worst)
    assert col.search(q, k=5, filter={"tag": "absent"}) == []
    assert col.search(q, k=5, filter={"tag": {"$in": []}}) == []


def test_filter_types_do_not_mix(tmp_path):
    col = Collection.create(tmp_path / "c", dim=DIM, space_id=SPACE)
    values = [1, "1", True, 1.5, "x"]
    x = unit(np.random.default_rng(4).normal(size=(5, DIM)))
    col.upsert([f"v{j}" for j in range(5)], x, [{"v": v} for v in values])
    q = np.ones(DIM)
    found = lambda f: sorted(h.id for h in col.search(q, k=10, filter=f))  # noqa: E731
    assert found({"v": 1}) == ["v0"]
    assert found({"v": "1"}) == ["v1"]
    assert found({"v": True}) == ["v2"]
    assert found({"v": {"$in": [True, "x", 1.5]}}) == ["v2", "v3", "v4"]
    assert found({"v": {"$gte": 1}}) == ["v0", "v3"]  # numbers only: not true, not strings
    for bad in ({"v": {"$regex": "a"}}, {"v": {"$gt": "a"}}, {"v": None}, {"v": {"$in": 3}}, {'a"b': 1}):
        with pytest.raises(ValueError):
            col.search(q, k=1, filter=bad)
    col.close()


def test_space_mismatch_refused(filled):
    col, _, x, _ = filled
    with pytest.raises(SpaceMismatchError) as err:
        col.upsert(["new"], x[0], space_id="sha256:other")
    assert SPACE in str(err.value) and "sha256:other" in str(err.value)
    assert isinstance(err.value, ValueError) and col.get("new") is None
    with pytest.raises(SpaceMismatchError):
        col.search(x[0], space_id="sha256:other")
    col.check_space(SPACE)


@pytest.mark.parametrize(
    "ids, vectors, match",
    [
        (["a"], np.ones((1, DIM + 1)), "shape"),
        (["a"], np.full((1, DIM), np.nan), "NaN"),
        (["a"], np.full((1, DIM), np.inf), "NaN or inf"),
        (["a"], np.zeros((1, DIM)), "zero"),
        (["a", "b"], np.ones((1, DIM)), "pair up"),
        (["a", "a"], np.ones((2, DIM)), "duplicate"),
        ("ab", np.ones((2, DIM)), "list of strings"),
        ([""], np.ones((1, DIM)), "non-empty"),
    ],
)
def test_bad_input_refused(filled, ids, vectors, match):
    col = filled[0]
    with pytest.raises(ValueError, match=match):
        col.upsert(ids, vectors)
    assert col.count == N


def test_bad_metadata_and_queries_refused(filled):
    col, _, x, _ = filled
    with pytest.raises(ValueError, match="not JSON"):
        col.upsert(["a"], x[0], [{"bad": float("nan")}])
    with pytest.raises(ValueError, match="must be a dict"):
        col.upsert(["a"], x[0], ["text"])
    with pytest.raises(ValueError, match="search_batch"):
        col.search(x[:2])
    with pytest.raises(ValueError, match="k must"):
        col.search(x[0], k=0)
    assert col.count == N and col.get("a") is None


def test_concurrent_writers(tmp_path):
    col = Collection.create(tmp_path / "c", dim=DIM, space_id=SPACE)
    _, x, _ = items(80)

    def write(t):
        for j in range(t, 80, 4):
            col.upsert([f"t{j}"], x[j])
            col.search(x[j], k=3)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert col.count == 80 and col.search(x[42], k=1)[0].id == "t42"
    col.close()


def test_registry(tmp_path):
    root = tmp_path / "idx"
    with Collections(root) as cols:
        assert cols.names() == []
        a = cols.get_or_create("photos", DIM, SPACE)
        a.upsert(["p"], np.ones(DIM))
        assert cols.get_or_create("photos", DIM, SPACE) is a
        with pytest.raises(SpaceMismatchError):
            cols.get_or_create("photos", DIM, "sha256:other")
        with pytest.raises(ValueError, match="dim"):
            cols.get_or_create("photos", DIM + 1, SPACE)
        for bad in ("", "a/b", "../x", "x" * 65, "spaces here"):
            with pytest.raises(ValueError, match="invalid collection name"):
                cols.get_or_create(bad, DIM, SPACE)
        with pytest.raises(CollectionNotFoundError, match="photos"):
            cols.get("missing")
    with Collections(root) as cols:  # loaded at start
        assert cols.names() == ["photos"] and cols.get("photos").get("p") is not None

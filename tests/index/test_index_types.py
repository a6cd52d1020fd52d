"""Every index type (Flat, HNSW, IVF-PQ with exact re-ranking) keeps the collection contracts:
deletes never come back (live, after restart, after compaction), filters return k matches,
recall is measured and tuned at build, and the automatic choice follows size and memory."""

import json
import shutil

import numpy as np
import pytest

import vistas.index.indexes as indexes
import vistas.index.search as search_mod
from vistas.index import Collection, IndexConfig, choose_factory

DIM, N, SPACE = 16, 3000, "sha256:types"
FACTORIES = ["Flat", "HNSW32", "IVF32,PQ8x4"]  # PQ8x4: 4 bytes a vector, lossy: results are re-ranked


def clustered(n, dim, seed=0, clusters=30):
    """Unit vectors around `clusters` random centres: the shape of real embedding sets."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


X, QUERIES = np.split(clustered(N + 20, DIM), [N])  # queries: new points of the same distribution
IDS = [f"v{j}" for j in range(N)]
META = [{"n": j, "group": j % 4, "rare": j % 100 == 7} for j in range(N)]


def exact(x, ids, q, k):
    order = np.argsort(-(x @ q), kind="stable")[:k]
    return [ids[j] for j in order]


@pytest.fixture(scope="module", params=FACTORIES)
def template(request, tmp_path_factory):
    """One built (trained, tuned) collection per type; each test gets a copy of its files."""
    path = tmp_path_factory.mktemp("built") / "c"
    with Collection.create(path, dim=DIM, space_id=SPACE) as col:
        col.upsert(IDS, X, META)
        info = col.rebuild(IndexConfig(factory=request.param))
    return path, info


@pytest.fixture
def built(template, tmp_path):
    path = tmp_path / "c"
    shutil.copytree(template[0], path)
    col = Collection.open(path)
    yield col, template[1], path
    col.close()


def test_build_reports_tuned_recall(built):
    col, info, path = built
    assert info["index"] == col.factory and info["count"] == N
    assert info["recall_at_10"] >= 0.95  # the target, reached by tuning efSearch / nprobe
    if col.factory == "Flat":
        assert info["params"] == {} and info["recall_at_10"] == 1.0
    else:
        knob = "efSearch" if "HNSW" in col.factory else "nprobe"
        assert info["params"][knob] >= 1
        assert ("rerank_factor" in info["params"]) == ("PQ" in col.factory)  # lossy codes are re-scored
    stored = json.loads((path / "collection.json").read_text())
    assert stored["index"] == col.factory and stored["recall_at_10"] == info["recall_at_10"]
    assert {**stored["knob"], "rerank_factor": stored["rerank_factor"]}.items() >= info["params"].items()
    found = [[h.id for h in hits] for hits in col.search_batch(QUERIES, k=10)]
    truth = [exact(X, IDS, q, 10) for q in QUERIES]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.9
    for q, hits in zip(QUERIES, col.search_batch(QUERIES, k=10)):  # scores are exact cosines
        np.testing.assert_allclose([h.score for h in hits], X[[IDS.index(h.id) for h in hits]] @ q, atol=1e-5)


def test_deletes_never_come_back(built):
    col, _, path = built
    # delete exactly the items the queries would find first, plus a replaced vector
    doomed = sorted({i for q in QUERIES for i in exact(X, IDS, q, 15)})
    assert col.delete(doomed) == len(doomed)
    moved = doomed[0]
    col.upsert([moved], -X[IDS.index(moved)], [{"moved": True}])  # back, far from where it was
    gone = set(doomed) - {moved}

    def check(c):
        assert c.count == N - len(gone)
        for hits in c.search_batch(QUERIES, k=10):
            ids = [h.id for h in hits]
            assert len(ids) == 10 and not gone & set(ids)
            assert moved not in ids[:1] or hits[0].metadata == {"moved": True}
        assert all(c.get(i) is None for i in gone)
        hits = c.search(X[IDS.index(moved)], k=N)
        assert len(hits) == c.count and not gone & {h.id for h in hits}  # even when asking for everything
        assert [h.id for h in hits].count(moved) == 1 and hits[-1].id == moved  # the old vector is dead

    check(col)
    if not col.info()["tombstones"] and col.factory != "HNSW32":
        pytest.fail("a delete should leave a tombstone until compaction")
    col.close()
    with Collection.open(path) as again:  # restart: the snapshot has the tombstones' vectors
        check(again)
        assert again.tombstones == len(gone) + 1
        again.compact()
        assert again.tombstones == 0 and again.factory == col.factory
        check(again)
    with Collection.open(path) as third:  # after compaction and restart
        check(third)
        assert third.tombstones == 0


@pytest.mark.parametrize("exact_filter_max", [search_mod.EXACT_FILTER_MAX, 50])
def test_filters_return_k_matches(built, monkeypatch, exact_filter_max):
    """50 sends every filter through the index with a selector (the widened path)."""
    monkeypatch.setattr(search_mod, "EXACT_FILTER_MAX", exact_filter_max)
    col, _, _ = built
    cases = [
        ({"group": 2}, lambda m: m["group"] == 2),  # 25 %
        ({"rare": True}, lambda m: m["rare"]),  # 1 %
        ({"n": {"$gte": 100, "$lt": 400}, "group": {"$in": [0, 1]}}, lambda m: 100 <= m["n"] < 400 and m["group"] < 2),
    ]
    for filter, keep in cases:
        mask = np.array([keep(m) for m in META])
        ids = [i for i, m in zip(IDS, mask) if m]
        for q in QUERIES[:5]:
            hits = col.search(q, k=10, filter=filter)
            assert len(hits) == 10 and all(keep(h.metadata) for h in hits)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            assert len(set(h.id for h in hits) & set(exact(X[mask], ids, q, 10))) >= 8
    # the only matches are the items least like the query: they still come back, all of them
    q = QUERIES[0]
    worst = [IDS[j] for j in np.argsort(X @ q)[:12]]
    col.upsert(worst, X[[IDS.index(i) for i in worst]], [{"tag": "far"}] * 12)
    assert sorted(h.id for h in col.search(q, k=12, filter={"tag": "far"})) == sorted(worst)
    assert len(col.search(q, k=50, filter={"tag": "far"})) == 12


def test_space_mismatch_on_every_type(built):
    col, _, _ = built
    with pytest.raises(ValueError, match="space"):
        col.upsert(["x"], X[:1], space_id="sha256:another-model")
    assert col.get("x") is None and col.count == N


def test_automatic_choice():
    assert choose_factory(1000, 512, 8 << 30) == "Flat"
    assert choose_factory(1_000_000, 512, 8 << 30) == "HNSW32"  # 2.3 GB fits 8 GB
    assert choose_factory(1_000_000, 512, 1 << 30) == "IVF4096,PQ64"  # it does not fit 1 GB
    assert choose_factory(100_000_000, 768, 16 << 30).endswith(",PQ96")
    with pytest.raises(ValueError, match="factory"):
        Collection.create("/nonexistent/never", dim=8, space_id=SPACE, config=IndexConfig(factory="NoSuchIndex"))


def test_auto_rechooses_as_the_collection_grows(tmp_path, monkeypatch):
    """With "auto", doubling past the flat-scan limit rebuilds into HNSW in the background."""
    monkeypatch.setattr(indexes, "EXACT_MAX_FLOPS", 1500 * DIM)
    col = Collection.create(tmp_path / "g", dim=DIM, space_id=SPACE)
    for start in range(0, N, 500):
        col.upsert(IDS[start : start + 500], X[start : start + 500], META[start : start + 500])
    col.close()  # waits for the background build
    with Collection.open(tmp_path / "g") as again:
        assert again.factory == "HNSW32" and again.count == N
        assert again.info()["recall_at_10"] >= 0.95
        assert again.search(X[123], k=1)[0].id == "v123"


def test_bulk_load_builds_once_for_the_final_size(tmp_path, monkeypatch):
    monkeypatch.setattr(indexes, "EXACT_MAX_FLOPS", 1000 * DIM)
    col = Collection.create(tmp_path / "b", dim=DIM, space_id=SPACE)
    with col.bulk_load():
        for start in range(0, N, 1000):
            col.upsert(IDS[start : start + 1000], X[start : start + 1000], META[start : start + 1000])
            assert col.factory == "Flat" and col.search(X[start], k=1)[0].id == IDS[start]  # exact scan meanwhile
    assert col.factory == "HNSW32" and col.info()["recall_at_10"] >= 0.95
    assert col.search(X[5], k=1)[0].id == "v5"
    col.close()

"""Collections a real server cannot trust (issue 12, items 4, 5, 9 and 15), each against a real
uvicorn server over real files:

* a damaged or never-completed collection.sqlite: the server starts, serves the other collections
  and every embedding route, names the broken one (its routes: 503 `collection_unavailable`;
  `/ready` and the listing say why; a metric), and never writes into it;
* a damaged snapshot: rebuilt from SQLite at start, counted in vistas_collection_recoveries_total;
* a copied collection directory answers under its own name;
* no index directory given: collections work out of the box under the data directory, and an
  unusable one leaves 503 `no_index` saying why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from support.live_server import running_server
from support.prom import scrape, value
from support.tiny_bundle import DIM
from vistas.bundle import load_bundle_spec
from vistas.index import Collection


@contextmanager
def serve(bundle, **settings):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    with running_server(create_app(Settings(bundles=[str(bundle)], threads=1, **settings))) as live:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            yield client


def vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(path: Path, bundle: Path, n: int = 30) -> np.ndarray:
    x = vectors(n)
    with Collection.create(path, dim=DIM, space_id=load_bundle_spec(bundle).space_id) as col:
        col.upsert([f"i{j}" for j in range(n)], x, [{"j": j} for j in range(n)])
    return x


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_broken_collection_is_reported_and_the_rest_is_served(bundles, tmp_path):
    index_dir = tmp_path / "index"
    x = make(index_dir / "good", bundles[0])
    make(index_dir / "broken", bundles[0])
    damaged = index_dir / "broken" / "collection.sqlite"
    damaged.write_bytes(b"\x00not sqlite\xff" * 4096)  # a disk or a copy gone bad
    (index_dir / "emptied").mkdir()
    (index_dir / "emptied" / "collection.sqlite").write_bytes(b"")  # what a full disk used to leave
    def files(d):  # collection.lock aside: opening takes the lock before it reads anything
        return sorted(p.name for p in (index_dir / d).iterdir() if p.name != "collection.lock")

    before = {d: files(d) for d in ("broken", "emptied")}
    sums = {d: digest(index_dir / d / "collection.sqlite") for d in ("broken", "emptied")}

    with serve(bundles[0], index_dir=str(index_dir)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        problems = ready.json()["collections"]
        assert sorted(problems) == ["broken", "emptied"]
        assert "not a vistas collection database" in problems["broken"] and "INDEX_DIR/broken" in problems["broken"]
        assert str(tmp_path) not in ready.text  # reasons are shown to clients: no server paths

        listing = client.get("/v1/collections").json()
        assert [c["name"] for c in listing["collections"]] == ["good"]
        assert sorted(listing["unavailable"]) == ["broken", "emptied"]

        for path in ("/v1/collections/broken", "/v1/collections/broken/items/i1"):
            r = client.get(path)
            assert r.status_code == 503 and r.json()["error"]["code"] == "collection_unavailable", r.text
            assert "'broken' is unavailable" in r.json()["error"]["message"]
        r = client.post("/v1/search", json={"collection": "broken", "vector": x[0].tolist()})
        assert r.status_code == 503 and r.json()["error"]["code"] == "collection_unavailable"
        r = client.post("/v1/collections/emptied/items", json={"items": [{"id": "n", "vector": x[0].tolist()}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "collection_unavailable", r.text
        assert client.delete("/v1/collections/broken/items/i1").status_code == 503

        hits = client.post("/v1/search", json={"collection": "good", "vector": x[3].tolist(), "k": 1}).json()
        assert hits["results"][0]["id"] == "i3"
        r = client.post("/v1/collections/good/items", json={"items": [{"id": "n", "vector": x[0].tolist()}]})
        assert r.status_code == 200, r.text
        assert client.post("/v1/embed", json={"texts": ["a red square"]}).status_code == 200

        metrics = scrape(str(client.base_url))
        assert value(metrics, "vistas_collection_unavailable", collection="broken") == 1
        assert value(metrics, "vistas_collection_unavailable", collection="emptied") == 1
        assert value(metrics, "vistas_collection_unavailable", collection="good") == 0

    # Nothing was written into the broken ones: same bytes, no -wal or -shm file beside them.
    assert {d: digest(index_dir / d / "collection.sqlite") for d in sums} == sums
    assert {d: files(d) for d in before} == before


def test_a_damaged_snapshot_is_rebuilt_at_start_and_counted(bundles, tmp_path):
    index_dir = tmp_path / "index"
    x = make(index_dir / "col", bundles[0], n=300)
    info = json.loads((index_dir / "col" / "collection.json").read_text())
    snapshot = index_dir / "col" / info["snapshot"]
    data = bytearray(snapshot.read_bytes())
    rng = np.random.default_rng(1)
    for at in rng.integers(200, len(data) - 3000, size=2000):  # the vectors, not the id map after them
        data[at] = rng.integers(0, 256)
    snapshot.write_bytes(bytes(data))

    with serve(bundles[0], index_dir=str(index_dir)) as client:
        found = 0
        for j in range(300):
            r = client.post("/v1/search", json={"collection": "col", "vector": x[j].tolist(), "k": 1})
            found += r.json()["results"][0]["id"] == f"i{j}"
        assert found == 300
        assert client.get("/v1/collections/col").json()["recall_at_10"] == 1.0
        metrics = scrape(str(client.base_url))
        assert value(metrics, "vistas_collection_recoveries_total", collection="col", reason="snapshot_checksum") == 1
        assert "collections" not in client.get("/ready").json()  # recovered: nothing needs an operator


def test_a_copied_collection_directory_answers_under_its_own_name(bundles, tmp_path):
    index_dir = tmp_path / "index"
    x = make(index_dir / "walc", bundles[0])
    shutil.copytree(index_dir / "walc", index_dir / "sqc")
    with serve(bundles[0], index_dir=str(index_dir)) as client:
        names = [c["name"] for c in client.get("/v1/collections").json()["collections"]]
        assert names == ["sqc", "walc"]
        assert client.get("/v1/collections/sqc").json()["name"] == "sqc"
        r = client.post("/v1/collections/sqc/items", json={"items": [{"id": "new", "vector": x[0].tolist()}]})
        assert r.status_code == 200 and r.json()["collection"] == "sqc"
        assert client.get("/v1/collections/walc/items/new").status_code == 404
        assert client.get("/v1/collections/sqc").json()["count"] == 31


def test_collections_work_without_an_index_directory(bundles, tmp_path, monkeypatch):
    """No index_dir: collections live in <data_dir>/index (by default ~/.local/share/vistas/index;
    tests never touch the real home: tests/conftest.py sets VISTAS_DATA_DIR for the session, and
    this test its own, so that no other server of the session meets its collection)."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("VISTAS_DATA_DIR", str(data_dir))
    x = vectors(3, seed=5)
    with serve(bundles[0]) as client:
        items = [{"id": f"d{j}", "vector": v.tolist()} for j, v in enumerate(x)]
        r = client.post("/v1/collections/defaults/items", json={"items": items})
        assert r.status_code == 200, r.text
        assert client.get("/v1/collections/defaults").json()["count"] == 3
    assert (data_dir / "index" / "defaults" / "collection.sqlite").is_file()


def test_an_unusable_index_directory_is_503_no_index_with_the_reason(bundles, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the index directory should be")
    with serve(bundles[0], index_dir=str(blocker)) as client:
        assert client.get("/ready").status_code == 200
        assert client.post("/v1/embed", json={"texts": ["a red square"]}).status_code == 200
        r = client.get("/v1/collections")
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_index", r.text
        assert "cannot be used" in r.json()["error"]["message"] and "VISTAS_INDEX_DIR" in r.json()["error"]["message"]

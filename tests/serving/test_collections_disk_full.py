"""A full disk (issue 12, item 3), on a real 4 MiB tmpfs (tests/support/small_disk.py), not a
simulation: upserts answer 507 `insufficient_storage` with a clear message instead of 500;
acknowledged items survive; a collection created while the disk is full leaves nothing behind;
the server keeps serving reads, and once space is freed, writes and a restart work."""

from __future__ import annotations

from contextlib import contextmanager

import httpx
import numpy as np

from support.live_server import running_server
from support.small_disk import fill, small_filesystem
from support.tiny_bundle import DIM

PAD = "x" * 1000  # metadata per item: a batch of 200 needs ~200 KB the full disk does not have


@contextmanager
def serve(bundle, index_dir):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundle)], index_dir=str(index_dir), threads=1)
    with running_server(create_app(settings)) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        yield client


def batch(prefix: str, n: int, seed: int) -> list[dict]:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return [{"id": f"{prefix}{j}", "vector": v.tolist(), "metadata": {"pad": PAD, "j": j}} for j, v in enumerate(x)]


def test_a_full_disk_refuses_writes_with_507_and_keeps_everything_acknowledged(bundles, tmp_path):
    with small_filesystem(tmp_path / "disk") as disk:
        index_dir = disk / "index"
        acked: set[str] = set()
        with serve(bundles[0], index_dir) as client:
            first = batch("a", 20, seed=0)
            assert client.post("/v1/collections/kept/items", json={"items": first}).status_code == 200
            acked |= {item["id"] for item in first}
            filler = fill(disk)

            answers = []
            for i in range(50):  # SQLite's -wal file may still have room for a batch or two
                items = batch(f"b{i}-", 200, seed=i + 1)
                r = client.post("/v1/collections/kept/items", json={"items": items})
                answers.append(r.status_code)
                if r.status_code == 200:
                    acked |= {item["id"] for item in items}
                else:
                    break
            assert answers[-1] == 507 and set(answers) <= {200, 507}, answers
            error = r.json()["error"]
            assert error["code"] == "insufficient_storage" and "disk is full" in error["message"], error
            assert "nothing changed" in error["message"]

            r = client.post("/v1/collections/fresh/items", json={"items": batch("f", 3, seed=99)})
            assert r.status_code == 507 and r.json()["error"]["code"] == "insufficient_storage", r.text
            assert not (index_dir / "fresh").exists()  # no empty collection.sqlite left behind
            assert client.get("/v1/collections/fresh").status_code == 404

            # A delete needs room in SQLite's log too: done, or refused the same way; never a 500.
            r = client.delete("/v1/collections/kept/items/a1")
            assert r.status_code in (200, 507), r.text
            if r.status_code == 200:
                acked.discard("a1")

            # Reads go on while the disk is full.
            assert client.get("/ready").status_code == 200
            assert client.get("/v1/collections/kept").json()["count"] == len(acked)
            query = batch("q", 1, seed=0)[0]["vector"]  # a0's vector
            hits = client.post("/v1/search", json={"collection": "kept", "vector": query, "k": 1}).json()["results"]
            assert hits[0]["id"] == "a0"

            filler.unlink()
            assert client.post("/v1/collections/kept/items", json={"items": batch("c", 5, seed=7)}).status_code == 200
            acked |= {f"c{j}" for j in range(5)}
            assert client.post("/v1/collections/fresh/items", json={"items": batch("f", 3, seed=99)}).status_code == 200

        with serve(bundles[0], index_dir) as client:  # a restart opens both
            listing = client.get("/v1/collections").json()
            assert sorted(c["name"] for c in listing["collections"]) == ["fresh", "kept"]
            assert listing["unavailable"] == {}
            assert client.get("/v1/collections/kept").json()["count"] == len(acked)
            for id in sorted(acked)[:: max(1, len(acked) // 50)] + ["a0", "c4"]:  # a sample, and both ends
                assert client.get(f"/v1/collections/kept/items/{id}").status_code == 200, id


def test_a_server_started_on_a_full_disk_serves_and_says_why_a_collection_is_not(bundles, tmp_path):
    """SQLite cannot open a database on a full disk (its -shm file needs 32 KB): the server starts
    anyway, names the collection and the reason, and serves it after a restart with space."""
    with small_filesystem(tmp_path / "disk") as disk:
        index_dir = disk / "index"
        with serve(bundles[0], index_dir) as client:
            assert client.post("/v1/collections/kept/items", json={"items": batch("a", 20, seed=0)}).status_code == 200
        filler = fill(disk)
        with serve(bundles[0], index_dir) as client:
            ready = client.get("/ready")
            assert ready.status_code == 200 and "no space left" in ready.json()["collections"]["kept"], ready.text
            assert client.post("/v1/embed", json={"texts": ["a red square"]}).status_code == 200
            r = client.get("/v1/collections/kept/items/a3")
            assert r.status_code == 503 and r.json()["error"]["code"] == "collection_unavailable", r.text
            assert "no space left" in r.json()["error"]["message"]
            r = client.post("/v1/collections/kept/items", json={"items": batch("b", 2, seed=1)})
            assert r.status_code == 503, r.text  # never written while unavailable
        filler.unlink()
        with serve(bundles[0], index_dir) as client:
            assert client.get("/v1/collections/kept/items/a3").json()["metadata"]["j"] == 3

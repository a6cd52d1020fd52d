"""kill -9 of a real `vistas serve` process in the middle of a stream of writes: after a restart
every acknowledged upsert is there with its metadata, every acknowledged delete stays deleted,
and the request that was in flight is all there or not there at all. On a Flat collection and
on an HNSW one (which keeps deleted vectors as tombstones).

The kill comes after a random delay. The test prints the seed of that delay and names it in every
failure; `VISTAS_TEST_SEED=<seed>` runs it again with the same delay (and the same writes, which
are fixed). Process timing still varies, so a replay hits the same moment only approximately."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from support.tiny_bundle import build_bundle
from vistas.bundle import load_bundle_spec
from vistas.index import Collection, IndexConfig

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = ("flat", "graph")  # "graph" is made HNSW32 before the server starts
BATCH = 5
SEED_ENV = "VISTAS_TEST_SEED"


def run_seed() -> int:
    """$VISTAS_TEST_SEED when set (to replay a failure), else a fresh random seed."""
    value = os.environ.get(SEED_ENV, "").strip()
    if value:
        return int(value)
    return int(np.random.SeedSequence().entropy % 2**32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, index_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "VISTAS_THREADS": "1", "VISTAS_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "vistas.cli", "serve", str(bundle), "--index", str(index_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 90 s")


class Stream:
    """Writes batches of upserts (and some deletes) until the server dies; remembers what was acked."""

    def __init__(self, url: str, dim: int):
        self.url, self.dim = url, dim
        self.acked: dict[tuple[str, str], dict] = {}  # (collection, id) -> metadata
        self.deleted: set[tuple[str, str]] = set()
        self.in_flight: list[tuple[str, str]] = []  # ids of the upsert that got no answer
        self.delete_in_flight: tuple[str, str] | None = None  # the delete that got no answer
        self.requests = 0
        self.rng = np.random.default_rng(0)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for i in range(100_000):
                name = COLLECTIONS[i % 2]
                if i % 4 == 3:  # delete an acknowledged item of this collection
                    victims = sorted(k for k in self.acked if k[0] == name and k not in self.deleted)
                    victim = victims[int(self.rng.integers(len(victims)))]
                    self.in_flight = []
                    try:
                        r = client.delete(f"/v1/collections/{name}/items/{victim[1]}")
                    except httpx.TransportError:
                        self.delete_in_flight = victim  # it may or may not have happened
                        return
                    assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
                    self.deleted.add(victim)
                    continue
                ids = [f"b{i}-{j}" for j in range(BATCH)]
                items = [
                    {"id": id, "vector": self.rng.normal(size=self.dim).tolist(), "metadata": {"batch": i, "j": j}}
                    for j, id in enumerate(ids)
                ]
                self.in_flight = [(name, id) for id in ids]
                try:
                    r = client.post(f"/v1/collections/{name}/items", json={"items": items})
                except httpx.TransportError:
                    return
                assert r.status_code == 200 and r.json()["upserted"] == BATCH, r.text
                for item in items:
                    self.acked[(name, item["id"])] = item["metadata"]
                self.in_flight = []
                self.requests += 1


@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_write(tmp_path):
    seed = run_seed()
    replay = f"[seed {seed}; replay: {SEED_ENV}={seed}]"
    print(f"kill delay seed {seed} (replay with {SEED_ENV}={seed})")
    bundle = build_bundle(tmp_path / "bundle")
    spec = load_bundle_spec(bundle)
    index_dir = tmp_path / "index"
    Collection.create(index_dir / "graph", dim=spec.embed_dim, space_id=spec.space_id,
                      config=IndexConfig(factory="HNSW32")).close()

    proc, url = start_server(bundle, index_dir)
    stream = Stream(url, spec.embed_dim)
    writer = threading.Thread(target=stream.run)
    try:
        writer.start()
        while stream.requests < 60 and writer.is_alive():
            time.sleep(0.05)
        time.sleep(float(np.random.default_rng(seed).uniform(0, 0.2)))  # kill at no particular moment
        os.kill(proc.pid, signal.SIGKILL)
        writer.join(timeout=60)
        assert not writer.is_alive(), f"the writer did not stop after the kill {replay}"
    finally:
        proc.kill()
        proc.wait()
    assert stream.requests >= 60 and stream.deleted, f"{stream.requests} writes before the kill {replay}"

    proc, url = start_server(bundle, index_dir)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for name in COLLECTIONS:
                gone = stream.deleted | {stream.delete_in_flight}
                live = {id: meta for (c, id), meta in stream.acked.items() if c == name and (c, id) not in gone}
                for id, meta in live.items():
                    r = client.get(f"/v1/collections/{name}/items/{id}", params={"vector": "true"})
                    assert r.status_code == 200, f"acknowledged {name}/{id} lost: {r.text} {replay}"
                    assert r.json()["metadata"] == meta, f"{name}/{id}: {r.json()['metadata']} != {meta} {replay}"
                    hit = client.post("/v1/search", json={"collection": name, "vector": r.json()["vector"], "k": 1})
                    top = hit.json()["results"][0]["id"]  # the index has it, not only SQLite
                    assert top == id, f"{name}/{id} is in SQLite but its search finds {top} {replay}"
                for c, id in stream.deleted:
                    if c == name:
                        status = client.get(f"/v1/collections/{name}/items/{id}").status_code
                        assert status == 404, f"deleted {name}/{id} came back ({status}) {replay}"
                flight = [id for c, id in stream.in_flight if c == name]
                there = [client.get(f"/v1/collections/{name}/items/{id}").status_code == 200 for id in flight]
                assert all(there) or not any(there), f"a half-written upsert: {dict(zip(flight, there))} {replay}"
                extra = sum(there)
                if stream.delete_in_flight and stream.delete_in_flight[0] == name:  # all there or all gone
                    victim = stream.delete_in_flight[1]
                    r = client.get(f"/v1/collections/{name}/items/{victim}", params={"vector": "true"})
                    if r.status_code == 200:
                        extra += 1
                        hit = client.post("/v1/search", json={"collection": name, "vector": r.json()["vector"], "k": 1})
                        top = hit.json()["results"][0]["id"]
                        assert top == victim, f"{name}/{victim} (delete in flight) is in SQLite, search finds {top} {replay}"
                    else:
                        assert r.status_code == 404, f"{name}/{victim}: {r.status_code} {r.text} {replay}"
                info = client.get(f"/v1/collections/{name}").json()
                assert info["count"] == len(live) + extra, f"{name}: {info} vs {len(live)} + {extra} {replay}"
                assert info["index"] == ("HNSW32" if name == "graph" else "Flat"), f"{info} {replay}"
                # deleted items never come back, even when every item is asked for
                everything = client.post("/v1/search", json={"collection": name, "vector": [1.0] * spec.embed_dim,
                                                              "k": 1000}).json()["results"]
                ids = {r["id"] for r in everything}
                back = ids & {id for c, id in stream.deleted if c == name}
                assert len(everything) == info["count"] and not back, (
                    f"{name}: {len(everything)} results for {info['count']} items, deleted ones back: "
                    f"{sorted(back)[:5]} {replay}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

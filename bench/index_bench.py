"""Index benchmarks: search latency and recall at scale, batch-indexing throughput vs the model.

    vistas bench index [--n 1000000] [--dim 512] [--quick] [--factory auto] [--out build/index_bench.json]

1. Search: n synthetic clustered unit vectors (dim 512 by default) are bulk-loaded into a
   collection whose index is chosen automatically (or --factory) and tuned to recall@10 >= 0.95.
   Single-query latency p50/p99 through `Collection.search` (index + SQLite metadata lookup),
   recall@10 against exact search on held-out queries, index and SQLite bytes per vector, build
   time; and the same latency for exact search (a FAISS flat scan of the same vectors) as the
   baseline. Targets: recall@10 >= 0.95, p99 <= 10 ms.
2. Batch indexing: `build_index` over a folder of PNGs (decode, embed, thumbnails, commit) vs the
   bare model (`embed_images` on already-decoded images), same model, same batch size, in images/s.
   Target: >= 0.8x.

`--quick` shrinks both (100k vectors, 256 images) for a smoke run; the lead's figures come from
the full run on a quiet machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from vistas.bench.report import print_and_save

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "models" / "siglip-shapes-digits" / "bundle"


def clustered_unit_vectors(n: int, dim: int, *, clusters: int = 1000, intrinsic: int = 32, seed: int = 0,
                           chunk: int = 100_000):
    """(n, dim) float32 unit vectors in clusters, made chunk by chunk (bounded memory).

    Each cluster is a centre plus variation along its own `intrinsic` random directions, plus a
    little isotropic noise: embeddings of real images and texts have an intrinsic dimension of
    a few tens, far below their width. intrinsic=0 gives isotropic Gaussian clusters, where all
    neighbours in a cluster are nearly equidistant in 512-d and no index reaches high recall.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.normal(size=(clusters, max(intrinsic, 1), dim)).astype(np.float32) / np.sqrt(dim)  # (C, r, d)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        which = rng.integers(0, clusters, m)
        x = centres[which] + (0.1 if intrinsic else 0.6) / np.sqrt(dim) * rng.normal(size=(m, dim)).astype(np.float32)
        if intrinsic:
            z = rng.normal(size=(m, intrinsic)).astype(np.float32) * 0.5
            for c in np.unique(which):
                rows = which == c
                x[rows] += z[rows] @ bases[c]  # (k, r) @ (r, d)
        yield (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_search(n: int, dim: int, factory: str, queries: int, flat_queries: int, workdir: Path,
                 intrinsic: int = 32) -> dict:
    from vistas.index import Collection, IndexConfig
    from vistas.index.search import omp_threads

    data = list(clustered_unit_vectors(n + queries, dim, intrinsic=intrinsic))
    x = np.concatenate(data)
    del data
    q, x = x[n:], x[:n]  # held-out queries from the same distribution

    t0 = time.perf_counter()
    col = Collection.create(workdir / "bench", dim=dim, space_id="sha256:bench", config=IndexConfig(factory=factory))
    with col.bulk_load():
        for start in range(0, n, 10_000):
            ids = [f"v{j}" for j in range(start, min(n, start + 10_000))]
            col.upsert(ids, x[start : start + len(ids)], [{"n": j} for j in range(start, start + len(ids))])
    build_s = time.perf_counter() - t0
    info = col.info()

    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    _, truth = flat.search(q, 10)  # (queries, 10) exact, row numbers = int(id[1:])

    for i in range(20):  # warm-up: page cache, FAISS threads
        col.search(q[i], k=10)
    times, found = [], []
    for row in q:
        t = time.perf_counter()
        hits = col.search(row, k=10)
        times.append(time.perf_counter() - t)
        found.append([int(h.id[1:]) for h in hits])
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth.tolist())]))
    p50, p99 = _percentiles(times)

    flat_times = []
    with omp_threads(1):  # as Collection.search runs single queries (see index/search.py)
        for row in q[:flat_queries]:
            t = time.perf_counter()
            flat.search(row[None], 10)
            flat_times.append(time.perf_counter() - t)
    flat_p50, flat_p99 = _percentiles(flat_times)

    snapshot = workdir / "bench" / json.loads((workdir / "bench" / "collection.json").read_text())["snapshot"]
    result = {
        "name": f"search at {n:,} x {dim}, intrinsic dim {intrinsic} (single query, k=10)",
        "index": info["index"],
        "params": info["params"],
        "recall_at_10": recall,
        "recall_at_10_tuned": info["recall_at_10"],
        "p50_ms": p50,
        "p99_ms": p99,
        "exact_flat_p50_ms": flat_p50,
        "exact_flat_p99_ms": flat_p99,
        "speedup_p50_vs_exact": flat_p50 / p50,
        "index_bytes_per_vector": snapshot.stat().st_size / n,
        "sqlite_bytes_per_vector": (workdir / "bench" / "collection.sqlite").stat().st_size / n,
        "build_s": build_s,
        "targets_met": recall >= 0.95 and p99 <= 10.0,
    }
    col.close()
    return result


def bench_batch_indexing(bundle: Path, images: int, batch: int, threads: int, workdir: Path) -> dict:
    from PIL import Image

    from vistas.index.build import build_index
    from vistas.inference.model import load_model

    model = load_model(str(bundle), threads=threads)
    rng = np.random.default_rng(0)
    src = workdir / "images"
    src.mkdir()
    pil = []
    for j in range(images):  # photo-like noise compresses badly: a fair decode cost
        img = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        (src / f"{j:05d}.png").write_bytes(buf.getvalue())
        pil.append(img)

    def model_only():
        for start in range(0, images, batch):
            model.embed_images(pil[start : start + batch])

    model_only()  # warm-up
    t = time.perf_counter()
    model_only()
    model_s = time.perf_counter() - t
    runs = []
    for r in range(2):
        t = time.perf_counter()
        build_index(str(src), workdir / f"idx{r}", model, batch_size=batch, progress=False)
        runs.append(time.perf_counter() - t)
    job_s = statistics.median(runs)
    return {
        "name": f"batch indexing vs model only ({images} PNGs, batch {batch}, images/s)",
        "model_only": images / model_s,
        "batch_job": images / job_s,
        "ratio": model_s / job_s,
        "target_met": model_s / job_s >= 0.8,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vistas bench index", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="vectors in the collection")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--factory", default="auto", help="'auto' or a FAISS factory string")
    p.add_argument("--intrinsic-dim", type=int, default=32,
                   help="directions of variation per cluster (0: isotropic clusters, the hardest case)")
    p.add_argument("--queries", type=int, default=1000, help="single queries timed (and used for recall)")
    p.add_argument("--flat-queries", type=int, default=100, help="single queries timed on the exact baseline")
    p.add_argument("--images", type=int, default=2048, help="images for the batch-indexing benchmark")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--quick", action="store_true", help="100k vectors, 200 queries, 256 images")
    p.add_argument("--skip", choices=["search", "batch"], action="append", default=[])
    p.add_argument("--out", type=Path, default=ROOT / "build" / "index_bench.json")
    args = p.parse_args(argv or [])
    if args.quick:
        args.n, args.queries, args.flat_queries, args.images = min(args.n, 100_000), 200, 50, 256
    faiss.omp_set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="vistas-bench-") as tmp:
        if "search" not in args.skip:
            results.append(bench_search(args.n, args.dim, args.factory, args.queries, args.flat_queries, Path(tmp),
                                        args.intrinsic_dim))
        if "batch" not in args.skip:
            results.append(bench_batch_indexing(args.bundle, args.images, args.batch_size, args.threads, Path(tmp)))
    print_and_save(results, args.out, digits=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

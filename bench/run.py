"""`make bench` / `vistas bench`: speed as ratios against a baseline run in the same process.

    vistas bench [--bundle models/siglip-shapes-digits/bundle] [--out build/bench.json]
    vistas bench index [--quick] [--n 1000000]     # bench/index_bench.py: search + batch indexing

1. image-embedding throughput: vistas' onnxruntime runtime vs the same checkpoint in
   PyTorch eager, same inputs, same thread count;
2. HTTP overhead: /v1/embed p50 latency at batch 1 over a real uvicorn server vs the bare
   onnxruntime call for the same image.
Each prints a table row and all go to a JSON file. Timings are medians of repeated runs.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import time
from pathlib import Path

import numpy as np

from bench.report import print_and_save

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "siglip-shapes-digits"


def _median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_runtime_vs_torch(model_dir: Path, threads: int, batch: int = 64, repeats: int = 10) -> dict:
    import torch

    from serving.runtime import OnnxRuntime
    from training.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    runtime = OnnxRuntime(model_dir / "bundle", threads=threads, max_batch=batch)
    model, _, pre = load_checkpoint(model_dir / "checkpoint")
    pixels = np.random.default_rng(0).uniform(-1, 1, (batch, 3, pre.image.height, pre.image.width)).astype(np.float32)
    x = torch.from_numpy(pixels)

    def torch_eager():
        with torch.inference_mode():
            model.encode_image(x)

    t_ort = _median_seconds(lambda: runtime.run("image", {"pixel_values": pixels}), repeats)
    t_torch = _median_seconds(torch_eager, repeats)
    return {"name": "image embedding throughput (img/s)", "batch": batch, "threads": threads,
            "vistas_onnxruntime": batch / t_ort, "torch_eager": batch / t_torch, "ratio": t_torch / t_ort}


def bench_http_overhead(model_dir: Path, threads: int, requests: int = 50) -> dict:
    import httpx
    from PIL import Image

    from serving.app import create_app
    from serving.model import load_model
    from serving.settings import Settings
    from serving.server import running_server

    bundle = str(model_dir / "bundle")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    body = {"images": [base64.b64encode(buf.getvalue()).decode()]}
    model = load_model(bundle, threads=threads)
    from vistas.images import preprocess_batch

    pixels = preprocess_batch([img], model.spec.preprocess.image)
    t_bare = _median_seconds(lambda: model.runtime.run("image", {"pixel_values": pixels}), requests)
    with running_server(create_app(Settings(bundles=[bundle], threads=threads))) as live, httpx.Client(base_url=live.url) as c:
        t_http = _median_seconds(lambda: c.post("/v1/embed", json=body).raise_for_status(), requests, warmup=5)
    return {"name": "/v1/embed p50 at batch 1 (ms)", "threads": threads, "http_p50_ms": t_http * 1e3,
            "bare_onnxruntime_ms": t_bare * 1e3, "ratio": t_http / t_bare}


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "index":
        from bench.index_bench import main as index_main

        return index_main(argv[1:])
    p = argparse.ArgumentParser(prog="vistas bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="directory with checkpoint/ and bundle/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "bench.json")
    args = p.parse_args(argv or [])
    results = [bench_runtime_vs_torch(args.model, args.threads), bench_http_overhead(args.model, args.threads)]
    print_and_save(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

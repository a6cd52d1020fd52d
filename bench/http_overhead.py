"""Benchmark 2: /v1/embed p50 at batch 1 vs the bare onnxruntime call for the same image.

The bare call is `runtime.run` on already-preprocessed pixels in this process; the HTTP side
adds base64, JSON, image decoding and resizing, the threadpool hop and the network stack.
Measured on the requested model (the target is for a real-sized tower, where inference is
most of the time) and on the tiny bundled model, whose ~1 ms inference shows the fixed
per-request cost in milliseconds.

(What was found: every request to a server on a socket made by `socket.socket()` took ~44 ms
whatever its work. asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, so
Nagle held uvicorn's response body until the client's delayed ACK. serving/server.py now
creates its sockets as TCP; `vistas serve` lets asyncio create its own and was never affected.)
"""

from __future__ import annotations

import io
import statistics

from vistas.bench.harness import b64, interleaved, median_seconds, photos, sequential_latencies, served


def bench_http_overhead(model, threads: int, requests: int = 20, rounds: int = 3) -> dict:
    from PIL import Image

    from vistas.inference.model import load_model
    from vistas.inference.onnx_runtime import OrtOptions

    # onnxruntime's own threading (idle threads spin): the fastest bare loop, nothing else running.
    local = load_model(str(model.bundle), options=OrtOptions(spinning="on"), threads=threads)
    blob = photos(1)[0]
    pixels = local.image_inputs([Image.open(io.BytesIO(blob)).convert("RGB")])
    body = {"images": [b64(blob)]}
    per_round = max(3, requests // rounds)
    with served(model.bundle, threads) as url:
        measured = interleaved(
            {
                "bare_onnxruntime_ms": lambda: 1e3 * median_seconds(lambda: local.runtime.run("image", pixels), per_round),
                "http_p50_ms": lambda: 1e3 * statistics.median(sequential_latencies(url, [body] * per_round)),
            },
            rounds,
        )
    return {
        "name": "2. /v1/embed p50 at batch 1 (ms)",
        "model": model.name,
        "threads": threads,
        **measured,
        "overhead_ms": measured["http_p50_ms"] - measured["bare_onnxruntime_ms"],
        "ratio": measured["http_p50_ms"] / measured["bare_onnxruntime_ms"],
        "target": "<= 1.1 x bare onnxruntime",
    }


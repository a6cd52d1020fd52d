"""Benchmark 3: throughput with `concurrency` clients vs the same requests one at a time.

Both over HTTP against one `vistas serve`, batch-1 requests of real photos. Concurrent
requests can only beat sequential ones when the server runs them together (cross-request
dynamic batching) or overlaps their preprocessing with inference; this measures the public
surface, so it shows whatever batching the server does.
"""

from __future__ import annotations

from bench.harness import b64, concurrent_throughput, interleaved, photos, sequential_latencies, served


def bench_batching(model, threads: int, concurrency: int = 8, requests: int = 32, rounds: int = 3) -> dict:
    bodies = [{"images": [b64(b)]} for b in photos(requests)]
    with served(model.bundle, threads) as url:
        measured = interleaved(
            {
                "sequential_req_per_s": lambda: len(bodies) / sum(sequential_latencies(url, bodies, warmup=1)),
                "concurrent_req_per_s": lambda: concurrent_throughput(url, bodies, concurrency),
            },
            rounds,
        )
    return {
        "name": f"3. batch-1 requests/s, {concurrency} concurrent vs sequential",
        "model": model.name,
        "threads": threads,
        "concurrency": concurrency,
        "requests": requests,
        **measured,
        "ratio": measured["concurrent_req_per_s"] / measured["sequential_req_per_s"],
        "target": ">= 1.5 x sequential",
    }

"""Benchmark 3: throughput with `concurrency` clients vs the same requests one at a time.

Both over HTTP against one `vistas serve`, batch-1 requests of real photos. Concurrent
requests can only beat sequential ones when the server runs them together (cross-request
dynamic batching) or overlaps their preprocessing with inference; this measures the public
surface, so it shows whatever batching the server does.

It also reports the compute ceiling: the requests/s of the model alone running at this
machine's measured fp32 matmul rate (benchmark 4's reference), over the sequential rate.
No server, however it batches, can beat that ratio on these cores; when the sequential path
already runs the model near the matmul rate (a B/16 on a CPU), the ceiling is close to 1.
"""

from __future__ import annotations

from vistas.bench.flops import matmul_gflops, vit_image_gflop
from vistas.bench.harness import b64, concurrent_throughput, interleaved, photos, sequential_latencies, served


def bench_batching(model, threads: int, concurrency: int = 8, requests: int = 32, rounds: int = 3) -> dict:
    bodies = [{"images": [b64(b)]} for b in photos(requests)]
    with served(model.bundle, threads) as url:
        measured = interleaved(
            {
                "sequential_req_per_s": lambda: len(bodies) / sum(sequential_latencies(url, bodies, warmup=1)),
                "concurrent_req_per_s": lambda: concurrent_throughput(url, bodies, concurrency),
                "matmul_fp32_gflops": lambda: matmul_gflops(threads),
            },
            rounds,
        )
    gflop = vit_image_gflop(model.image_config, *model.image_size)
    sequential = measured["sequential_req_per_s"]
    return {
        "name": f"3. batch-1 requests/s, {concurrency} concurrent vs sequential",
        "model": model.name,
        "threads": threads,
        "concurrency": concurrency,
        "requests": requests,
        **measured,
        "gflop_per_image": round(gflop, 3),
        "sequential_gflops": sequential * gflop,
        "ceiling_ratio": measured["matmul_fp32_gflops"] / gflop / sequential,
        "ratio": measured["concurrent_req_per_s"] / sequential,
        "target": ">= 1.5 x sequential",
    }

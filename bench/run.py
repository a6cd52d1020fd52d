"""`make bench` / `vistas bench`: speed as ratios against a baseline measured in the same run.

    vistas bench [--quick] [--only 1,2,3,4] [--threads 2] [--out build/bench.json]
    vistas bench index [--quick] [--n 1000000]     # bench/index_bench.py: search + batch indexing

1. image-embedding throughput: `vistas serve` over HTTP at concurrency 8 (fp32 and int8
   bundles) vs transformers' SiglipVisionModel eager in-process, same threads, same photos;
2. HTTP overhead: /v1/embed p50 at batch 1 vs the bare onnxruntime call (the model, and the
   tiny bundled model for the fixed per-request cost in ms);
3. dynamic batching: batch-1 requests/s at concurrency 8 vs the same requests sequentially
   (the model, and the tiny bundled model, where batching has per-call overhead to save);
4. achieved GFLOP/s of the image tower vs torch's fp32 matmul rate on this machine;
5. FlexiViT (bench/flexi.py): a B/16-sized model at 240 px, images/s at patch sizes 16-48 and
   the p30 : p16 speed-up against its FLOP ratio (not in --quick: it needs the B/16 export);
6. FlexiViT's adaptive patch size (bench/flexi_policy.py): the committed FlexiViT served at 2x
   the fixed policy's capacity, p50/p99, refusals, patch sizes served and the accuracy given
   up, fixed vs adaptive policy; then bench 5's B/16 the same way, one image per request
   (not in --quick: ~3 min of open-loop load);
7. FlexiViT export layout (bench/flexi_trunk.py): bench 5's model as one graph per patch size vs
   a stem graph per size + one shared trunk, images/s and bytes on disk (not in --quick).

The model is a SigLIP B/16 at 224 px with random weights, built with vistas' own
ViTConfig.from_variant and exported once (cached in build/bench/, ~2 min the first time).
`--quick` runs every benchmark on the tiny bundled model with few repeats: a smoke test of
the code paths in about a minute, not a measurement. Each benchmark prints a row and all go
to the JSON file; measurements of competing sides are interleaved (A, B, A, B) and medians kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from vistas.bench.report import print_row, save

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("1", "2", "3", "4", "5", "6", "7")


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "index":
        from vistas.bench.index_bench import main as index_main

        return index_main(argv[1:])
    p = argparse.ArgumentParser(prog="vistas bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny bundled model, few repeats: checks the benchmarks run")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark numbers (default: all)")
    p.add_argument("--threads", type=int, default=2, help="compute threads for every side (onnxruntime, torch)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "bench.json")
    args = p.parse_args(argv)  # None: sys.argv, as `python -m vistas.bench.run --only 3`
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := sorted(set(only) - set(BENCHMARKS)):
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")

    from vistas.bench.batching import bench_batching
    from vistas.bench.flexi import bench_flexi, flexi_b16_bundle
    from vistas.bench.flexi_policy import bench_flexi_policy
    from vistas.bench.flexi_trunk import bench_flexi_trunk
    from vistas.bench.flops import bench_flops
    from vistas.bench.http_overhead import bench_http_overhead
    from vistas.bench.models import bundled_tiny, siglip_b16
    from vistas.bench.throughput import bench_throughput

    tiny = bundled_tiny()
    model = tiny if args.quick else siglip_b16()
    reps = dict(rounds=1) if args.quick else {}
    c, t = args.concurrency, args.threads
    runs = {
        "1": lambda: [bench_throughput(model, t, c, requests=2 * c if args.quick else 4 * c, **reps)],
        "2": lambda: [bench_http_overhead(m, t, requests=6 if args.quick else 20, **reps) for m in dict.fromkeys([model, tiny])],
        # The B/16 is compute-bound on a CPU (batch 8 runs barely faster per image than batch 1),
        # so batching shows on the small bundled model, where per-call overhead dominates.
        # The tiny model's requests take milliseconds: 4x the requests and 5 rounds cost seconds
        # and steady its ratio against the host's load, which moves it by +-15 % in a short run.
        "3": lambda: [bench_batching(m, t, c, **({"requests": 2 * c, "rounds": 1} if args.quick else
                                                 {"requests": 16 * c, "rounds": 5} if m is tiny else {"requests": 4 * c}))
                      for m in dict.fromkeys([model, tiny])],
        "4": lambda: [bench_flops(model, t, batch=c, **reps)],
        "5": lambda: [] if args.quick else [bench_flexi(ROOT / "build" / "bench", t, batch=c)],
        "6": lambda: [] if args.quick else [
            bench_flexi_policy(t),
            bench_flexi_policy(t, bundle=flexi_b16_bundle(ROOT / "build" / "bench"), per_request=1, duration=30.0,
                               capacity_requests=24)],
        "7": lambda: [] if args.quick else [bench_flexi_trunk(ROOT / "build" / "bench", t, batch=c)],
    }
    results = []
    started = time.perf_counter()
    for key in only:
        for r in runs[key]():
            print_row(r)
            results.append(r)
    report = {
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    save(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

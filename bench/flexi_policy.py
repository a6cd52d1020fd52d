"""Benchmark 6: FlexiViT's adaptive patch size under 2x overload, against the fixed policy.

`vistas serve` on the committed FlexiViT (models/flexivit-shapes-digits: 48 px, default p=8,
serves p=4-16), once with `patch_size_policy=fixed` and once with `adaptive` (the default
thresholds: one size coarser per request while 8 or more wait, finer at 1). Every /v1/embed
request carries 16 held-out sklearn digits as PNG (lossless: the pixels bundle.json's per-size
accuracy was measured on), so the model, not HTTP, is most of a request's cost.

With `bundle` = bench 5's B/16-sized FlexiViT at 240 px (random weights: no accuracies, so no
points given up; one image per request), the model's compute is nearly all of a request's cost,
which is where a coarser patch can buy latency; on the tiny model decoding and HTTP dominate.

First the fixed policy's capacity: requests/s of 4 closed-loop clients. Then Poisson arrivals
at twice that rate for `duration` s, the same seeded schedule against each policy in turn (not
interleaved: the adaptive policy's state is the queue). The row gives, per policy, the p50 and
p99 latency of answered requests (from each request's scheduled arrival), the share refused
(429 / 503), answered requests/s until the last answer, the share of images at each patch size
(/metrics), and the accuracy given up: the default size's accuracy minus the image-weighted mean
of the sizes' accuracies in bundle.json, in points (digits, and the seen shapes).

    vistas bench --only 6
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np

from vistas.bench.harness import Client, b64, concurrent_throughput, encode, open_loop, served

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "flexivit-shapes-digits" / "bundle"
TASKS = {"digits": "digits/accuracy", "shapes_seen": "shapes_seen/accuracy"}


def digit_bodies(image_size: int, per_request: int) -> list[dict]:
    """The sklearn digits test split as PNGs, `per_request` to a body."""
    from vistas.training.data import get_dataset

    blobs = []
    for example in get_dataset("digits", split="test", image_size=image_size):
        buf = io.BytesIO()
        example.image.save(buf, format="PNG")
        blobs.append(b64(buf.getvalue()))
    return [{"images": blobs[i : i + per_request]} for i in range(0, len(blobs) - per_request + 1, per_request)]


def images_per_size(url: str) -> dict[int, float]:
    """/metrics' `vistas_patch_size_images_total` -> {patch size: images so far}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        if family.name == "vistas_patch_size_images":
            out.update({int(s.labels["patch_size"]): s.value for s in family.samples if s.name.endswith("_total")})
    return out


def _overloaded(url: str, bodies: list[dict], rate: float, duration: float, seed: int, spec) -> dict:
    before = images_per_size(url)
    t0 = time.perf_counter()
    results = open_loop(url, bodies, rate, duration, seed)
    elapsed = time.perf_counter() - t0  # to the last answer: a backlog drains at the server's own pace
    after = images_per_size(url)
    images = {p: after.get(p, 0) - before.get(p, 0) for p in after}
    total = sum(images.values()) or 1
    share = {p: images.get(p, 0) / total for p in spec.patch_sizes}
    latencies = np.array([s for s, status in results if status == 200]) * 1000
    statuses = [status for _, status in results]
    # A bundle without measured accuracies (bench 5's random-weight B/16) gives up nothing it knows of.
    default = spec.patch_sizes[spec.default_patch_size].get("eval", {})
    given_up = {
        task: 100 * (default[key] - sum(share[p] * spec.patch_sizes[p]["eval"][key] for p in share))
        for task, key in TASKS.items() if key in default
    }
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
        "refused": round(sum(s in (429, 503) for s in statuses) / len(statuses), 3),
        "failed": round(sum(s not in (200, 429, 503) for s in statuses) / len(statuses), 3),
        "req_per_s": round(len(latencies) / elapsed, 1),
        **{f"share_p{p}": round(share[p], 3) for p in spec.patch_sizes if p >= spec.default_patch_size},
        **{f"{task}_points_given_up": round(v, 2) for task, v in given_up.items()},
    }


def _warm(url: str, body: dict, sizes: list[int]) -> None:
    """One request at each size first: every graph's first-call allocations out of the timing."""
    with Client(url) as client:
        for raw in encode([{**body, "patch_size": p} for p in sizes]):
            client.post("/v1/embed", raw)


def bench_flexi_policy(threads: int, duration: float = 12.0, overload: float = 2.0, per_request: int = 16,
                       concurrency: int = 4, capacity_requests: int = 96, seed: int = 0, bundle: Path = BUNDLE) -> dict:
    from vistas.bundle import load_bundle_spec

    spec = load_bundle_spec(bundle)
    bodies = digit_bodies(spec.preprocess.image.height, per_request)
    ladder = [p for p in sorted(spec.patch_sizes) if p >= spec.default_patch_size]
    row = {}
    for policy in ("fixed", "adaptive"):
        with served(bundle, threads, env={"VISTAS_PATCH_SIZE_POLICY": policy}) as url:
            _warm(url, bodies[0], ladder)
            if policy == "fixed":
                capacity = concurrent_throughput(url, [bodies[i % len(bodies)] for i in range(capacity_requests)], concurrency)
            row |= {f"{policy}_{k}": v for k, v in _overloaded(url, bodies, overload * capacity, duration, seed, spec).items()}
    return {
        "name": f"6. FlexiViT patch-size policy at {overload:g}x overload" + ("" if bundle == BUNDLE else f" ({spec.name})"),
        "model": spec.name,
        "threads": threads,
        "images_per_request": per_request,
        "capacity_req_per_s": round(capacity, 1),
        "offered_req_per_s": round(overload * capacity, 1),
        "seconds": duration,
        **row,
        "p99_fixed_over_adaptive": round(row["fixed_p99_ms"] / row["adaptive_p99_ms"], 2)
        if row["fixed_p99_ms"] and row["adaptive_p99_ms"] else None,
    }

"""Recall against exact search, and tuning a search knob to a target recall.

recall@k = |approximate top-k ∩ exact top-k| / k, averaged over queries (the measure of
ANN-Benchmarks, Aumüller et al., arXiv 1807.05614). The queries are a sample of the collection's
own vectors: the distribution the index was built on, with no outside data needed.

Functions over numpy arrays, in the manner of faiss.contrib.evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import faiss
import numpy as np


def exact_top_k(
    batches: Iterable[tuple[np.ndarray, np.ndarray]], queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k (scores (nq, k), keys (nq, k)) over (keys, vectors) batches, streamed.

    Only one batch is in memory at a time, so ground truth for a million vectors needs no
    more RAM than a batch. Missing neighbours (fewer than k vectors) are -1.
    """
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for keys, vectors in batches:
        scores = queries @ vectors.T  # (nq, b)
        kk = min(k, len(keys))
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]  # (nq, kk)
        heap.add_result(np.take_along_axis(scores, top, axis=1).astype(np.float32), keys[top].astype(np.int64))
    heap.finalize()
    return heap.D, heap.I


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each query's exact top-k that `found` (nq, >=k) holds in its first k."""
    hits = 0
    total = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        t = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], t))
        total += len(t)
    return hits / total if total else 1.0


def tune_knob(
    measure: Callable[[int], float], low: int, high: int, target: float
) -> tuple[int, float]:
    """The smallest knob value in [low, high] whose measured recall reaches `target`.

    Recall grows with nprobe / efSearch (more of the index is visited), so: double from `low`
    until the target is met, then bisect between the last miss and the first hit. Returns
    (value, recall); `high` and its recall when even that misses the target.
    """
    miss, value = None, low
    recall = measure(value)
    while recall < target and value < high:
        miss, value = value, min(high, value * 2)
        recall = measure(value)
    if recall < target or miss is None:
        return value, recall
    while value - miss > max(1, miss // 8):  # within ~12% of the smallest: good enough
        mid = (miss + value) // 2
        r = measure(mid)
        if r >= target:
            value, recall = mid, r
        else:
            miss = mid
    return value, recall

"""Recall against exact search, and tuning an index's search knob to a target recall.

recall@k = |approximate top-k ∩ exact top-k| / k, averaged over queries (the measure of
ANN-Benchmarks, Aumüller et al., arXiv 1807.05614). The queries are made from the collection's
own vectors (see `tuning_queries`): the distribution the index was built on, with no outside
data needed.

`recall_at_k` and `tune_knob` are functions over numpy arrays, in the manner of
faiss.contrib.evaluation; `tune` applies them to a freshly built index (efSearch for HNSW,
nprobe for IVF, and the re-rank depth of lossy codes) and records the recall it measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from vistas.index.indexes import IndexConfig, is_lossy, knob_range
from vistas.index.search import IndexState, exact_top_k, index_search
from vistas.index.store import ItemStore

log = logging.getLogger(__name__)

RECALL_K = 10
MAX_RERANK = 64  # candidates per result a lossy index may re-score to reach its target recall


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


def tune(state: IndexState, store: ItemStore, config: IndexConfig, n: int) -> None:
    """Set the knob to the smallest value reaching config.target_recall; record the recall.

    `store` holds the n items `state` was built from (read in one transaction).
    """
    state.rerank_factor = config.rerank_factor
    if n == 0 or state.exact:  # a flat scan is exact search: recall 1 by construction
        state.recall = 1.0
        return
    queries = tuning_queries(store, config.tune_queries)
    k = min(RECALL_K, n)
    _, truth = exact_top_k(store.iter_vectors(), queries, k)

    def measure(value: int | None) -> float:
        _, found = index_search(state, store, queries, k, knob_value=value)
        return recall_at_k(found, truth, k)

    if state.knob_name is None:  # an exhaustive scan of lossy codes (e.g. "PQ16"): measured
        state.recall = measure(None)
        return
    low, high = knob_range(state.index)
    while True:
        state.knob_value, state.recall = tune_knob(measure, low, high, config.target_recall)
        # Codes too coarse for the target even when every list is scanned: re-score more candidates.
        if state.recall >= config.target_recall or not is_lossy(state.factory) or state.rerank_factor >= MAX_RERANK:
            break
        state.rerank_factor *= 2
    if state.recall < config.target_recall:
        log.warning(
            "collection %s: %s reaches recall@10 %.3f at most (%s=%d), below the target %.2f; "
            "use a larger index (more PQ bytes, larger M) or 'Flat'",
            store.name, state.factory, state.recall, state.knob_name, state.knob_value, config.target_recall,
        )


def tuning_queries(store: ItemStore, n: int, seed: int = 1) -> np.ndarray:
    """Queries like new data: sampled vectors moved, in a random direction, as far as each one's
    nearest neighbour is. The sampled vectors themselves would be too easy: they sit in the
    index, and a graph search lands right on them."""
    keys, x = store.sample_vectors(n, seed=seed)  # (s, d)
    if len(x) < 2:
        return x
    scores, _ = exact_top_k(store.iter_vectors(), x, 2)  # the first hit is the vector itself
    radius = np.sqrt(np.clip(2 - 2 * scores[:, 1:2], 0, 4))  # (s, 1) distance to the nearest other
    noise = np.random.default_rng(seed).normal(size=x.shape)
    q = x + radius * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

"""Searching one FAISS index of a collection: approximate, exact, filtered, re-ranked.

How a query with a metadata filter gets its k results (when k items match), by selectivity:

  * Flat index: FAISS searches only the matching keys (an IDSelector); a flat scan is exact.
  * few matches (<= EXACT_FILTER_MAX, or <= the candidates a lossy index would fetch): exact
    inner products over the matching items' vectors read from SQLite. Cheaper than any index
    walk for small sets, and exact.
  * many matches: the index searches with an IDSelector (FAISS skips non-matching ids inside
    the search), its knob widened by 1/selectivity (efSearch / nprobe), since only that
    fraction of what it visits can be returned. A query that still gets fewer than k results
    falls back to the exact search over the matching items.

Without a filter, deleted items the index still holds (tombstones, see collection.py) are
excluded the same way (an IDSelector of "not a tombstone"), with the same fallback.

Lossy indexes (PQ, SQ) fetch rerank_factor * k candidates and re-score them exactly from the
SQLite vectors, so every returned score is the true cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from vistas.index.indexes import can_remove, is_lossy, knob, knob_range, search_params
from vistas.index.store import ItemStore

EXACT_FILTER_MAX = 4096
# FAISS parallelises over queries with OpenMP; for a handful of queries the fork/join costs more
# than the search (measured: HNSW at 29k x 512, one query: 0.5 ms on 1 thread, 16 ms on 2 under load).
SERIAL_BELOW = 16


@contextmanager
def omp_threads(n: int):
    """OpenMP threads for FAISS calls made by this thread (the setting is per calling thread)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class IndexState:
    """The FAISS side of a collection; a rebuild replaces it whole."""

    index: faiss.Index
    factory: str
    knob_value: int | None = None  # tuned efSearch / nprobe (None: the index has no knob)
    recall: float | None = None  # recall@10 against exact search, measured when built
    built_for: int = 0  # items the index type was chosen for (auto re-chooses when that doubles)
    rerank_factor: int = 4  # lossy types: candidates fetched per result, then re-scored exactly

    def __post_init__(self):
        self.tombstones: set[int] = set()  # keys the index holds whose items are deleted or replaced
        self._tomb_sel = None

    @property
    def knob_name(self) -> str | None:
        return knob(self.index)

    @property
    def exact(self) -> bool:
        return self.knob_name is None and not is_lossy(self.factory)

    @property
    def removable(self) -> bool:
        return can_remove(self.index)

    def bury(self, keys) -> None:
        if len(keys):
            self.tombstones.update(int(k) for k in keys)
            self._tomb_sel = None

    def compact_in_place(self) -> None:
        """Remove the tombstoned vectors (types that can remove; others need a rebuild)."""
        if self.tombstones:
            self.index.remove_ids(faiss.IDSelectorBatch(np.fromiter(self.tombstones, np.int64)))
            self.tombstones.clear()
            self._tomb_sel = None

    def tombstone_selector(self):
        if not self.tombstones:
            return None
        if self._tomb_sel is None:
            inner = faiss.IDSelectorBatch(np.fromiter(self.tombstones, np.int64))
            self._tomb_sel = faiss.IDSelectorNot(inner)
            self._tomb_sel.referenced = inner  # the C++ object points at it: keep it alive
        return self._tomb_sel


def index_search(
    state: IndexState,
    store: ItemStore,
    queries: np.ndarray,
    k: int,
    *,
    sel=None,
    widen: float = 1.0,
    knob_value: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (nq, k), keys (nq, k)) from the index; missing results have key -1.

    `widen` multiplies the tuned knob; `knob_value` overrides it (tuning).
    """
    lossy = is_lossy(state.factory)
    depth = k * state.rerank_factor if lossy else k
    value = knob_value if knob_value is not None else state.knob_value
    if state.knob_name is not None:
        low, high = knob_range(state.index)
        value = int(np.clip(np.ceil((value or low) * widen), low, high))
        if state.knob_name == "efSearch":
            value = max(value, depth)
    params = search_params(state.index, value, sel)
    if len(queries) < SERIAL_BELOW:
        with omp_threads(1):
            scores, keys = state.index.search(queries, depth, params=params)  # (nq, depth)
    else:
        scores, keys = state.index.search(queries, depth, params=params)
    if lossy:
        return rerank(store, queries, keys, k)
    return scores, keys


def rerank(store: ItemStore, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of each query's candidate keys (nq, c) from SQLite vectors; top k of them."""
    keys, vectors = store.vectors_of(np.unique(candidates[candidates >= 0]))  # (u,), (u, d)
    if len(keys) == 0:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    order = np.argsort(keys)
    keys, vectors = keys[order], vectors[order]
    rows = np.clip(np.searchsorted(keys, candidates), 0, len(keys) - 1)  # (nq, c)
    valid = (candidates >= 0) & (keys[rows] == candidates)  # dead keys are not in `keys`
    scores = np.einsum("qcd,qd->qc", vectors[rows], queries)
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out_scores = np.take_along_axis(scores, top, axis=1)
    out_keys = np.where(np.isfinite(out_scores), np.take_along_axis(candidates, top, axis=1), -1)
    return out_scores, out_keys


def exact_search(queries: np.ndarray, keys: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among the given (keys (m,), vectors (m, d)): (scores (nq, k), keys (nq, k))."""
    out_scores = np.full((len(queries), k), -np.inf, np.float32)
    out_keys = np.full((len(queries), k), -1, np.int64)
    if len(keys) == 0:
        return out_scores, out_keys
    scores = queries @ vectors.T  # (nq, m)
    kk = min(k, len(keys))
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    out_scores[:, :kk] = np.take_along_axis(top_scores, order, axis=1)
    out_keys[:, :kk] = keys[np.take_along_axis(top, order, axis=1)]
    return out_scores, out_keys


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


def exact_search_all(store: ItemStore, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over every item, streamed from SQLite (the last-resort fallback)."""
    return exact_top_k(store.iter_vectors(), queries, k)


def exact_scan(store: ItemStore, queries: np.ndarray, k: int, filter: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k straight from SQLite, no index (used while the index is behind: bulk loads)."""
    if filter:
        return exact_search(queries, *store.vectors_of(store.match(filter)), k)
    return exact_search_all(store, queries, k)


def search_filtered(
    state: IndexState, store: ItemStore, queries: np.ndarray, k: int, allowed: np.ndarray, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k among the `allowed` keys (live items matching a filter); see the module docstring."""
    k = min(k, len(allowed))
    if state.exact:
        sel = faiss.IDSelectorBatch(allowed)
        return index_search(state, store, queries, k, sel=sel)
    if len(allowed) <= max(EXACT_FILTER_MAX, k * state.rerank_factor):
        return exact_search(queries, *store.vectors_of(allowed), k)
    sel = faiss.IDSelectorBatch(allowed)
    widen = max(1.0, total / len(allowed))
    scores, keys = index_search(state, store, queries, k, sel=sel, widen=widen)
    short = (keys >= 0).sum(axis=1) < k
    if short.any():
        vectors_of_allowed = store.vectors_of(allowed)
        scores[short], keys[short] = exact_search(queries[short], *vectors_of_allowed, k)
    return scores, keys


def search_all(
    state: IndexState, store: ItemStore, queries: np.ndarray, k: int, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k among all live items: the index minus its tombstones, widened then exact when short."""
    k = min(k, total)
    sel = state.tombstone_selector()
    ntotal = max(1, state.index.ntotal)
    widen = ntotal / max(1, ntotal - len(state.tombstones))
    scores, keys = index_search(state, store, queries, k, sel=sel, widen=widen)
    short = (keys >= 0).sum(axis=1) < k
    for factor in (4, 16):
        if not short.any() or state.knob_name is None:
            break
        s, key = index_search(state, store, queries[short], k, sel=sel, widen=widen * factor)
        scores[short], keys[short] = s, key
        short = (keys >= 0).sum(axis=1) < k
    if short.any():
        scores[short], keys[short] = exact_search_all(store, queries[short], k)
    return scores, keys

"""FAISS index types of a collection: factory strings, the automatic choice, search knobs.

Every index is inner product over unit vectors (cosine similarity) and is keyed by the store's
int64 keys: IVF indexes store ids natively, every other type is wrapped in an `IDMap`.

The automatic choice ("auto"), by collection size n, dimension d and memory budget:

  n * d <= EXACT_MAX_FLOPS        "Flat"       exact; a brute-force scan stays in single-digit ms
  HNSW fits the memory budget      "HNSW32"     graph search (Malkov & Yashunin, arXiv 1603.09320);
                                                4d + 2*M*4 bytes per vector, efConstruction 128,
                                                efSearch tuned
  otherwise                        "IVF{L},PQ{m}"  inverted lists + product quantisation (Jegou et
                                                al., TPAMI 2011), m bytes per vector, nprobe tuned,
                                                results re-ranked exactly from the SQLite vectors

The knobs a search takes (efSearch / nprobe) are tuned to a target recall by index/quality.py
and stored with the collection.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import faiss
import numpy as np

AUTO = "auto"
# Below this many multiply-adds per query a flat scan is fast enough (50k x 512 ~ 5 ms on one
# core with BLAS) and exact, with nothing to train or tune.
EXACT_MAX_FLOPS = 50_000 * 512
HNSW_M = 32
# Candidates kept while linking a new vector into the graph. FAISS's default (40) builds a poor
# graph for 512-d clustered data: measured at 200k x 512 (bench/index_bench.py data), recall@10
# at efSearch=64 is 0.91 with 40 and 1.00 with 160, for ~3x the build time (hnswlib uses 200).
HNSW_EF_CONSTRUCTION = 128
# Lossy codes: their scores are approximate, so hits are re-scored exactly from SQLite vectors.
_LOSSY = re.compile(r"PQ|SQ|LSH|RQ|LSQ|PRQ|PLSQ")


@dataclass(frozen=True)
class IndexConfig:
    """How a collection's FAISS index is chosen and tuned."""

    factory: str = AUTO  # "auto" or a FAISS factory string: "Flat", "HNSW32", "IVF1024,PQ64", ...
    target_recall: float = 0.95  # recall@10 against exact search that tuning aims for
    memory_budget: int = 8 << 30  # bytes of RAM the index may take (the automatic choice)
    rerank_factor: int = 4  # lossy indexes fetch rerank_factor * k candidates and re-score them exactly
    tune_queries: int = 200  # sample queries for measuring recall (drawn from the collection)

    def __post_init__(self):
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")
        if self.rerank_factor < 1:
            raise ValueError(f"rerank_factor must be >= 1, got {self.rerank_factor}")


def choose_factory(n: int, dim: int, memory_budget: int) -> str:
    """The automatic index type for n vectors of `dim` (see the module docstring)."""
    if n * dim <= EXACT_MAX_FLOPS:
        return "Flat"
    if n * hnsw_bytes_per_vector(dim) <= memory_budget:
        return f"HNSW{HNSW_M}"
    nlist = int(np.clip(4 * math.sqrt(n), 16, 65536))
    return f"IVF{_pow2(nlist)},PQ{pq_bytes(dim)}"


def hnsw_bytes_per_vector(dim: int, m: int = HNSW_M) -> int:
    # full vector + level-0 links (2M int32) + the id map; upper levels add ~1/M more.
    return 4 * dim + 2 * m * 4 + 8 + 8


def pq_bytes(dim: int) -> int:
    """Sub-quantisers for PQ: ~d/8 one-byte codes (64 for d=512), a divisor of d."""
    target = max(1, dim // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def _pow2(x: int) -> int:
    return 1 << round(math.log2(x))


def is_lossy(factory: str) -> bool:
    return bool(_LOSSY.search(factory))


def new_index(factory: str, dim: int) -> faiss.Index:
    """An empty index for `factory`, keyed by our ids (IDMap unless it is an IVF index)."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(
            f"invalid FAISS factory string {factory!r} for dim {dim}: {str(e).splitlines()[0]}; "
            f"examples: 'Flat', 'HNSW32', 'IVF1024,PQ64', or 'auto'"
        ) from None
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efConstruction = max(inner.hnsw.efConstruction, HNSW_EF_CONSTRUCTION)
    if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap):
        index = faiss.IndexIDMap(index)
    return index


def training_size(index: faiss.Index, n: int) -> int:
    """How many vectors to train on: enough for k-means to be stable, no more than needed."""
    if index.is_trained:
        return 0
    ivf = faiss.try_extract_index_ivf(index)
    nlist = ivf.nlist if ivf is not None else 256
    return min(n, max(64 * nlist, 65_536))


def train(index: faiss.Index, sample: np.ndarray) -> None:
    if index.is_trained:
        return
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and len(sample) < ivf.nlist:
        raise ValueError(
            f"cannot train {ivf.nlist} inverted lists on {len(sample)} vectors; use a smaller IVF "
            f"(e.g. 'IVF{_pow2(max(1, len(sample) // 39))},...') or 'auto'"
        )
    index.train(np.ascontiguousarray(sample, dtype=np.float32))


def index_ids(index: faiss.Index) -> np.ndarray:
    """Every id stored in the index (live or tombstoned), int64."""
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.try_extract_index_ivf(index)
    invlists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def can_remove(index: faiss.Index) -> bool:
    """False for types whose vectors cannot be removed in place (HNSW): compaction rebuilds them."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return not isinstance(inner, (faiss.IndexHNSW, faiss.IndexNSG))


def knob(index: faiss.Index) -> str | None:
    """The name of the search-time speed/recall knob of this index type."""
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return "efSearch" if isinstance(inner, faiss.IndexHNSW) else None


def knob_range(index: faiss.Index) -> tuple[int, int]:
    """(smallest, largest) sensible value of the knob."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return 1, ivf.nlist
    return 16, 4096


def search_params(index: faiss.Index, value: int | None, sel: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """FAISS per-query search parameters: the knob at `value` and an id selector."""
    name = knob(index)
    if name == "nprobe":
        params = faiss.SearchParametersIVF()
        params.nprobe = int(value)
    elif name == "efSearch":
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(value)
    elif sel is None:
        return None
    else:
        params = faiss.SearchParameters()
    if sel is not None:
        params.sel = sel
    return params

"""A collection: SQLite items (the truth) + a FAISS index (a rebuildable cache).

A collection directory holds
  collection.sqlite  items: string id, metadata JSON, float32 vector (see store.py)
  index.faiss        FAISS snapshot, "IDMap2,Flat" inner product, ids = SQLite keys
  collection.json    name, dim, space_id, index factory string, count, and the
                     SQLite generation the snapshot reflects

Writes commit to SQLite first (the durability point), then update the in-memory FAISS
index; `flush()` writes the snapshot. `open()` rebuilds the index from SQLite whenever
the snapshot is missing, unreadable, or does not match SQLite's generation or count.

Vectors are unit-length float32, so inner product is cosine similarity. Inputs are
L2-normalised here; NaN/inf, zero vectors and wrong dims are refused.

Filtered search is exact: SQLite selects the keys whose metadata matches, and FAISS
searches only those through an IDSelector, so k results come back whenever k items
match, however far they are from the unfiltered top-k.

Not for several processes writing one directory at once: one process owns a collection.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from index.store import SQLITE_FILE, ItemStore

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
INFO_FILE = "collection.json"
# Exact inner-product search keyed by our int64 ids. IDMap2 (not IDMap) keeps the
# id -> slot map, so vectors can be reconstructed and removed by id.
INDEX_FACTORY = "IDMap2,Flat"


class SpaceMismatchError(ValueError):
    """Vectors from one embedding space offered to a collection of another."""

    def __init__(self, expected: str, got: str, collection: str = ""):
        where = f"collection {collection!r}" if collection else "this collection"
        super().__init__(
            f"embedding space mismatch: {where} holds vectors of space {expected!r}, but these come from "
            f"{got!r}. Embed with the model that built the collection, or index into a new collection."
        )
        self.expected, self.got = expected, got


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # inner product of unit vectors = cosine similarity, in [-1, 1]
    metadata: dict


class Collection:
    """Upsert, delete, get and search unit vectors with string ids and JSON metadata.

    Make one with `Collection.create(path, dim=..., space_id=...)`, reload with
    `Collection.open(path)`. All methods are thread-safe: one lock serialises them,
    since neither the SQLite connection nor a FAISS index being modified may be shared.
    """

    def __init__(self, path: Path, store: ItemStore, index: faiss.Index, *, dirty: bool):
        self.path = path
        self._store = store
        self._index = index
        self._dirty = dirty  # the in-memory index is ahead of the snapshot on disk
        self._lock = threading.RLock()

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, *, dim: int, space_id: str, name: str | None = None) -> "Collection":
        path = Path(path)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not isinstance(space_id, str) or not space_id:
            raise ValueError(f"space_id must be a non-empty string (the bundle's space id), got {space_id!r}")
        path.mkdir(parents=True, exist_ok=True)
        store = ItemStore.create(path / SQLITE_FILE, dim=dim, space_id=space_id, name=name or path.name)
        collection = cls(path, store, _new_index(dim), dirty=True)
        collection.flush()
        return collection

    @classmethod
    def open(cls, path: str | Path) -> "Collection":
        path = Path(path)
        store = ItemStore.open(path / SQLITE_FILE)
        index, problem = _load_snapshot(path, store)
        if problem is None:
            return cls(path, store, index, dirty=False)
        log.warning("collection %s: rebuilding the FAISS index from SQLite (%s)", path, problem)
        collection = cls(path, store, _rebuild(store), dirty=True)
        collection.flush()
        return collection

    def flush(self) -> None:
        """Write the FAISS snapshot if it is behind. Call after each write batch.

        A no-op when nothing changed since the last flush. Skipping it loses nothing
        (SQLite has every committed write); the next `open` then rebuilds the index.
        """
        with self._lock:
            if not self._dirty:
                return
            _atomic_write(self.path / INDEX_FILE, lambda tmp: faiss.write_index(self._index, str(tmp)))
            info = {
                "name": self.name,
                "dim": self.dim,
                "space_id": self.space_id,
                "index": INDEX_FACTORY,
                "metric": "inner_product",
                "count": self._index.ntotal,
                "generation": self._store.generation,  # the SQLite write generation this snapshot reflects
            }
            _atomic_write(self.path / INFO_FILE, lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))
            self._dirty = False

    def close(self) -> None:
        with self._lock:
            self.flush()
            self._store.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- properties ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._store.name

    @property
    def dim(self) -> int:
        return self._store.dim

    @property
    def space_id(self) -> str:
        return self._store.space_id

    @property
    def count(self) -> int:
        with self._lock:
            return self._index.ntotal

    def info(self) -> dict:
        """The body of `GET /v1/collections/{name}`."""
        return {"name": self.name, "count": self.count, "space": self.space_id, "index": INDEX_FACTORY}

    def check_space(self, space_id: str) -> None:
        if space_id != self.space_id:
            raise SpaceMismatchError(self.space_id, space_id, self.name)

    # --- writes --------------------------------------------------------------

    def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadata: list[dict | None] | None = None,
        *,
        space_id: str | None = None,
    ) -> int:
        """Insert new ids, replace existing ones (vector and metadata). Returns len(ids).

        vectors: (n, dim), normalised here. Duplicate ids within one call are refused:
        which of two rows should win is the caller's decision, not ours to guess.
        `space_id`, when given, must be the collection's (SpaceMismatchError otherwise).
        """
        if space_id is not None:
            self.check_space(space_id)
        ids = _check_ids(ids, unique=True)
        x = _unit_rows(vectors, self.dim, "vectors")  # (n, dim)
        if len(x) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(x)} vectors; they must pair up one to one")
        if metadata is None:
            metadata = [{}] * len(ids)
        if len(metadata) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(metadata)} metadata entries")
        metadata = [m if m is not None else {} for m in metadata]
        for id, m in zip(ids, metadata):
            if not isinstance(m, dict):
                raise ValueError(f"metadata of item {id!r} must be a dict, got {type(m).__name__}")
        if not ids:
            return 0
        with self._lock:
            keys, replaced = self._store.upsert(ids, x, metadata)  # committed: durable from here
            if len(replaced):
                self._index.remove_ids(replaced)
            self._index.add_with_ids(x, keys)
            self._dirty = True
        return len(ids)

    def delete(self, ids: list[str]) -> int:
        """Delete ids; unknown ids are ignored. Returns how many items were deleted."""
        ids = list(dict.fromkeys(_check_ids(ids, unique=False)))
        if not ids:
            return 0
        with self._lock:
            keys = self._store.delete(ids)
            if len(keys):
                self._index.remove_ids(keys)
                self._dirty = True
        return len(keys)

    # --- reads ---------------------------------------------------------------

    def get(self, id: str) -> dict | None:
        """{"id", "metadata", "vector": float32 (dim,)} or None."""
        with self._lock:
            return self._store.get(id)

    def search(
        self, vector: np.ndarray, k: int = 10, filter: dict | None = None, *, space_id: str | None = None
    ) -> list[Hit]:
        """Top-k items for one query vector, (dim,) or (1, dim); best first."""
        q = _unit_rows(vector, self.dim, "query vector")
        if len(q) != 1:
            raise ValueError(f"search takes one query vector, got {len(q)}; use search_batch for several")
        return self.search_batch(q, k, filter, space_id=space_id)[0]

    def search_batch(
        self, vectors: np.ndarray, k: int = 10, filter: dict | None = None, *, space_id: str | None = None
    ) -> list[list[Hit]]:
        """Top-k items for each query row of vectors (q, dim); one list per query, best first.

        `filter` (see index/filters.py) restricts the search to matching items, exactly.
        """
        if space_id is not None:
            self.check_space(space_id)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        q = _unit_rows(vectors, self.dim, "query vectors")  # (q, dim)
        with self._lock:
            params, n = None, self._index.ntotal
            if filter:
                allowed = self._store.match(filter)
                params, n = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed)), len(allowed)
            k = min(int(k), n)
            if k == 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            scores, keys = self._index.search(q, k, params=params)  # (q, k) each; key -1 = no result
            found = self._store.lookup(np.unique(keys[keys >= 0]))
        results = []
        for row_scores, row_keys in zip(scores.tolist(), keys.tolist()):
            row = [(found[key], s) for s, key in zip(row_scores, row_keys) if key in found]
            results.append([Hit(id=id, score=s, metadata=meta) for (id, meta), s in row])
        return results


# --- helpers ------------------------------------------------------------------


def _new_index(dim: int) -> faiss.Index:
    return faiss.index_factory(dim, INDEX_FACTORY, faiss.METRIC_INNER_PRODUCT)


def _rebuild(store: ItemStore) -> faiss.Index:
    index = _new_index(store.dim)
    for keys, vectors in store.iter_vectors():
        index.add_with_ids(vectors, keys)
    return index


def _load_snapshot(path: Path, store: ItemStore) -> tuple[faiss.Index | None, str | None]:
    """(index, None) when the snapshot on disk matches SQLite, else (None, what is wrong)."""
    index_file, info_file = path / INDEX_FILE, path / INFO_FILE
    if not index_file.is_file():
        return None, f"{INDEX_FILE} is missing"
    try:
        generation = json.loads(info_file.read_text())["generation"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{INFO_FILE} is missing or unreadable ({e!r})"
    if generation != store.generation:
        return None, f"snapshot is at write generation {generation}, SQLite at {store.generation}"
    try:
        index = faiss.read_index(str(index_file))
    except RuntimeError as e:
        return None, f"{INDEX_FILE} is unreadable ({str(e).splitlines()[0] if str(e) else e!r})"
    if not isinstance(index, faiss.IndexIDMap2) or index.d != store.dim:
        return None, f"{INDEX_FILE} is not an {INDEX_FACTORY} index of dim {store.dim}"
    if index.ntotal != store.count():
        return None, f"snapshot holds {index.ntotal} vectors, SQLite {store.count()}"
    return index, None


def _atomic_write(path: Path, write) -> None:
    """write(tmp_path) then fsync and rename over `path`: readers see the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_ids(ids, *, unique: bool) -> list[str]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
        raise ValueError(f"ids must be a list of strings, got {type(ids).__name__}")
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise ValueError(f"ids must be non-empty strings; got {bad[:5]!r}")
    if unique and len(set(ids)) != len(ids):
        dups = [i for i, n in Counter(ids).items() if n > 1]
        raise ValueError(f"duplicate ids in one upsert: {dups[:5]!r}; send each id once")
    return list(ids)


def _unit_rows(x, dim: int, what: str) -> np.ndarray:
    """Array-like (dim,) or (n, dim) -> float32 (n, dim) with unit L2 rows, or ValueError."""
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numeric, shape (n, {dim}): {e}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}) or ({dim},) for this collection, got {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ValueError(f"{what} contain NaN or inf (rows {np.flatnonzero(~finite)[:5].tolist()})")
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)  # (n, 1); f64: no overflow
    if (norms == 0).any():
        raise ValueError(f"{what} contain all-zero rows {np.flatnonzero(norms[:, 0] == 0)[:5].tolist()}")
    return np.ascontiguousarray(x / norms, dtype=np.float32)

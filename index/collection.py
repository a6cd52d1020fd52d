"""A collection: SQLite items + write-ahead log (the truth) and a FAISS index (a snapshot + replay).

A collection directory holds
  collection.sqlite     items (string id, metadata JSON, float32 vector), the write-ahead log,
                        thumbnails and batch-job progress (see store.py)
  index-<seq>-<r>.faiss the FAISS snapshot: every logged write up to log seq <seq>
  collection.json       the collection's description, naming the current snapshot
                        (both: see snapshots.py)

Durability. A write (upsert/delete) commits its items and its log entries in one SQLite
transaction and only then returns: that commit is the acknowledgement. The FAISS index in memory
is updated after it. Snapshots are written atomically (the snapshot, then collection.json, each
by vistas/atomic.py: temp file, fsync, rename, directory fsync): collection.json always names a
complete snapshot. Opening loads that snapshot and replays the log entries after its seq, so
`kill -9` at any moment loses no acknowledged write and leaves nothing half-written. A missing,
corrupt or inconsistent snapshot is rebuilt from the items. The log is truncated up to a
snapshot's seq once that snapshot is durable, and a snapshot is taken whenever the log since the
last one exceeds max(SNAPSHOT_MIN_OPS, 10% of the collection), so replay stays short.

Deletes. A delete or an upsert that replaces a vector kills the item's key (keys are never
reused). The dead key stays in the FAISS index as a tombstone that every search excludes (see
search.py). Compaction removes tombstones: in place for types that can remove ids (Flat, IVF),
by a rebuild for types that cannot (HNSW); it runs when tombstones exceed COMPACT_FRACTION of the
index, and on `compact()`.

Index types: chosen by size and memory budget when the config says "auto", else a FAISS factory
string (see indexes.py). `rebuild()` builds a fresh index from the items (trained once on a
sample, filled batch by batch, tuned to the target recall by quality.py) without holding the
lock, then catches up with the writes made meanwhile and swaps it in. With "auto", a collection
whose size doubled since its type was chosen, and whose best type changed, is rebuilt in the
background.

One process owns a collection: `create` and `open` take an exclusive lock on its directory
(lock.py) and `close` drops it, so a second writer (a `vistas index rebuild` beside a server) is
refused instead of overwriting the other's snapshots. The directory's name is the collection's
name, whatever the database recorded when it was made (a copied directory is a new collection).

Trust, at start-up. collection.json carries its own checksum and the snapshot's (snapshots.py);
a mismatch, a log that is behind the snapshot (SQLite lost acknowledged writes: its -wal file was
deleted after a crash), items missing from snapshot and log, or a sample of items that do not
find themselves by search (`_self_check`) each rebuild the index from SQLite, logged as an error
and counted in `recoveries` (a metric of the server). Lost writes are also kept in `warnings`.

A full disk refuses a write with StorageFullError (disk.py) and changes nothing; a snapshot that
cannot be written is skipped (the log keeps every write) and tried again later.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vistas.index.disk import StorageFullError, full_disk_as_error
from vistas.index.indexes import (
    AUTO,
    IndexConfig,
    choose_factory,
    index_ids,
    is_lossy,
    new_index,
    train,
    training_size,
)
from vistas.index.lock import DirectoryLock
from vistas.index.quality import RECALL_K, tune
from vistas.index.search import IndexState, exact_scan, search_all, search_filtered
from vistas.index.snapshots import (
    INFO_FILE,
    SNAPSHOT_GLOB,
    Damage,
    has_info,
    load_snapshot,
    read_info,
    remove_leftovers,
    stored_config,
    write_snapshot,
)
from vistas.index.store import SQLITE_FILE, ItemStore, remove_database

log = logging.getLogger(__name__)

SNAPSHOT_MIN_OPS = 10_000
COMPACT_FRACTION = 0.2
COMPACT_MIN = 1000  # tombstones below this many are never worth a compaction
SNAPSHOT_RETRY_OPS = 1000  # after a snapshot failed (full disk), writes before the next try
# Start-up self-check: sampled items searched for with their own vectors. A sound index finds
# nearly all (these queries are easier than the ones its knob was tuned on to target_recall);
# a damaged one finds almost none (random bytes in a Flat snapshot: 2 of 300). 0.8 sits far
# from both, with room for sampling noise on 100 items.
SELF_CHECK_SAMPLE = 100
SELF_CHECK_MIN = 0.8
# An exact (flat) index scans everything per query: 100 queries took 0.86 s at 50k x 512 (the
# largest "auto" Flat) on a loaded 2-core machine. Past this many multiply-adds (~0.3 s there) the
# sample shrinks, to no fewer than 20: a flat index finds all of its items, so 20 tell a sound
# one from a damaged one.
SELF_CHECK_FLAT_BUDGET = 10**9


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
    `Collection.open(path)`. All methods are thread-safe: one lock serialises reads and writes
    (neither the SQLite connection nor a FAISS index being modified may be shared); a rebuild
    builds outside the lock.
    """

    def __init__(
        self,
        path: Path,
        store: ItemStore,
        state: IndexState,
        config: IndexConfig,
        snapshot_seq: int,
        lock: DirectoryLock | None = None,
    ):
        self.path = path
        self.config = config
        self._store = store
        self._state = state
        self._lock = threading.RLock()
        self._rebuild_lock = threading.Lock()
        self._count = store.count()
        self._snapshot_seq = snapshot_seq  # the log seq the snapshot on disk reflects
        self._applied_seq = snapshot_seq  # the log seq the in-memory index reflects
        self._pinned_seq: int | None = None  # a rebuild in progress replays the log from here
        self._deferred = False  # bulk load: writes skip the index until the closing rebuild
        self._background: threading.Thread | None = None
        self._closed = False
        self._dir_lock = lock  # the process lock on the directory, dropped by close()
        self._next_snapshot_seq = 0  # after a failed snapshot: no new try before this log seq
        self.recoveries: Counter[str] = Counter()  # Damage.reason -> index rebuilds for it, this process
        self.warnings: list[str] = []  # what an operator must know: acknowledged writes were lost

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | Path, *, dim: int, space_id: str, name: str | None = None, config: IndexConfig | None = None
    ) -> "Collection":
        """A new empty collection in directory `path` (made if missing), or nothing at all.

        `name`, if given, must be the directory's name (the collection's identity). On any failure
        (a full disk: StorageFullError) everything made here is removed again.
        """
        path = Path(path)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not isinstance(space_id, str) or not space_id:
            raise ValueError(f"space_id must be a non-empty string (the bundle's space id), got {space_id!r}")
        if name is not None and name != path.name:
            raise ValueError(f"a collection is named by its directory: {path} is {path.name!r}, not {name!r}")
        config = config or IndexConfig()
        factory = choose_factory(0, dim, config.memory_budget) if config.factory == AUTO else config.factory
        index = new_index(factory, dim)  # validates the factory string before anything is written
        if not index.is_trained:
            # An IVF type needs data to train on: hold items in a Flat index until there are enough
            # (the first rebuild builds the configured type; see _after_write).
            factory, index = "Flat", new_index("Flat", dim)
        made_dir = not path.exists()
        with full_disk_as_error(path):
            path.mkdir(parents=True, exist_ok=True)
            try:
                lock = DirectoryLock.acquire(path)
            except OSError:  # not CollectionLockedError: then the directory is someone else's
                if made_dir:  # empty but for the lock file we may have made
                    shutil.rmtree(path, ignore_errors=True)
                raise
        store = None
        try:
            remove_leftovers(path)
            store = ItemStore.create(path / SQLITE_FILE, dim=dim, space_id=space_id, name=path.name)
            state = IndexState(index, factory)
            state.recall = 1.0 if state.exact else None  # an approximate index is measured when built
            collection = cls(path, store, state, config, snapshot_seq=0, lock=lock)
            collection.flush()
            return collection
        except BaseException:
            if store is not None:  # ours: the database was made above
                store.close()
                _remove_collection_files(path)
            lock.release()
            if made_dir:
                shutil.rmtree(path, ignore_errors=True)
            raise

    @classmethod
    def open(cls, path: str | Path, config: IndexConfig | None = None) -> "Collection":
        """Load the snapshot and replay the log after it; rebuild from the items if it is unusable.

        `config` replaces the stored index config (it applies from the next rebuild on).
        CollectionLockedError when another process (or another open here) holds the collection.
        """
        path = Path(path)
        if not (path / SQLITE_FILE).is_file():
            raise FileNotFoundError(
                f"{path / SQLITE_FILE} not found: not a vistas collection (make one with Collection.create)"
            )
        lock = DirectoryLock.acquire(path)
        store = None
        try:
            if removed := remove_leftovers(path):
                log.info("collection %s: removed %s, left by an interrupted write", path.name, removed)
            store = ItemStore.open(path / SQLITE_FILE)
            if store.stored_name != path.name:
                log.info("collection %s: its database was made as %r (a copied directory); it answers as %r, "
                         "its directory's name", path.name, store.stored_name, path.name)
            info, damage = read_info(path)
            state, seq = None, -1
            if damage is None:
                state, seq, damage = load_snapshot(path, store, info)
            state = state or IndexState(new_index("Flat", store.dim), "Flat")
            collection = cls(path, store, state, config or stored_config(info), seq, lock=lock)
            if damage is None:
                damage = collection._replay()
            if damage is None:
                damage = collection._self_check()
            if damage is not None:
                collection._recover(damage)
            return collection
        except BaseException:
            if store is not None:
                store.close()
            lock.release()
            raise

    def flush(self) -> None:
        """Write a snapshot if the in-memory index is ahead of the one on disk.

        Skipping it loses nothing: the log has every acknowledged write and `open` replays it.
        """
        with self._lock:
            if self._applied_seq == self._snapshot_seq and has_info(self.path):
                return
            self._write_snapshot()

    def close(self) -> None:
        background = self._background
        if background is not None:
            background.join()
        with self._lock:
            if self._closed:
                return
            try:
                if not self._deferred:
                    self.flush()
            except StorageFullError as e:  # nothing is lost: the log has every write, open replays it
                log.warning("collection %s: no snapshot at close (%s); the next start replays the log", self.name, e)
            finally:
                self._store.close()
                self._closed = True
                if self._dir_lock is not None:
                    self._dir_lock.release()

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
        """Live items (tombstones excluded)."""
        with self._lock:
            return self._count

    @property
    def factory(self) -> str:
        return self._state.factory

    @property
    def tombstones(self) -> int:
        with self._lock:
            return len(self._state.tombstones)

    def info(self) -> dict:
        """The body of `GET /v1/collections/{name}`."""
        with self._lock:
            state = self._state
            params = {state.knob_name: state.knob_value} if state.knob_value is not None else {}
            if is_lossy(state.factory):
                params["rerank_factor"] = state.rerank_factor
            return {
                "name": self.name,
                "count": self._count,
                "space": self.space_id,
                "index": state.factory,
                "dim": self.dim,
                "params": params,
                "recall_at_10": state.recall,
                "target_recall": self.config.target_recall,
                "tombstones": len(state.tombstones),
            }

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
        thumbnails: list[bytes | None] | None = None,
        jobs: dict[str, object] | None = None,
    ) -> int:
        """Insert new ids, replace existing ones (vector, metadata, thumbnail). Returns len(ids).

        Returns after the write is committed to the log (durable). vectors: (n, dim), normalised
        here. Duplicate ids within one call are refused: which of two rows should win is the
        caller's decision. `space_id`, when given, must be the collection's (SpaceMismatchError).
        `thumbnails`: JPEG bytes or None per id. `jobs`: {name: JSON state} saved in the same commit.
        """
        if space_id is not None:
            self.check_space(space_id)
        ids = _check_ids(ids, unique=True)
        x = _unit_rows(vectors, self.dim, "vectors")  # (n, dim)
        if len(x) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(x)} vectors; they must pair up one to one")
        metadata = _check_metadata(ids, metadata)
        if thumbnails is not None and len(thumbnails) != len(ids):
            raise ValueError(f"got {len(ids)} ids but {len(thumbnails)} thumbnails")
        if not ids and not jobs:
            return 0
        with self._lock:
            keys, dead = self._store.upsert(ids, x, metadata, thumbnails, jobs)  # committed: acknowledged
            self._count += len(keys) - len(dead)
            if not self._deferred:
                self._state.bury(dead)
                self._state.index.add_with_ids(x, keys)
                self._applied_seq = self._store.last_seq()
            self._after_write()
        return len(ids)

    def delete(self, ids: list[str]) -> int:
        """Delete ids; unknown ids are ignored. Returns how many items were deleted."""
        ids = list(dict.fromkeys(_check_ids(ids, unique=False)))
        if not ids:
            return 0
        with self._lock:
            keys = self._store.delete(ids)  # committed: acknowledged
            self._count -= len(keys)
            if not self._deferred and len(keys):
                self._state.bury(keys)
                self._applied_seq = self._store.last_seq()
            self._after_write()
        return len(keys)

    def job_state(self, name: str):
        """A batch job's saved progress (see index/build.py), or None."""
        with self._lock:
            return self._store.job_state(name)

    def job_states(self, prefix: str) -> list:
        with self._lock:
            return self._store.job_states(prefix)

    def delete_jobs(self, prefix: str) -> None:
        with self._lock:
            self._store.delete_jobs(prefix)

    @contextmanager
    def bulk_load(self, config: IndexConfig | None = None):
        """Writes inside go to SQLite and the log only; a clean exit rebuilds the index once.

        For loading many items: the index type is chosen for the final size, trained once and
        filled batch by batch, instead of growing item by item. Searches meanwhile are exact
        scans of SQLite (correct, slow). If the block raises, the index stays behind and the next
        `open` replays the log into it.
        """
        with self._lock:
            self._deferred = True
        yield self
        self.rebuild(config)

    def compact(self) -> None:
        """Drop tombstones now: in place where the index type can remove ids, else by a rebuild."""
        with self._lock:
            if not self._state.tombstones:
                return
            if self._state.removable:
                self._state.compact_in_place()
                self._write_snapshot()
                return
        self.rebuild(factory=self._state.factory)

    def _after_write(self) -> None:
        """Compaction, snapshot and automatic re-choice of the index type, when due."""
        state, n = self._state, self._count
        if self._deferred:
            return
        if len(state.tombstones) >= max(COMPACT_MIN, COMPACT_FRACTION * state.index.ntotal):
            if state.removable:
                state.compact_in_place()
            else:
                self._start_background(state.factory)
        if n >= 2 * max(state.built_for, 1000) and self._wanted_factory(n) != state.factory:
            self._start_background(None)
        due = self._applied_seq - self._snapshot_seq >= max(SNAPSHOT_MIN_OPS, state.index.ntotal // 10)
        if due and self._applied_seq >= self._next_snapshot_seq:
            self._snapshot_if_possible()

    def _wanted_factory(self, n: int) -> str:
        config = self.config
        return choose_factory(n, self.dim, config.memory_budget) if config.factory == AUTO else config.factory

    def _start_background(self, factory: str | None) -> None:
        if self._background is not None and self._background.is_alive():
            return

        def run():
            try:
                self.rebuild(factory=factory)
            except Exception:  # noqa: BLE001 - a failed background build leaves the old index serving
                log.exception("collection %s: background rebuild failed; the current index stays", self.name)
                with self._lock:
                    self._state.built_for = self._count  # retry once the collection has doubled again

        self._background = threading.Thread(target=run, name=f"rebuild-{self.name}", daemon=True)
        self._background.start()

    # --- reads ---------------------------------------------------------------

    def get(self, id: str) -> dict | None:
        """{"id", "metadata", "vector": float32 (dim,)} or None."""
        with self._lock:
            return self._store.get(id)

    def thumbnail(self, id: str) -> bytes | None:
        """The JPEG thumbnail stored with the item (items added as images), or None."""
        with self._lock:
            return self._store.thumbnail(id)

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

        `filter` (see index/filters.py) restricts the search to matching items; k results come
        back whenever k items match (see search.py for how, per index type).
        """
        if space_id is not None:
            self.check_space(space_id)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        q = _unit_rows(vectors, self.dim, "query vectors")  # (q, dim)
        with self._lock:
            if self._deferred:  # the index is behind SQLite during a bulk load: scan SQLite exactly
                scores, keys = exact_scan(self._store, q, int(k), filter)
            elif filter:
                allowed = self._store.match(filter)
                if len(allowed) == 0 or len(q) == 0:
                    return [[] for _ in range(len(q))]
                scores, keys = search_filtered(self._state, self._store, q, int(k), allowed, self._count)
            else:
                if self._count == 0 or len(q) == 0:
                    return [[] for _ in range(len(q))]
                scores, keys = search_all(self._state, self._store, q, int(k), self._count)
            found = self._store.lookup(np.unique(keys[keys >= 0]))
        results = []
        for row_scores, row_keys in zip(scores.tolist(), keys.tolist()):
            row = [(found[key], s) for s, key in zip(row_scores, row_keys) if key in found]
            results.append([Hit(id=id, score=s, metadata=meta) for (id, meta), s in row])
        return results

    # --- rebuild, tuning, snapshots -------------------------------------------

    def rebuild(self, config: IndexConfig | None = None, *, factory: str | None = None) -> dict:
        """Build a fresh index from the items, tune its knob, and swap it in. Returns `info()`.

        The type is `config.factory`, or chosen by size and memory budget for "auto". IVF types
        train once on a sample, then every type is filled batch by batch from SQLite, so no more
        than a batch of raw vectors (plus the index itself) is in memory. The build reads one
        consistent SQLite state through its own connection, outside the lock; writes made
        meanwhile are replayed from the log before the swap. `factory` overrides the config's
        type for this build only (compaction keeps the type, and "auto" stays the config).
        """
        config = config or self.config
        with self._rebuild_lock:
            reader = self._store.reader()
            try:
                with self._lock:  # no snapshot may truncate the log between our read state and the pin
                    seq = reader.begin_read()
                    self._pinned_seq = seq
                state = _build(reader, config, factory)
            except BaseException:
                with self._lock:
                    self._pinned_seq = None
                raise
            finally:
                reader.close()
            with self._lock:
                added, removed = self._store.log_since(seq)
                _apply(state, self._store, added, removed)
                self._state, self.config = state, config
                self._deferred, self._pinned_seq = False, None
                self._applied_seq = self._store.last_seq()
                self._write_snapshot()
                log.info("collection %s: built %s over %d items (recall@10 %.3f)", self.name, state.factory,
                         self._count, state.recall if state.recall is not None else float("nan"))
                return self.info()

    def _replay(self) -> Damage | None:
        """Bring the loaded snapshot up to date with the log; Damage asks for a rebuild."""
        added, removed = self._store.log_since(self._snapshot_seq)
        _apply(self._state, self._store, added, removed)
        self._applied_seq = self._store.last_seq()
        ids = index_ids(self._state.index)
        live = self._store.live_keys()
        missing = np.setdiff1d(live, ids, assume_unique=True)
        if len(missing):
            return Damage("log_gap",
                          f"{len(missing)} items are in SQLite but neither in the snapshot nor in the log after it")
        if len(ids) != len(np.unique(ids)):
            return Damage("duplicate_key", "the snapshot holds a key twice")
        self._state.bury(np.setdiff1d(ids, live))
        if len(added) or len(removed):
            log.info("collection %s: replayed %d adds and %d removes from the log", self.name, len(added), len(removed))
        return None

    def _self_check(self) -> Damage | None:
        """Search for a sample of the items with their own vectors; Damage when too few find themselves.

        Catches a snapshot whose checksum holds but whose contents are wrong (written from a
        damaged index, or the pair replaced together). An item counts as found when its key is in
        its top k or the best score is its own, ~1 (an identical vector may rank first).
        """
        if self._count == 0:
            return None
        sample = SELF_CHECK_SAMPLE
        if self._state.exact:
            sample = max(20, min(sample, SELF_CHECK_FLAT_BUDGET // max(1, self._state.index.ntotal * self.dim)))
        keys, x = self._store.sample_vectors(sample, seed=2)  # (s,), (s, d)
        if len(keys) == 0:
            return None
        k = min(RECALL_K, self._count)
        scores, found = search_all(self._state, self._store, x, k, self._count)  # (s, k) each
        # ~1, not >= 1: a damaged vector can score anything, far above 1 included.
        hit = (found == keys[:, None]).any(axis=1) | (np.abs(scores[:, 0] - 1) <= 1e-4)
        if hit.mean() >= SELF_CHECK_MIN:
            return None
        return Damage("self_check", f"only {int(hit.sum())} of {len(keys)} sampled items find themselves among their "
                      f"top {k} by search (a sound index finds nearly all): the snapshot's contents are wrong")

    def _recover(self, damage: Damage) -> None:
        """Rebuild the index from SQLite after `damage`, loudly; count it for the metrics."""
        self.recoveries[damage.reason] += 1
        if damage.reason == "writes_lost":
            self.warnings.append(damage.message)
        level = logging.ERROR if damage.loud else logging.WARNING
        log.log(level, "collection %s: rebuilding the FAISS index from SQLite (%s) [%s]", self.name,
                damage.message, damage.reason)
        try:
            self.rebuild()
        except StorageFullError as e:  # the rebuilt index is in use; only its snapshot is missing
            log.warning("collection %s: the rebuilt index serves from memory, its snapshot was not written (%s)",
                        self.name, e)

    def _write_snapshot(self) -> None:
        """Snapshot the in-memory index (see snapshots.py); then drop the log it covers."""
        seq = self._applied_seq
        with full_disk_as_error(self.path):
            write_snapshot(self.path, self._store, self._state, self.config, seq=seq, count=self._count)
        self._snapshot_seq = seq
        keep = seq if self._pinned_seq is None else min(seq, self._pinned_seq)
        if keep > 0:
            try:
                self._store.truncate_log(keep)
            except StorageFullError:  # the log keeps entries the snapshot covers: replay skips them
                pass

    def _snapshot_if_possible(self) -> None:
        """A due snapshot after a write: on a full disk it waits, and the write still stands."""
        try:
            self._write_snapshot()
        except StorageFullError as e:
            self._next_snapshot_seq = self._applied_seq + SNAPSHOT_RETRY_OPS
            log.warning("collection %s: snapshot skipped (%s); the log keeps every write, start-up replays it",
                        self.name, e)


# --- helpers ------------------------------------------------------------------


def _remove_collection_files(path: Path) -> None:
    """What Collection.create writes into a directory (the lock file stays: see lock.py)."""
    remove_database(path / SQLITE_FILE)
    for snapshot in path.glob(SNAPSHOT_GLOB):
        snapshot.unlink(missing_ok=True)
    (path / INFO_FILE).unlink(missing_ok=True)


def _build(store: ItemStore, config: IndexConfig, factory: str | None) -> IndexState:
    """A new index over every item of `store` (read inside one transaction), tuned to the target."""
    n, dim = store.count(), store.dim
    if factory is None:
        factory = choose_factory(n, dim, config.memory_budget) if config.factory == AUTO else config.factory
    index = new_index(factory, dim)
    if not index.is_trained:
        if n == 0:
            raise ValueError(f"index {factory!r} needs training data, and the collection is empty")
        _, sample = store.sample_vectors(training_size(index, n))
        train(index, sample)
    for keys, vectors in store.iter_vectors():
        index.add_with_ids(vectors, keys)
    state = IndexState(index, factory, built_for=n)
    tune(state, store, config, n)
    return state


def _apply(state: IndexState, store: ItemStore, added: np.ndarray, removed: np.ndarray) -> None:
    """Add the live items among `added` keys to the index and tombstone the `removed` ones."""
    keys, vectors = store.vectors_of(added)
    if len(keys):
        state.index.add_with_ids(vectors, keys)
    state.bury(removed)


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


def _check_metadata(ids: list[str], metadata) -> list[dict]:
    if metadata is None:
        return [{} for _ in ids]
    if len(metadata) != len(ids):
        raise ValueError(f"got {len(ids)} ids but {len(metadata)} metadata entries")
    out = [m if m is not None else {} for m in metadata]
    for id, m in zip(ids, out):
        if not isinstance(m, dict):
            raise ValueError(f"metadata of item {id!r} must be a dict, got {type(m).__name__}")
    return out


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

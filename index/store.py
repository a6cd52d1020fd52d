"""The SQLite half of a collection: the source of truth and the write-ahead log.

One file, `collection.sqlite`, holds

    items(key INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id of the item's current vector
          id TEXT UNIQUE, metadata TEXT (JSON object), vector BLOB (dim float32, little-endian))
    wal(seq INTEGER PRIMARY KEY AUTOINCREMENT, key INTEGER, op INTEGER)  -- op 1: add key, 0: remove key
    thumbnails(id TEXT PRIMARY KEY, data BLOB)    -- small JPEGs of items that came as images
    jobs(name TEXT PRIMARY KEY, state TEXT)       -- resumable batch jobs' progress (JSON)
    meta(name TEXT PRIMARY KEY, value TEXT)       -- dim, space_id, collection name, schema version

Keys are never reused (AUTOINCREMENT): an upsert of an existing id deletes its row and inserts a
new one, so the old vector's key is dead for good. That is what lets index types that cannot
remove a vector (HNSW) keep it as a tombstone: a dead key never comes back to life.

Every write is one transaction that changes `items` and appends its adds/removes to `wal`; the
commit is the durability point (journal_mode=WAL, synchronous=FULL: a returned write survives a
crash or power loss). A FAISS snapshot records the last `wal` seq it reflects; opening replays the
log from there. `truncate_log(seq)` drops what a snapshot has made redundant.

Not thread-safe by itself; `Collection` serialises calls. `reader()` opens a second connection
whose transactions see one consistent state while the writer goes on (index rebuilds use it).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vistas.atomic import fsync_dir
from vistas.index.disk import StorageFullError, full_disk_as_error, is_full_disk
from vistas.index.filters import compile_filter
from vistas.unicode import check_unicode

SQLITE_FILE = "collection.sqlite"
SCHEMA_VERSION = 2
OP_ADD, OP_REMOVE = 1, 0

_TABLES = {
    "items": """CREATE TABLE items (
        key      INTEGER PRIMARY KEY AUTOINCREMENT,
        id       TEXT NOT NULL UNIQUE,
        metadata TEXT NOT NULL,
        vector   BLOB NOT NULL
    )""",
    "meta": "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Added in schema 2; a schema-1 file gets them on open (its log starts empty, which is
    # right: version 1 rebuilt its FAISS index from `items` whenever in doubt).
    "wal": "CREATE TABLE wal (seq INTEGER PRIMARY KEY AUTOINCREMENT, key INTEGER NOT NULL, op INTEGER NOT NULL)",
    "thumbnails": "CREATE TABLE thumbnails (id TEXT PRIMARY KEY, data BLOB NOT NULL)",
    "jobs": "CREATE TABLE jobs (name TEXT PRIMARY KEY, state TEXT NOT NULL)",
}

# Stay well under SQLite's bound-parameter limit (32766 since 3.32) in `IN (...)` lists.
_CHUNK = 900
# A row holds its vector inline; with 4 KB pages a 2 KB vector (d=512) leaves room for no second
# row, and half of every page is wasted. 16 KB pages hold seven.
PAGE_SIZE = 16384
_VECTOR_DTYPE = np.dtype("<f4")


class ItemStore:
    """Items and settings of one collection in SQLite. Vectors in and out are float32 (n, dim)."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path
        try:
            settings = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            conn.close()
            raise ValueError(f"{path} is not a vistas collection database ({e})") from None
        version = int(settings.get("schema_version", -1))
        if version not in (1, SCHEMA_VERSION):
            conn.close()
            raise ValueError(f"{path}: schema_version {version} is not supported (this vistas reads 1 and {SCHEMA_VERSION})")
        if version == 1:
            self._upgrade_from_1()
        self.dim = int(settings["dim"])
        self.space_id = settings["space_id"]
        # The directory is the collection's identity: a copied directory answers under its new
        # name, never under the one recorded when the file was made (`stored_name`).
        self.name = path.parent.name
        self.stored_name = settings["name"]

    @classmethod
    def create(cls, path: str | Path, *, dim: int, space_id: str, name: str) -> "ItemStore":
        """A new, complete database at `path`, or nothing there at all.

        It is made as `<path>.new`, checkpointed into that one file, and renamed to `path`: a
        `path` that exists is a whole collection. (Made in place, a full disk left an empty
        file that every later write and every start-up of the server failed on.)
        """
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists; open it with Collection.open or pick another directory")
        tmp = path.with_name(path.name + ".new")
        remove_database(tmp)  # left by a crash during an earlier create
        settings = {"schema_version": SCHEMA_VERSION, "dim": dim, "space_id": space_id, "name": name}
        try:
            with full_disk_as_error(path):
                conn = _connect(tmp, page_size=PAGE_SIZE)
                try:
                    with _transaction(conn):  # schema and settings land together or not at all
                        for statement in _TABLES.values():
                            conn.execute(statement)
                        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in settings.items()])
                    # Everything into the main file, so that the rename moves all of it.
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                finally:
                    conn.close()
                if busy or _wal_size(tmp):
                    raise OSError(f"could not checkpoint the new database {tmp} into one file")
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                fsync_dir(path.parent)
        except BaseException:
            remove_database(tmp)
            raise
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "ItemStore":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a vistas collection (make one with Collection.create)")
        with full_disk_as_error(path):
            try:
                # Read before anything writes (setting WAL mode would): a damaged file stays as it is.
                conn = _connect(path, check=lambda c: c.execute("SELECT name, value FROM meta").fetchall())
            except sqlite3.DatabaseError as e:
                if is_full_disk(e, path):  # re-raised as StorageFullError just above
                    raise
                raise ValueError(
                    f"{path} is not a vistas collection database ({e}): it is damaged, or was never complete. "
                    "Restore the directory from a backup, or move it out of the index directory"
                ) from None
            return cls(conn, path)

    def reader(self) -> "ItemStore":
        """A second connection to the same file, for long reads beside the writer."""
        return ItemStore(_connect(self.path), self.path)

    def close(self) -> None:
        self._conn.close()

    def _upgrade_from_1(self) -> None:
        with _transaction(self._conn):
            have = {n for (n,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, statement in _TABLES.items():
                if table not in have:
                    self._conn.execute(statement)
            self._conn.execute("DELETE FROM meta WHERE name = 'generation'")
            self._conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    def begin_read(self) -> int:
        """Start a read transaction: every read until close() sees the state as of the seq returned."""
        self._conn.execute("BEGIN")
        return self.last_seq()  # the first read fixes the transaction's view

    # --- reads ---------------------------------------------------------------

    def last_seq(self) -> int:
        """The seq of the newest log entry ever written (0 for none); survives truncation."""
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'wal'").fetchone()
        return int(row[0]) if row else 0

    def log_since(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys added, keys removed) by log entries after `seq`, each int64 and net of each other.

        Keys are never reused, so a key both added and removed after `seq` was born and died in
        that window: it appears in neither. The result does not depend on the order of entries.
        """
        added, removed = set(), set()
        for key, op in self._conn.execute("SELECT key, op FROM wal WHERE seq > ?", (seq,)):
            (added if op == OP_ADD else removed).add(key)
        both = added & removed
        return _keys(sorted(added - both)), _keys(sorted(removed - both))

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def get(self, id: str) -> dict | None:
        row = self._conn.execute("SELECT id, metadata, vector FROM items WHERE id = ?", (id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "metadata": json.loads(row[1]), "vector": self._decode(row[2])}

    def thumbnail(self, id: str) -> bytes | None:
        row = self._conn.execute("SELECT data FROM thumbnails WHERE id = ?", (id,)).fetchone()
        return row[0] if row else None

    def lookup(self, keys) -> dict[int, tuple[str, dict]]:
        """Keys -> (id, metadata); keys that are dead are simply absent."""
        out = {}
        for chunk in _chunks([int(k) for k in keys]):
            sql = f"SELECT key, id, metadata FROM items WHERE key IN ({_marks(chunk)})"
            for key, id, metadata in self._conn.execute(sql, chunk):
                out[key] = (id, json.loads(metadata))
        return out

    def vectors_of(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """(live keys int64 (m,), their vectors float32 (m, dim)); dead keys are dropped."""
        found_keys, blobs = [], []
        for chunk in _chunks([int(k) for k in keys]):
            for key, blob in self._conn.execute(f"SELECT key, vector FROM items WHERE key IN ({_marks(chunk)})", chunk):
                found_keys.append(key)
                blobs.append(blob)
        return _keys(found_keys), self._decode_rows(blobs)

    def keys_of(self, ids: list[str]) -> np.ndarray:
        """Keys of the ids that exist, int64 (m,)."""
        keys = []
        for chunk in _chunks(ids):
            keys += [k for (k,) in self._conn.execute(f"SELECT key FROM items WHERE id IN ({_marks(chunk)})", chunk)]
        return _keys(keys)

    def live_keys(self) -> np.ndarray:
        rows = self._conn.execute("SELECT key FROM items").fetchall()
        return np.fromiter((k for (k,) in rows), dtype=np.int64, count=len(rows))

    def match(self, filter: dict | None) -> np.ndarray:
        """Keys of the items whose metadata satisfies `filter`, int64 (m,)."""
        where, params = compile_filter(filter)
        rows = self._conn.execute(f"SELECT key FROM items WHERE {where}", params).fetchall()
        return np.fromiter((k for (k,) in rows), dtype=np.int64, count=len(rows))

    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All items as (keys int64 (b,), vectors float32 (b, dim)) batches, in key order."""
        cursor = self._conn.execute("SELECT key, vector FROM items ORDER BY key")
        while rows := cursor.fetchmany(batch):
            yield _keys([k for k, _ in rows]), self._decode_rows([v for _, v in rows])

    def sample_vectors(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Up to n items chosen uniformly at random: (keys int64 (m,), vectors float32 (m, dim))."""
        keys = self.live_keys()
        if len(keys) > n:
            keys = np.sort(np.random.default_rng(seed).choice(keys, size=n, replace=False))
        return self.vectors_of(keys)

    def job_state(self, name: str):
        row = self._conn.execute("SELECT state FROM jobs WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def job_states(self, prefix: str) -> list:
        """States of the jobs whose names start with `prefix`, in name order."""
        rows = self._conn.execute("SELECT name, state FROM jobs WHERE substr(name, 1, ?) = ? ORDER BY name",
                                  (len(prefix), prefix)).fetchall()
        return [json.loads(state) for _, state in rows]

    def delete_jobs(self, prefix: str) -> None:
        with _transaction(self._conn):
            self._conn.execute("DELETE FROM jobs WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))

    # --- writes (each one transaction; the commit is the durability point) ---

    def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadata: list[dict],
        thumbnails: list[bytes | None] | None = None,
        jobs: dict[str, object] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Insert or replace items. Returns (new keys of all ids in order, keys that died).

        A replaced id gets a new key; its old key is logged as removed. `thumbnails` (one per id,
        None for none) replace the ids' thumbnails; `jobs` ({name: JSON state}) are saved in the
        same transaction, so a batch job's progress and its items are durable together.
        """
        blobs = [np.ascontiguousarray(v, dtype=_VECTOR_DTYPE).tobytes() for v in vectors]
        texts = [_dump_metadata(id, m) for id, m in zip(ids, metadata)]
        thumbnails = thumbnails if thumbnails is not None else [None] * len(ids)
        with _transaction(self._conn):
            dead = self.keys_of(ids)
            self._delete_keys(dead)
            sql = "INSERT INTO items (id, metadata, vector) VALUES (?, ?, ?) RETURNING key"
            keys = _keys([self._conn.execute(sql, row).fetchone()[0] for row in zip(ids, texts, blobs)])
            self._conn.executemany("INSERT INTO wal (key, op) VALUES (?, ?)", [(int(k), OP_ADD) for k in keys])
            self._conn.executemany("DELETE FROM thumbnails WHERE id = ?", [(i,) for i, t in zip(ids, thumbnails) if t is None])
            self._conn.executemany(
                "INSERT OR REPLACE INTO thumbnails VALUES (?, ?)", [(i, t) for i, t in zip(ids, thumbnails) if t is not None]
            )
            for name, state in (jobs or {}).items():
                self._save_job(name, state)
        return keys, dead

    def delete(self, ids: list[str]) -> np.ndarray:
        """Delete the ids that exist. Returns their keys, int64 (m,)."""
        with _transaction(self._conn):
            keys = self.keys_of(ids)
            self._delete_keys(keys)
            for chunk in _chunks(ids):
                self._conn.execute(f"DELETE FROM thumbnails WHERE id IN ({_marks(chunk)})", chunk)
        return keys

    def save_job(self, name: str, state) -> None:
        with _transaction(self._conn):
            self._save_job(name, state)

    def truncate_log(self, seq: int) -> None:
        """Forget log entries up to `seq` (a durable snapshot reflects them)."""
        with _transaction(self._conn):
            self._conn.execute("DELETE FROM wal WHERE seq <= ?", (seq,))

    def _delete_keys(self, keys: np.ndarray) -> None:
        for chunk in _chunks(keys.tolist()):
            self._conn.execute(f"DELETE FROM items WHERE key IN ({_marks(chunk)})", chunk)
        self._conn.executemany("INSERT INTO wal (key, op) VALUES (?, ?)", [(int(k), OP_REMOVE) for k in keys])

    def _save_job(self, name: str, state) -> None:
        self._conn.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (name, json.dumps(state)))

    def _decode(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=_VECTOR_DTYPE).astype(np.float32)

    def _decode_rows(self, blobs: list[bytes]) -> np.ndarray:
        if not blobs:
            return np.zeros((0, self.dim), np.float32)
        return np.frombuffer(b"".join(blobs), dtype=_VECTOR_DTYPE).reshape(len(blobs), self.dim).astype(np.float32)


def _keys(keys) -> np.ndarray:
    return np.asarray(keys, dtype=np.int64).reshape(-1)


def _dump_metadata(id: str, metadata: dict) -> str:
    # A lone surrogate would be stored (escaped) and then break every read that returns the item.
    check_unicode(id, f"item id {id!r}")
    check_unicode(metadata, f"item {id!r}: metadata")
    try:
        return json.dumps(metadata, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata of item {id!r} is not JSON (a dict of str/number/bool/list/dict): {e}") from None


def _connect(path: Path, page_size: int | None = None, check=None) -> sqlite3.Connection:
    """A connection in WAL mode; `check(conn)` runs first, before anything can write."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
    # server calls from worker threads, and Collection holds a lock around every call.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        if check is not None:
            check(conn)
        if page_size:  # only before the first table and before WAL mode
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection):
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back by itself (SQLITE_FULL can do that); a second
            # ROLLBACK would raise and hide the error that matters.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except (sqlite3.Error, OSError) as e:
        if isinstance(e, StorageFullError):
            raise
        row = conn.execute("PRAGMA database_list").fetchone()  # (seq, "main", file)
        path = row[2] if row and row[2] else None
        if not is_full_disk(e, path):
            raise
        raise StorageFullError(path or "the collection database", str(e)) from e


def _wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def remove_database(path: Path) -> None:
    """An SQLite database and the files beside it (-wal, -shm, -journal), where they exist."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _chunks(seq: list) -> Iterator[list]:
    for i in range(0, len(seq), _CHUNK):
        yield seq[i : i + _CHUNK]


def _marks(chunk: list) -> str:
    return ", ".join("?" * len(chunk))

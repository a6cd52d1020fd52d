"""The SQLite half of a collection: the source of truth.

One file, `collection.sqlite`, holds every item (string id, metadata JSON, float32
vector) and the collection's settings. The FAISS index is a cache rebuilt from here.

    items(key INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id; never reused
          id TEXT UNIQUE, metadata TEXT (JSON object), vector BLOB (dim float32, little-endian))
    meta(name TEXT PRIMARY KEY, value TEXT)       -- dim, space_id, collection name, generation

`generation` goes up by one in every write transaction. The FAISS snapshot records
the generation it reflects, so a snapshot that missed a committed write (a crash
between commit and flush) is detected even when its item count happens to agree.

Durability: WAL journal with synchronous=FULL, so a returned write survives a crash
or power loss. The store is not thread-safe by itself; `Collection` serialises calls.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from index.filters import compile_filter

SQLITE_FILE = "collection.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE items (
        key      INTEGER PRIMARY KEY AUTOINCREMENT,
        id       TEXT NOT NULL UNIQUE,
        metadata TEXT NOT NULL,
        vector   BLOB NOT NULL
    )""",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Stay well under SQLite's bound-parameter limit (32766 since 3.32) in `IN (...)` lists.
_CHUNK = 900
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
        if version != SCHEMA_VERSION:
            raise ValueError(f"{path}: schema_version {version} is not supported (this vistas reads {SCHEMA_VERSION})")
        self.dim = int(settings["dim"])
        self.space_id = settings["space_id"]
        self.name = settings["name"]

    @classmethod
    def create(cls, path: str | Path, *, dim: int, space_id: str, name: str) -> "ItemStore":
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists; open it with Collection.open or pick another directory")
        conn = _connect(path)
        settings = {"schema_version": SCHEMA_VERSION, "dim": dim, "space_id": space_id, "name": name, "generation": 0}
        with _transaction(conn):  # schema and settings land together or not at all
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in settings.items()])
        return cls(conn, path)

    @classmethod
    def open(cls, path: str | Path) -> "ItemStore":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a vistas collection (make one with Collection.create)")
        return cls(_connect(path), path)

    def close(self) -> None:
        self._conn.close()

    # --- reads ---------------------------------------------------------------

    @property
    def generation(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE name = 'generation'").fetchone()[0])

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def get(self, id: str) -> dict | None:
        row = self._conn.execute("SELECT id, metadata, vector FROM items WHERE id = ?", (id,)).fetchone()
        if row is None:
            return None
        return {"id": row[0], "metadata": json.loads(row[1]), "vector": self._decode(row[2])}

    def lookup(self, keys) -> dict[int, tuple[str, dict]]:
        """FAISS keys -> (id, metadata); keys that are gone are simply absent."""
        out = {}
        for chunk in _chunks([int(k) for k in keys]):
            sql = f"SELECT key, id, metadata FROM items WHERE key IN ({_marks(chunk)})"
            for key, id, metadata in self._conn.execute(sql, chunk):
                out[key] = (id, json.loads(metadata))
        return out

    def keys_of(self, ids: list[str]) -> np.ndarray:
        """Keys of the ids that exist, int64 (m,)."""
        keys = []
        for chunk in _chunks(ids):
            keys += [k for (k,) in self._conn.execute(f"SELECT key FROM items WHERE id IN ({_marks(chunk)})", chunk)]
        return np.asarray(keys, dtype=np.int64)

    def match(self, filter: dict | None) -> np.ndarray:
        """Keys of the items whose metadata satisfies `filter`, int64 (m,)."""
        where, params = compile_filter(filter)
        rows = self._conn.execute(f"SELECT key FROM items WHERE {where}", params).fetchall()
        return np.fromiter((k for (k,) in rows), dtype=np.int64, count=len(rows))

    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All items as (keys int64 (b,), vectors float32 (b, dim)) batches, in key order."""
        cursor = self._conn.execute("SELECT key, vector FROM items ORDER BY key")
        while rows := cursor.fetchmany(batch):
            keys = np.fromiter((k for k, _ in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(v for _, v in rows), dtype=_VECTOR_DTYPE).reshape(len(rows), self.dim)
            yield keys, vectors.astype(np.float32)

    # --- writes (each one transaction; the commit is the durability point) ---

    def upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """Insert or replace items. Returns (keys of all ids in order, keys that existed before).

        A replaced id keeps its key, so the FAISS side removes that key and adds it back.
        """
        blobs = [np.ascontiguousarray(v, dtype=_VECTOR_DTYPE).tobytes() for v in vectors]
        texts = [_dump_metadata(id, m) for id, m in zip(ids, metadata)]
        with _transaction(self._conn):
            replaced = self.keys_of(ids)
            sql = (
                "INSERT INTO items (id, metadata, vector) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET metadata = excluded.metadata, vector = excluded.vector "
                "RETURNING key"
            )
            keys = [self._conn.execute(sql, row).fetchone()[0] for row in zip(ids, texts, blobs)]
            self._bump_generation()
        return np.asarray(keys, dtype=np.int64), replaced

    def delete(self, ids: list[str]) -> np.ndarray:
        """Delete the ids that exist. Returns their keys, int64 (m,)."""
        with _transaction(self._conn):
            keys = self.keys_of(ids)
            if len(keys):
                for chunk in _chunks(keys.tolist()):
                    self._conn.execute(f"DELETE FROM items WHERE key IN ({_marks(chunk)})", chunk)
                self._bump_generation()
        return keys

    def _bump_generation(self) -> None:
        self._conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation'")

    def _decode(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, dtype=_VECTOR_DTYPE).astype(np.float32)


def _dump_metadata(id: str, metadata: dict) -> str:
    try:
        return json.dumps(metadata, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata of item {id!r} is not JSON (a dict of str/number/bool/list/dict): {e}") from None


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
    # server calls from worker threads, and Collection holds a lock around every call.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection):
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _chunks(seq: list) -> Iterator[list]:
    for i in range(0, len(seq), _CHUNK):
        yield seq[i : i + _CHUNK]


def _marks(chunk: list) -> str:
    return ", ".join("?" * len(chunk))

"""The on-disk snapshot of a collection's FAISS index, and collection.json, which names it.

    index-<seq>-<r>.faiss  the FAISS index holding every logged write up to log seq <seq>
                           (<r>: random, so a new snapshot never overwrites the current one)
    collection.json        name, dim, space_id, index type, tuned knob, measured recall, the
                           index config, and which snapshot file reflects which log seq

collection.json is the pointer: the current snapshot is the one it names, whatever else lies in
the directory. Both files are written atomically (vistas/atomic.py), the snapshot first, so
collection.json always names a complete snapshot; older snapshots are deleted only after that.
When to snapshot, and what to do with the log after one, is the collection's business
(collection.py); this module only writes and reads the files.

Checksums. FAISS reads a snapshot with random bytes inside without complaint, and searches it into
wrong neighbours. So collection.json records the snapshot's SHA-256, and its own (`checksum`, over
the rest of the file in canonical JSON); `read_info` and `load_snapshot` verify both and answer a
mismatch with a `Damage`, on which the collection rebuilds its index from SQLite, the truth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import faiss

from vistas.atomic import atomic_write
from vistas.index.indexes import IndexConfig
from vistas.index.search import IndexState
from vistas.index.store import ItemStore

INFO_FILE = "collection.json"
SNAPSHOT_GLOB = "index-*.faiss"
LEGACY_SNAPSHOT = "index.faiss"  # schema 1's single snapshot, superseded by the first new one
# Temp files of vistas/atomic.py (and of ItemStore.create) that a crash left mid-write: never read,
# removed when the collection is next opened (under its lock, so nobody is writing them).
LEFTOVER_GLOBS = (SNAPSHOT_GLOB + ".tmp", INFO_FILE + ".tmp", "collection.sqlite.new*")


@dataclass(frozen=True)
class Damage:
    """Why the snapshot cannot be used as it is; the collection rebuilds its index from SQLite.

    `reason` is a stable code (a metric label): info_missing, info_outdated, info_checksum,
    snapshot_unreadable, snapshot_checksum, snapshot_dim, writes_lost, log_gap, duplicate_key,
    self_check. `loud`: damage or lost data (logged as an error) rather than an expected gap.
    """

    reason: str
    message: str
    loud: bool = True


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def info_checksum(info: dict) -> str:
    """The checksum of collection.json's fields other than `checksum` itself."""
    body = {k: v for k, v in info.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def remove_leftovers(directory: Path) -> list[str]:
    """Delete the temp files a crash left behind (see LEFTOVER_GLOBS); returns their names."""
    removed = []
    for pattern in LEFTOVER_GLOBS:
        for path in directory.glob(pattern):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def snapshot_name(seq: int) -> str:
    return f"index-{max(seq, 0):012d}-{uuid.uuid4().hex[:8]}.faiss"


def write_snapshot(
    directory: Path, store: ItemStore, state: IndexState, config: IndexConfig, *, seq: int, count: int
) -> None:
    """The snapshot of `state` (reflecting log seq `seq`), then collection.json naming it; then
    every other snapshot is deleted. `count`: the live items, recorded for readers of the file."""
    name = snapshot_name(seq)
    digest = {}

    def write(tmp: Path) -> None:
        faiss.write_index(state.index, str(tmp))
        digest["sha256"] = file_sha256(tmp)  # of the bytes on disk, read back

    atomic_write(directory / name, write)
    info = {
        "name": directory.name,
        "dim": store.dim,
        "space_id": store.space_id,
        "metric": "inner_product",
        "index": state.factory,
        "knob": {state.knob_name: state.knob_value} if state.knob_name else {},
        "rerank_factor": state.rerank_factor,
        "recall_at_10": state.recall,
        "built_for": state.built_for,
        "config": dataclasses.asdict(config),
        "count": count,
        "snapshot": name,
        "snapshot_sha256": digest["sha256"],
        "wal_seq": seq,
    }
    info["checksum"] = info_checksum(info)
    atomic_write(directory / INFO_FILE, lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))
    for old in directory.glob(SNAPSHOT_GLOB):
        if old.name != name:
            old.unlink(missing_ok=True)
    (directory / LEGACY_SNAPSHOT).unlink(missing_ok=True)


def has_info(directory: Path) -> bool:
    return (directory / INFO_FILE).is_file()


def read_info(directory: Path) -> tuple[dict | None, Damage | None]:
    """(collection.json as a dict or None when unreadable, what is wrong with it or None).

    A file that parses but fails its checksum still comes back: its index config is the best
    guess of what the user chose, but its snapshot, knob and recall are not to be trusted.
    """
    try:
        info = json.loads((directory / INFO_FILE).read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        return None, Damage("info_missing", f"{INFO_FILE} is missing or unreadable", loud=False)
    if "wal_seq" not in info or "snapshot" not in info or "checksum" not in info:
        return info, Damage("info_outdated", f"{INFO_FILE} is from an older vistas (no log position or checksum)",
                            loud=False)
    if info["checksum"] != info_checksum(info):
        return info, Damage("info_checksum", f"{INFO_FILE} does not match its checksum: it was edited or damaged")
    return info, None


def stored_config(info: dict | None) -> IndexConfig:
    """The index config recorded in collection.json; the defaults where it has none or a bad one."""
    fields = {f.name for f in dataclasses.fields(IndexConfig)}
    try:
        return IndexConfig(**{k: v for k, v in ((info or {}).get("config") or {}).items() if k in fields})
    except (TypeError, ValueError):
        return IndexConfig()


def load_snapshot(directory: Path, store: ItemStore, info: dict) -> tuple[IndexState | None, int, Damage | None]:
    """The snapshot a verified `info` names: (state, seq, None) when usable, else (None, -1, damage)."""
    file = directory / str(info["snapshot"])
    last = store.last_seq()
    seq = int(info["wal_seq"])
    if seq > last:
        # Every logged write commits to SQLite before a snapshot can include it, so SQLite is
        # never behind a snapshot, unless it lost committed transactions: its -wal file deleted
        # after a crash, or the database restored from an older copy.
        return None, -1, Damage(
            "writes_lost",
            f"ACKNOWLEDGED WRITES LOST: the snapshot {file.name} covers the write-ahead log up to seq {seq}, "
            f"but collection.sqlite holds it only up to seq {last}: the last {seq - last} logged item changes "
            "(upserts and deletes) were committed and acknowledged, and are gone from the database. Its "
            "collection.sqlite-wal file was deleted after a crash, or the file was restored from an older copy. "
            "Restore the -wal file (or a newer copy) if you have it, else re-send the writes made before the crash",
        )
    try:
        actual = file_sha256(file)
    except OSError as e:
        return None, -1, Damage("snapshot_unreadable", f"snapshot {file.name} is missing or unreadable ({e})")
    if actual != info.get("snapshot_sha256"):
        return None, -1, Damage(
            "snapshot_checksum",
            f"snapshot {file.name} does not match its checksum in {INFO_FILE} (damaged on disk: "
            f"{actual} != {info.get('snapshot_sha256')})",
        )
    try:
        index = faiss.read_index(str(file))
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else repr(e)
        return None, -1, Damage("snapshot_unreadable", f"snapshot {file.name} is unreadable ({first})")
    if index.d != store.dim:
        return None, -1, Damage("snapshot_dim", f"snapshot {file.name} has dim {index.d}, the collection {store.dim}")
    knob = info.get("knob") or {}
    state = IndexState(index, str(info.get("index", "Flat")), knob_value=next(iter(knob.values()), None),
                       recall=info.get("recall_at_10"), built_for=int(info.get("built_for", 0)),
                       rerank_factor=int(info.get("rerank_factor", IndexConfig.rerank_factor)))
    return state, seq, None

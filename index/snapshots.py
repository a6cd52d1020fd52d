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
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import faiss

from vistas.atomic import atomic_write
from vistas.index.indexes import IndexConfig
from vistas.index.search import IndexState
from vistas.index.store import ItemStore

INFO_FILE = "collection.json"
SNAPSHOT_GLOB = "index-*.faiss"
LEGACY_SNAPSHOT = "index.faiss"  # schema 1's single snapshot, superseded by the first new one


def snapshot_name(seq: int) -> str:
    return f"index-{max(seq, 0):012d}-{uuid.uuid4().hex[:8]}.faiss"


def write_snapshot(
    directory: Path, store: ItemStore, state: IndexState, config: IndexConfig, *, seq: int, count: int
) -> None:
    """The snapshot of `state` (reflecting log seq `seq`), then collection.json naming it; then
    every other snapshot is deleted. `count`: the live items, recorded for readers of the file."""
    name = snapshot_name(seq)
    atomic_write(directory / name, lambda tmp: faiss.write_index(state.index, str(tmp)))
    info = {
        "name": store.name,
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
        "wal_seq": seq,
    }
    atomic_write(directory / INFO_FILE, lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))
    for old in directory.glob(SNAPSHOT_GLOB):
        if old.name != name:
            old.unlink(missing_ok=True)
    (directory / LEGACY_SNAPSHOT).unlink(missing_ok=True)


def has_info(directory: Path) -> bool:
    return (directory / INFO_FILE).is_file()


def read_info(directory: Path) -> dict | None:
    """collection.json as a dict, or None when it is missing or unreadable."""
    try:
        info = json.loads((directory / INFO_FILE).read_text())
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def stored_config(info: dict | None) -> IndexConfig:
    """The index config recorded in collection.json; the defaults where it has none or a bad one."""
    fields = {f.name for f in dataclasses.fields(IndexConfig)}
    try:
        return IndexConfig(**{k: v for k, v in ((info or {}).get("config") or {}).items() if k in fields})
    except (TypeError, ValueError):
        return IndexConfig()


def load_snapshot(directory: Path, store: ItemStore, info: dict | None) -> tuple[IndexState | None, int, str | None]:
    """The snapshot `info` names: (state, seq, None) when usable, else (None, -1, what is wrong)."""
    if info is None:
        return None, -1, f"{INFO_FILE} is missing or unreadable"
    if "wal_seq" not in info or "snapshot" not in info:
        return None, -1, f"{INFO_FILE} is from an older vistas (no write-ahead log position)"
    file = directory / str(info["snapshot"])
    try:
        index = faiss.read_index(str(file))
    except RuntimeError as e:
        return None, -1, f"snapshot {file.name} is missing or unreadable ({str(e).splitlines()[0] if str(e) else e!r})"
    if index.d != store.dim:
        return None, -1, f"snapshot {file.name} has dim {index.d}, the collection {store.dim}"
    seq = int(info["wal_seq"])
    if seq > store.last_seq():
        return None, -1, f"snapshot is at log seq {seq}, beyond SQLite's {store.last_seq()}"
    knob = info.get("knob") or {}
    state = IndexState(index, str(info.get("index", "Flat")), knob_value=next(iter(knob.values()), None),
                       recall=info.get("recall_at_10"), built_for=int(info.get("built_for", 0)),
                       rerank_factor=int(info.get("rerank_factor", IndexConfig.rerank_factor)))
    return state, seq, None

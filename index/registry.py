"""Several named collections under one root directory: `root/<name>/` each.

This is the server's `--index DIR`: every sub-directory holding a collection is
opened at start; new collections are created on first write. A sub-directory's name is
its collection's name.

One collection that cannot be opened (a damaged database, another process holding its lock,
a full disk) does not take the others down: it is logged with its name and reason, listed by
`unavailable()`, and every access to it raises CollectionUnavailableError. Nothing writes into
it, and nothing new is created under its name, until it is fixed and the process restarted.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from vistas.index.collection import Collection, SpaceMismatchError
from vistas.index.indexes import IndexConfig
from vistas.index.lock import CollectionLockedError
from vistas.index.store import SQLITE_FILE

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CollectionNotFoundError(LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"collection {name!r} does not exist; known collections: {known or 'none'}")
        self.name = name


class CollectionUnavailableError(RuntimeError):
    """The collection exists on disk but is not served (see the module docstring)."""

    def __init__(self, name: str, reason: str):
        super().__init__(
            f"collection {name!r} is unavailable: {reason}. This server does not read or write it; "
            "fix the cause (see the server log), then restart the server. The other collections are served."
        )
        self.name, self.reason = name, reason


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 1-64 characters from letters, digits, '_' and '-'"
        )
    return name


class Collections:
    """Named collections under `root_dir`, all opened at construction. Thread-safe."""

    def __init__(self, root_dir: str | Path):
        self.root = Path(root_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._open: dict[str, Collection] = {}
        self._unavailable: dict[str, str] = {}  # name -> why it could not be opened
        for sub in sorted(self.root.iterdir()):
            if (sub / SQLITE_FILE).is_file():
                if not NAME_PATTERN.match(sub.name):
                    log.warning("skipping %s: %r is not a valid collection name", sub, sub.name)
                    continue
                try:
                    self._open[sub.name] = Collection.open(sub)
                except Exception as e:  # noqa: BLE001 - one broken collection must not stop the rest
                    reason = _reason(e, self.root)
                    self._unavailable[sub.name] = reason
                    log.error("collection %r (%s) cannot be opened; it is left as it is: %s", sub.name, sub, reason)

    def all(self) -> list[Collection]:
        with self._lock:
            return [self._open[name] for name in sorted(self._open)]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._open)

    def unavailable(self) -> dict[str, str]:
        """Collections on disk that are not served: name -> why."""
        with self._lock:
            return dict(sorted(self._unavailable.items()))

    def problems(self) -> dict[str, str]:
        """What an operator must know, by collection: unavailable ones, and lost acknowledged writes."""
        out = self.unavailable()
        for collection in self.all():
            if collection.warnings:
                out[collection.name] = "; ".join(collection.warnings)
        return dict(sorted(out.items()))

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._open

    def get(self, name: str) -> Collection:
        check_name(name)
        with self._lock:
            if name in self._unavailable:
                raise CollectionUnavailableError(name, self._unavailable[name])
            if name not in self._open:
                raise CollectionNotFoundError(name, sorted(self._open))
            return self._open[name]

    def get_or_create(self, name: str, dim: int, space_id: str, config: IndexConfig | None = None) -> Collection:
        """The collection `name`, created empty if new. An existing one must match dim and space.

        `config` (index type and tuning) applies to a new collection; an existing one keeps its own.
        """
        check_name(name)
        with self._lock:
            if name in self._unavailable:  # never create over, or write into, a broken collection
                raise CollectionUnavailableError(name, self._unavailable[name])
            collection = self._open.get(name)
            if collection is None:
                try:
                    collection = Collection.create(self.root / name, dim=dim, space_id=space_id, config=config)
                except CollectionLockedError as e:  # made by another process since we started
                    raise CollectionUnavailableError(name, str(e)) from None
                self._open[name] = collection
                return collection
        if collection.dim != dim:
            raise ValueError(f"collection {name!r} holds dim-{collection.dim} vectors, not dim {dim}")
        if collection.space_id != space_id:
            raise SpaceMismatchError(collection.space_id, space_id, name)
        return collection

    def flush(self) -> None:
        with self._lock:
            collections = list(self._open.values())
        for collection in collections:
            collection.flush()

    def close(self) -> None:
        with self._lock:
            collections, self._open = list(self._open.values()), {}
        for collection in collections:
            collection.close()

    def __enter__(self) -> "Collections":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(e: Exception, root: Path) -> str:
    """What went wrong, with the root directory written INDEX_DIR: reasons are shown to clients."""
    text = str(e) or type(e).__name__
    if not isinstance(e, (ValueError, OSError, CollectionLockedError)):
        text = f"{type(e).__name__}: {text}"
    return text.replace(str(root.resolve()), "INDEX_DIR").replace(str(root), "INDEX_DIR")

"""Vector collections: FAISS search over an SQLite store of ids, metadata and vectors.

    from vistas.index import Collection, Collections

    col = Collection.create("runs/idx/default", dim=768, space_id=bundle.space_id)  # IndexConfig("auto")
    col.upsert(["a", "b"], vectors, [{"kind": "cat"}, {"kind": "dog"}], space_id=bundle.space_id)
    col.rebuild(IndexConfig(factory="HNSW32"))  # or let "auto" choose by size and memory budget
    col.search(query, k=5, filter={"kind": {"$in": ["cat", "dog"]}})  # -> [Hit(id, score, metadata)]

No torch here: the server imports this package.
"""

from vistas.index.collection import Collection, Hit, SpaceMismatchError
from vistas.index.disk import StorageFullError
from vistas.index.filters import compile_filter
from vistas.index.indexes import AUTO, IndexConfig, choose_factory
from vistas.index.lock import CollectionLockedError
from vistas.index.registry import CollectionNotFoundError, Collections, CollectionUnavailableError, check_name

__all__ = [
    "AUTO",
    "Collection",
    "CollectionLockedError",
    "CollectionNotFoundError",
    "CollectionUnavailableError",
    "Collections",
    "Hit",
    "IndexConfig",
    "SpaceMismatchError",
    "StorageFullError",
    "check_name",
    "choose_factory",
    "compile_filter",
]

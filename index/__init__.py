"""Vector collections: FAISS search over an SQLite store of ids, metadata and vectors.

    from index import Collection, Collections

    col = Collection.create("runs/idx/default", dim=768, space_id=bundle.space_id)
    col.upsert(["a", "b"], vectors, [{"kind": "cat"}, {"kind": "dog"}], space_id=bundle.space_id)
    col.flush()
    col.search(query, k=5, filter={"kind": {"$in": ["cat", "dog"]}})  # -> [Hit(id, score, metadata)]

No torch here: the server imports this package.
"""

from index.collection import INDEX_FACTORY, Collection, Hit, SpaceMismatchError
from index.filters import compile_filter
from index.registry import CollectionNotFoundError, Collections, check_name

__all__ = [
    "INDEX_FACTORY",
    "Collection",
    "CollectionNotFoundError",
    "Collections",
    "Hit",
    "SpaceMismatchError",
    "check_name",
    "compile_filter",
]

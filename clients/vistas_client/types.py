"""Typed results of the SDK, one per response body of the HTTP contract (DESIGN.md).

Unknown fields from a newer server are kept (extra="allow"), never an error.
numpy is optional: only `.image_array()` / `.text_array()` need it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")


class EmbedResult(_Result):
    model: str
    space: str  # embedding-space id: vectors of different spaces must never be compared
    dim: int
    image_embeddings: list[list[float]] = Field(default_factory=list)  # L2-normalised, request order
    text_embeddings: list[list[float]] = Field(default_factory=list)

    def image_array(self):
        """image_embeddings as float32 numpy (n, dim). Needs numpy."""
        return _array(self.image_embeddings, self.dim)

    def text_array(self):
        """text_embeddings as float32 numpy (n, dim). Needs numpy."""
        return _array(self.text_embeddings, self.dim)


class Prediction(_Result):
    label: str
    score: float  # sigmoid probability that the label fits the image


class ClassifyResult(_Result):
    model: str
    predictions: list[Prediction]  # best first


class SearchHit(_Result):
    id: str
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResult(_Result):
    collection: str
    results: list[SearchHit]  # best first


class UpsertResult(_Result):
    collection: str
    upserted: int


class DeleteResult(_Result):
    collection: str
    deleted: int


class ModelInfo(_Result):
    name: str
    family: str
    space: str
    dim: int


class CollectionInfo(_Result):
    name: str
    count: int  # live items
    space: str
    index: str  # FAISS factory string, e.g. "Flat", "HNSW32", "IVF4096,PQ64"
    dim: int | None = None
    params: dict[str, int] = Field(default_factory=dict)  # tuned efSearch / nprobe
    recall_at_10: float | None = None  # measured against exact search when the index was built
    tombstones: int = 0


class Item(_Result):
    id: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector: list[float] | None = None  # with get_item(..., vector=True)


def _array(rows: list[list[float]], dim: int):
    try:
        import numpy as np
    except ImportError:
        raise ImportError("the numpy helpers need numpy: pip install numpy (or use the plain lists)") from None
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)  # (n, dim), also for n = 0

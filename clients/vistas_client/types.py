"""Typed results of the SDK, one per response body of the HTTP contract (DESIGN.md).

Plain dataclasses (the SDK depends on httpx and numpy only), built from a reply's JSON
with `Type.from_json(body)`. Fields from a newer server that this SDK does not know are
kept in `.extra` and read as attributes (`info.target_recall`), never an error. A reply
without a required field raises ResponseValidationError naming the type and the field.
tests/clients/test_sdk_core.py checks every type against the server's own schemas.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from vistas_client.errors import ResponseValidationError


@dataclass
class _Result:
    # Reply fields this SDK does not know (a newer server), by name; also readable as attributes.
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """The result in a reply's JSON body; ResponseValidationError if it lacks a required field."""
        return _build(cls, data, cls.__name__)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form again: known fields and the extra ones, nested results as dicts."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**out, **self.extra}

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: fields sent by a newer server.
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # The pydantic names of 0.1, for one release.
    @classmethod
    def model_validate(cls, data: Any) -> Self:
        warnings.warn(f"{cls.__name__}.model_validate is deprecated: use from_json", DeprecationWarning, stacklevel=2)
        return cls.from_json(data)

    def model_dump(self) -> dict[str, Any]:
        warnings.warn(f"{type(self).__name__}.model_dump is deprecated: use to_dict", DeprecationWarning, stacklevel=2)
        return self.to_dict()


@dataclass
class EmbedResult(_Result):
    model: str
    space: str  # embedding-space id: vectors of different spaces must never be compared
    dim: int
    image_embeddings: list[list[float]] = field(default_factory=list)  # L2-normalised, request order
    text_embeddings: list[list[float]] = field(default_factory=list)
    patch_size: int | None = None  # the patch size the images ran at (FlexiViT bundles serve several)

    def image_array(self) -> np.ndarray:
        """image_embeddings as float32 numpy (n, dim)."""
        return _array(self.image_embeddings, self.dim)

    def text_array(self) -> np.ndarray:
        """text_embeddings as float32 numpy (n, dim)."""
        return _array(self.text_embeddings, self.dim)


@dataclass
class Prediction(_Result):
    label: str
    score: float  # sigmoid probability that the label fits the image


@dataclass
class ClassifyResult(_Result):
    model: str
    predictions: list[Prediction]  # best first
    patch_size: int | None = None  # the patch size the image ran at


@dataclass
class SearchHit(_Result):
    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult(_Result):
    collection: str
    results: list[SearchHit]  # best first
    patch_size: int | None = None  # the patch size an image query ran at


@dataclass
class UpsertResult(_Result):
    collection: str
    upserted: int


@dataclass
class DeleteResult(_Result):
    collection: str
    deleted: int


@dataclass
class ModelInfo(_Result):
    name: str
    family: str
    space: str
    dim: int
    patch_sizes: list[int] = field(default_factory=list)  # several for a FlexiViT bundle
    default_patch_size: int | None = None


@dataclass
class CollectionInfo(_Result):
    name: str
    count: int  # live items
    space: str
    index: str  # FAISS factory string, e.g. "Flat", "HNSW32", "IVF4096,PQ64"
    dim: int | None = None
    params: dict[str, int] = field(default_factory=dict)  # tuned efSearch / nprobe
    recall_at_10: float | None = None  # measured against exact search when the index was built
    tombstones: int = 0


@dataclass
class Item(_Result):
    id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: list[float] | None = None  # with get_item(..., vector=True)


def list_from_json(cls: type[_Result], body: Any, key: str) -> list:
    """`body[key]`, a list of `cls` (GET /v1/collections, /v1/models)."""
    if not isinstance(body, Mapping) or key not in body:
        raise ResponseValidationError(f"the reply lacks required field {key!r} (a list of {cls.__name__})")
    return _convert(body[key], list[cls], key)


# --- JSON -> dataclass -------------------------------------------------------------------


@functools.cache
def _fields(cls: type[_Result]) -> dict[str, tuple[Any, bool]]:
    """name -> (type, required) of a result type, `extra` left out."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: (hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
        if f.name != "extra"
    }


def _build(cls: type[_Result], data: Any, where: str) -> _Result:
    if not isinstance(data, Mapping):
        raise ResponseValidationError(f"{where}: expected a JSON object for {cls.__name__}, got {_kind(data)}")
    known = _fields(cls)
    missing = [name for name, (_, required) in known.items() if required and name not in data]
    if missing:
        what = where if where == cls.__name__ else f"{where} ({cls.__name__})"
        raise ResponseValidationError(
            f"{what}: the reply lacks required field {missing[0]!r} (a server of another version?)"
        )
    values = {name: _convert(data[name], tp, f"{where}.{name}") for name, (tp, _) in known.items() if name in data}
    return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def _convert(value: Any, tp: Any, where: str) -> Any:
    """One JSON value as type `tp`: nested results built, ints accepted for floats, else checked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):  # only `X | None` occurs
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, _Result):
        return _build(tp, value, where)
    if origin is list:
        _expect(isinstance(value, list), "a list", value, where)
        if args[0] is float and all(type(v) is float for v in value):
            return value  # an embedding row: the common case, checked in one pass
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _expect(isinstance(value, Mapping), "an object", value, where)
        return {k: _convert(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
    if tp is float:
        _expect(isinstance(value, (int, float)) and not isinstance(value, bool), "a number", value, where)
        return float(value)
    _expect(isinstance(value, tp) and not (tp is int and isinstance(value, bool)), tp.__name__, value, where)
    return value


def _expect(ok: bool, what: str, value: Any, where: str) -> None:
    if not ok:
        raise ResponseValidationError(f"{where}: expected {what}, got {_kind(value)}")


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r:.60}"


def _plain(value: Any) -> Any:
    if isinstance(value, _Result):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _array(rows: list[list[float]], dim: int) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)  # (n, dim), also for n = 0

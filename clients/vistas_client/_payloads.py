"""Request bodies, batching and result assembly shared by Client and AsyncClient.

No I/O here: the clients send what these functions build, so the sync and async
SDKs validate, batch and encode in exactly the same way.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from vistas_client._core import path_segment
from vistas_client._images import encode_image, is_single_image
from vistas_client.errors import VistasError
from vistas_client.types import EmbedResult

ITEM_KEYS = {"id", "image", "text", "vector", "metadata"}
ITEM_SOURCES = ("image", "text", "vector")


# --- embed -----------------------------------------------------------------------------


def as_texts(texts: str | Sequence[str]) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one string")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings, got {type(bad[0]).__name__}")
    return texts


def as_images(images) -> list:
    images = [images] if is_single_image(images) else list(images)
    if not images:
        raise ValueError("images is empty: give at least one path, bytes or PIL image")
    return images


def embed_bodies(field: str, values: list, *, model: str | None, batch_size: int,
                 patch_size: int | None = None) -> Iterator[tuple[int, dict]]:
    """(batch length, POST /v1/embed body) per batch; images are encoded one batch at a time."""
    for chunk in chunks(values, batch_size):
        data = chunk if field == "texts" else [encode_image(image) for image in chunk]
        yield len(chunk), _without_none({"model": model, field: data, "patch_size": patch_size})


def merge_embeds(parts: list[dict]) -> EmbedResult:
    """The responses of several /v1/embed batches -> one EmbedResult, in request order."""
    results = [EmbedResult.from_json(p) for p in parts]
    first = results[0]
    for r in results[1:]:
        if (r.model, r.space, r.dim) != (first.model, first.space, first.dim):
            raise VistasError(
                f"the server answered batches with different models ({first.model!r}, space {first.space} "
                f"vs {r.model!r}, space {r.space}); pass model= to pin one"
            )
    sizes = {r.patch_size for r in results if r.patch_size is not None}
    return dataclasses.replace(
        first,
        # an adaptive server may run batches at different sizes (one embedding space): None then
        patch_size=sizes.pop() if len(sizes) == 1 else None,
        image_embeddings=[v for r in results for v in r.image_embeddings],
        text_embeddings=[v for r in results for v in r.text_embeddings],
    )


# --- classify, search ----------------------------------------------------------------


def classify_body(image, labels, *, templates, multi_label: bool, model: str | None,
                  patch_size: int | None = None) -> dict:
    labels = [labels] if isinstance(labels, str) else list(labels)
    if not labels:
        raise ValueError("labels is empty: give at least one label")
    templates = [templates] if isinstance(templates, str) else templates
    body = {"model": model, "image": encode_image(image), "labels": labels, "templates": templates,
            "patch_size": patch_size}
    return {**_without_none(body), "multi_label": bool(multi_label)}


def search_body(*, text, image, vector, k: int, filter: dict | None, collection: str, model: str | None,
                patch_size: int | None = None) -> dict:
    given = [name for name, v in (("text", text), ("image", image), ("vector", vector)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"search with exactly one of text=, image= or vector=; got {given or 'none'}")
    body = {
        "collection": collection,
        "model": model,
        "text": text,
        "image": encode_image(image) if image is not None else None,
        "vector": as_vector(vector) if vector is not None else None,
        "k": k,
        "filter": filter,
        "patch_size": patch_size,
    }
    return _without_none(body)


def as_vector(vector) -> list[float]:
    """A 1-D sequence or numpy array -> list of floats for JSON."""
    values = vector.tolist() if hasattr(vector, "tolist") else vector
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError("vector must be a flat sequence of numbers, shape (dim,)") from None


# --- collections ---------------------------------------------------------------------


def item_bodies(items: Sequence[dict], *, batch_size: int, model: str | None) -> Iterator[tuple[int, dict]]:
    """(batch length, POST /v1/collections/{name}/items body) per batch; items are checked first."""
    items = list(items)
    if not items:
        raise ValueError("items is empty: give at least one {'id': ..., 'image'|'text'|'vector': ...}")
    for i, item in enumerate(items):
        _check_item(i, item)
    for chunk in chunks(items, batch_size):
        yield len(chunk), _without_none({"model": model, "items": [_item_json(item) for item in chunk]})


def _check_item(i: int, item) -> None:
    if not isinstance(item, dict):
        raise TypeError(f"items[{i}] must be a dict, got {type(item).__name__}")
    unknown = set(item) - ITEM_KEYS
    if unknown:
        raise ValueError(f"items[{i}] has unknown keys {sorted(unknown)}; allowed: {sorted(ITEM_KEYS)}")
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise ValueError(f"items[{i}] needs an 'id' that is a non-empty string")
    sources = [s for s in ITEM_SOURCES if item.get(s) is not None]
    if len(sources) != 1:
        raise ValueError(f"items[{i}] ({item['id']!r}) needs exactly one of image, text, vector; got {sources}")


def _item_json(item: dict) -> dict:
    out = dict(item)
    if item.get("image") is not None:
        out["image"] = encode_image(item["image"])
    if item.get("vector") is not None:
        out["vector"] = as_vector(item["vector"])
    return _without_none(out)


def items_path(collection: str) -> str:
    return f"/v1/collections/{path_segment(collection)}/items"


def item_path(collection: str, id: str) -> str:
    return f"{items_path(collection)}/{path_segment(id)}"


def collection_path(collection: str) -> str:
    return f"/v1/collections/{path_segment(collection)}"


# --- helpers -------------------------------------------------------------------------


def chunks(values: list, size: int) -> Iterator[list]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be a positive int, got {size!r}")
    for i in range(0, len(values), size):
        yield values[i : i + size]


@contextmanager
def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar when `enabled` (and tqdm is installed), else an object whose update() does nothing."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs tqdm (pip install tqdm); continuing without a progress bar", stacklevel=3)
        else:
            with tqdm(total=total, desc=desc, unit="item") as bar:
                yield bar
            return
    yield _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def _without_none(body: dict) -> dict:
    """Optional fields the caller left out are omitted, so the server's defaults apply."""
    return {k: v for k, v in body.items() if v is not None}

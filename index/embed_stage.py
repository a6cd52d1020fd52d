"""The embedding stage of a batch indexing job: what the local engine (build.py) and the Ray
engine (ray_engine.py) share.

Both engines yield the same rows, made by the same two steps: `decode_item` (bytes -> image,
thumbnail, model inputs) and `embed_batch` (a batch of images -> unit vectors). They live here,
with the job's config and the row type, so that ray_engine.py needs nothing from build.py and
build.py can start the Ray engine without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from vistas.images import DEFAULT_MAX_PIXELS, DEFAULT_REDUCE_ABOVE_PIXELS, Need, decode_image, larger_need
from vistas.index.indexes import IndexConfig
from vistas.index.thumbnails import make_thumbnail, thumbnail_size

ENGINES = ("local", "ray")


class ImageEmbedder(Protocol):
    """What the job needs of a model. A `vistas.inference.model.ServedModel` also offers `image_inputs` and
    `runtime`: the job then preprocesses in its decode threads and runs the batch tensors itself."""

    dim: int
    space_id: str

    def embed_images(self, images: list[Image.Image]) -> np.ndarray: ...


@dataclass(frozen=True)
class BuildConfig:
    """How a batch indexing job runs. Defaults suit a laptop; the CLI exposes each field."""

    collection: str = "default"
    batch_size: int = 64  # images per model call
    workers: int = 2  # decode threads (local engine); Ray decodes in its actors
    unit_size: int = 1024  # listed items per commit: the resume granularity of folders / CSV / JSONL
    engine: str = "local"  # "local" or "ray"
    embeddings_out: str | None = None  # also write (id, embedding, metadata) Parquet shards here
    index: IndexConfig = field(default_factory=IndexConfig)  # for a new collection / a bulk load
    thumbnails: bool = True  # keep a small JPEG per item for result grids (~2-6 KB each)
    resume: bool = True  # continue an interrupted job over the same source
    progress: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    reduce_above_pixels: int = DEFAULT_REDUCE_ABOVE_PIXELS  # larger images are reduced on decode (vistas.images)
    ray_address: str | None = None  # None: the running Ray instance, or a new local one
    ray_actors: int = 1  # model replicas (Ray actors)

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        for name in ("batch_size", "workers", "unit_size", "ray_actors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class Row:
    """One source item after the embedding stage: a vector, or the reason it has none."""

    id: str
    caption: str | None
    metadata: dict
    vector: np.ndarray | None = None  # (D,) unit float32
    thumbnail: bytes | None = None
    inputs: dict | None = None  # the model's input tensors for this image, (1, ...) each
    error: str | None = None  # why a bad item has no vector
    code: str | None = None  # the error's machine-readable code ("missing_file", "invalid_image", ...)

    @property
    def item_metadata(self) -> dict:
        return dict(self.metadata, **({"caption": self.caption} if self.caption else {}))


def decode_item(
    id: str, caption, metadata: dict, data, config: BuildConfig, model=None
) -> tuple[Row, Image.Image | None]:
    """(row without vector, image) or (row with error, None). `data`: bytes, a reader, or an error.

    The image comes upright (EXIF orientation applied); with a model that says what size it needs
    (`image_need`), one over `reduce_above_pixels` is reduced on decode to what the model and the
    thumbnail need. With a model that has `image_inputs`, it is also preprocessed here (in the
    calling decode thread), so the model's thread only runs the network, and then let go: None
    comes back in its place."""
    row = Row(id=id, caption=caption, metadata=metadata)
    try:
        if isinstance(data, Exception):
            raise data
        blob = data() if callable(data) else data
        image = decode_image(blob, config.max_pixels, _need(model, config), config.reduce_above_pixels)
        if config.thumbnails:
            row.thumbnail = make_thumbnail(image)
        if hasattr(model, "image_inputs") and hasattr(model, "runtime"):
            row.inputs = model.image_inputs([image])
            return row, None  # a batch of decoded images would wait for the model: keep the inputs only
        return row, image
    except Exception as e:  # noqa: BLE001 - by contract nothing an item does stops the job
        row.code, row.error = getattr(e, "code", type(e).__name__), str(e)
        return row, None


def _need(model, config: BuildConfig) -> Need | None:
    """What decoding may reduce an image towards: the model's input and the thumbnail, or
    nothing (full size) for a model that does not say."""
    if not hasattr(model, "image_need"):
        return None
    return larger_need(model.image_need, thumbnail_size) if config.thumbnails else model.image_need


def embed_batch(model: ImageEmbedder, decoded: Iterable[tuple[Row, Image.Image | None]]) -> list[Row]:
    decoded = list(decoded)
    ok = [(row, image) for row, image in decoded if row.error is None]
    if ok:
        batched = _stack_inputs([row.inputs for row, _ in ok])
        if batched is not None:
            vectors = model.runtime.run("image", batched)  # (n, D), L2-normalised
        elif all(row.inputs is not None for row, _ in ok):  # inputs that do not stack: one call each
            vectors = np.concatenate([model.runtime.run("image", row.inputs) for row, _ in ok])
        else:
            vectors = model.embed_images([image for _, image in ok])
        for (row, _), v in zip(ok, vectors):
            row.vector = np.asarray(v, dtype=np.float32)
            row.inputs = None
    return [row for row, _ in decoded]


def _stack_inputs(per_image: list[dict | None]) -> dict | None:
    """Per-image input tensors -> one batch, or None when they do not stack (then embed_images)."""
    if not per_image or any(x is None for x in per_image):
        return None
    names = per_image[0].keys()
    if any(x.keys() != names or any(x[n].shape != per_image[0][n].shape for n in names) for x in per_image):
        return None  # e.g. variable-resolution inputs: the model batches them itself
    return {n: np.concatenate([x[n] for x in per_image]) for n in names}

"""Collections: list them, upsert / get / delete items, serve item thumbnails.

An upsert or delete answers only after its write-ahead-log commit (index/collection.py): an
acknowledged write survives a crash of the server at any moment. Items added as images keep a
small JPEG thumbnail (GET .../images/{id}) for result grids such as the search page at `/`.

A write the disk has no room for answers 507 `insufficient_storage` and changes nothing; a
collection the server could not open answers 503 `collection_unavailable` on every route
(both mapped in vistas.serving.errors).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from vistas.images import larger_need
from vistas.index import Collections, SpaceMismatchError
from vistas.index.thumbnails import make_thumbnail, thumbnail_size
from vistas.inference.model import ServedModel
from vistas.serving.deps import (
    CollectionsDep,
    ImageDecodingDep,
    ModelsDep,
    SettingsDep,
    check_space,
    open_collection,
    pick_model,
    writable_collection,
)
from vistas.serving.errors import APIError
from vistas.serving.parsing import (
    ImageDecoding,
    check_count,
    check_texts,
    decode_base64,
    decode_images,
    require_json,
    unit_vector,
)
from vistas.serving.schemas import (
    CollectionInfo,
    CollectionsResponse,
    DeleteResponse,
    ErrorResponse,
    ItemResponse,
    UpsertItem,
    UpsertRequest,
    UpsertResponse,
)
from vistas.serving.settings import Settings

router = APIRouter(prefix="/v1/collections", tags=["collections"])

ERRORS = {404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}}


def _check_items(items: list[UpsertItem], settings: Settings) -> None:
    check_count("items", len(items), settings.max_items, "max_items")
    for i, item in enumerate(items):
        given = [f for f in ("image", "text", "vector") if getattr(item, f) is not None]
        if len(given) != 1:
            raise APIError(
                400,
                "invalid_item",
                f"items[{i}] (id {item.id!r}) needs exactly one of image, text or vector; got {given or 'none'}.",
            )
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise APIError(422, "duplicate_ids", f"id {item.id!r} appears twice in one upsert; send each id once.")
        seen.add(item.id)
    texts = [item.text for item in items if item.text is not None]
    check_count("texts of items", len(texts), settings.max_texts, "max_texts")
    check_texts("items.text", texts, settings.max_text_chars)
    n_images = sum(item.image is not None for item in items)
    check_count("images of items", n_images, settings.max_batch_images, "max_batch_images")


def _embed_items(
    model: ServedModel,
    items: list[UpsertItem],
    images: dict[int, bytes],  # item index -> image bytes
    vectors: dict[int, np.ndarray],  # item index -> checked unit vector (D,)
    decoding: ImageDecoding,
) -> tuple[np.ndarray, list[bytes | None]]:
    """Items -> (float32 (n, D) in item order, a thumbnail per item: JPEG bytes for images, else None).

    Images and texts are embedded in one batch each."""
    out = np.empty((len(items), model.dim), np.float32)
    thumbnails: list[bytes | None] = [None] * len(items)
    if images:
        rows = sorted(images)
        need = larger_need(model.image_need, thumbnail_size)  # one decode serves both
        prepared = decode_images(
            [(f"items[{i}].image", images[i]) for i in rows],
            decoding,
            need,
            lambda image: (model.image_inputs([image]), make_thumbnail(image)),
        )
        out[rows] = model.embed_image_inputs([inputs for inputs, _ in prepared])
        for i, (_, thumbnail) in zip(rows, prepared):
            thumbnails[i] = thumbnail
    if text_rows := [i for i, item in enumerate(items) if item.text is not None]:
        out[text_rows] = model.embed_texts([items[i].text for i in text_rows])
    for i, v in vectors.items():
        out[i] = v
    return out, thumbnails


def _write(
    collections: Collections, name: str, model: ServedModel, items: list[UpsertItem], embedded: tuple
) -> int:
    coll = writable_collection(collections, name, model)
    ids = [item.id for item in items]
    metadata = [item.metadata or {} for item in items]
    vectors, thumbnails = embedded
    try:  # returns after the write-ahead-log commit
        return coll.upsert(ids, vectors, metadata, space_id=model.space_id, thumbnails=thumbnails)
    except SpaceMismatchError as e:  # a concurrent request created it with another space
        raise APIError(409, "space_mismatch", str(e)) from None
    except ValueError as e:  # e.g. metadata that is not JSON
        raise APIError(422, "invalid_item", str(e)) from None


@router.post(
    "/{name}/items", response_model=UpsertResponse, dependencies=[Depends(require_json)], responses=ERRORS
)
async def upsert_items(
    name: str,
    req: UpsertRequest,
    models: ModelsDep,
    collections: CollectionsDep,
    settings: SettingsDep,
    decoding: ImageDecodingDep,
) -> UpsertResponse:
    """Insert or replace items; the collection is created on first write with the model's space."""
    _check_items(req.items, settings)
    # An unavailable (broken) collection is refused here, 503, before any embedding work.
    known = name in collections or name in collections.unavailable()
    existing = open_collection(collections, name) if known else None
    model = pick_model(models, req.model, space_id=existing.space_id if existing else None)
    if existing is not None:
        check_space(model, existing)  # before any embedding work
    # The cheap checks of every item come before the expensive embedding of any.
    images, vectors = {}, {}
    for i, item in enumerate(req.items):
        if item.image is not None:
            images[i] = decode_base64(item.image, f"items[{i}].image")
        elif item.vector is not None:
            vectors[i] = unit_vector(item.vector, model.dim, f"items[{i}].vector")
    # Embed first: a bad image fails the request before a new collection is created.
    embedded = await run_in_threadpool(_embed_items, model, req.items, images, vectors, decoding)
    n = await run_in_threadpool(_write, collections, name, model, req.items, embedded)
    return UpsertResponse(collection=name, upserted=n)


# `:path` because ids are often file paths ("cats/01.jpg").
@router.delete("/{name}/items/{item_id:path}", response_model=DeleteResponse, responses=ERRORS)
async def delete_item(name: str, item_id: str, collections: CollectionsDep) -> DeleteResponse:
    """Delete one item; `deleted` is 0 when the id was not there."""
    coll = open_collection(collections, name)
    n = await run_in_threadpool(coll.delete, [item_id])
    return DeleteResponse(collection=name, deleted=n)


@router.get("", response_model=CollectionsResponse)
async def list_collections(collections: CollectionsDep) -> CollectionsResponse:
    """Every collection of this server, by name; `unavailable`: those on disk it could not open, and why."""
    return CollectionsResponse(
        collections=[CollectionInfo(**c.info()) for c in collections.all()], unavailable=collections.unavailable()
    )


@router.get("/{name}", response_model=CollectionInfo, responses=ERRORS)
async def collection_info(name: str, collections: CollectionsDep) -> CollectionInfo:
    """Count, embedding space, index type with its tuned search knob and measured recall@10."""
    return CollectionInfo(**open_collection(collections, name).info())


@router.get("/{name}/items/{item_id:path}", response_model=ItemResponse, responses=ERRORS)
async def get_item(name: str, item_id: str, collections: CollectionsDep, vector: bool = False) -> ItemResponse:
    """One item's metadata (and its stored unit vector with `?vector=true`)."""
    coll = open_collection(collections, name)
    item = await run_in_threadpool(coll.get, item_id)
    if item is None:
        raise APIError(404, "item_not_found", f"No item {item_id!r} in collection {name!r}.")
    return ItemResponse(
        id=item["id"], metadata=item["metadata"], vector=item["vector"].tolist() if vector else None
    )


@router.get(
    "/{name}/images/{item_id:path}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
)
async def item_image(name: str, item_id: str, collections: CollectionsDep) -> Response:
    """The item's thumbnail (JPEG, at most 128 px a side); 404 `no_image` for items added as vectors or texts."""
    coll = open_collection(collections, name)
    data = await run_in_threadpool(coll.thumbnail, item_id)
    if data is None:
        exists = await run_in_threadpool(coll.get, item_id) is not None
        what = "was not added as an image, so it has no thumbnail" if exists else "does not exist"
        raise APIError(404, "no_image" if exists else "item_not_found", f"Item {item_id!r} of {name!r} {what}.")
    return Response(content=data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

"""POST /v1/search: nearest items of a collection to a text, an image or a vector."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from vistas.index import Hit, compile_filter
from vistas.inference.model import ServedModel
from vistas.serving.deps import (
    CollectionsDep,
    ImageDecodingDep,
    ModelsDep,
    PatchSizesDep,
    SettingsDep,
    check_space,
    open_collection,
    pick_model,
)
from vistas.serving.errors import APIError
from vistas.serving.parsing import (
    ImageDecoding,
    check_texts,
    decode_base64,
    decode_images,
    require_json,
    unit_vector,
)
from vistas.serving.schemas import ErrorResponse, SearchRequest, SearchResponse, SearchResult

router = APIRouter(tags=["search"])


def _embed_query(model: ServedModel, text: str | None, image: bytes | None, decoding: ImageDecoding,
                 patch_size: int | None = None) -> np.ndarray:
    """A text or image query -> float32 (D,)."""
    if image is not None:
        return model.embed_images(decode_images([("image", image)], decoding, model.image_need), patch_size)[0]
    return model.embed_texts([text])[0]


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    dependencies=[Depends(require_json)],
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
async def search(
    req: SearchRequest,
    models: ModelsDep,
    collections: CollectionsDep,
    settings: SettingsDep,
    decoding: ImageDecodingDep,
    patch_sizes: PatchSizesDep,
) -> SearchResponse:
    """Top-k items, best first; `score` is the cosine similarity. Give exactly one of text, image, vector."""
    given = [f for f in ("text", "image", "vector") if getattr(req, f) is not None]
    if len(given) != 1:
        raise APIError(
            400, "invalid_query", f"Give exactly one of text, image or vector to search with; got {given or 'none'}."
        )
    if req.k > settings.max_k:
        raise APIError(
            422, "too_many_items", f"k is {req.k}, over this server's limit of {settings.max_k} (max_k); ask for fewer."
        )
    coll = open_collection(collections, req.collection)
    try:
        compile_filter(req.filter)
    except ValueError as e:
        raise APIError(422, "invalid_filter", str(e)) from None

    patch_size = None
    if req.patch_size is not None and req.image is None:
        raise APIError(422, "validation_error", "patch_size applies to image queries only; this query has no image.")
    if req.vector is not None:
        query = unit_vector(req.vector, coll.dim, "vector")
    else:
        model = pick_model(models, req.model, space_id=coll.space_id)
        check_space(model, coll)
        if req.text is not None:
            check_texts("text", [req.text], settings.max_text_chars)
        image = decode_base64(req.image, "image") if req.image is not None else None
        if image is not None:
            patch_size = patch_sizes.choose(model, req.patch_size)
        query = await run_in_threadpool(_embed_query, model, req.text, image, decoding, patch_size)
    hits: list[Hit] = await run_in_threadpool(coll.search, query, req.k, req.filter)
    return SearchResponse(
        collection=req.collection,
        patch_size=patch_size,
        results=[SearchResult(id=h.id, score=h.score, metadata=h.metadata) for h in hits],
    )

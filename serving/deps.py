"""Request-scoped access to what the lifespan built once: settings, models, collections.

The dependencies are `async def` although they never await: FastAPI runs a plain `def`
dependency in the thread pool, a thread handoff (and a GIL round trip) per dependency per
request for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vistas.index import Collection, CollectionNotFoundError, Collections, SpaceMismatchError, check_name
from vistas.inference.model import ServedModel
from vistas.serving.context import current_request
from vistas.serving.errors import APIError
from vistas.serving.parsing import ImageDecoding
from vistas.serving.patch_size import PatchSizePolicy
from vistas.serving.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_models(request: Request) -> dict[str, ServedModel]:
    """Models by name, in bundle order: the first is the default. 503 while they load."""
    models = request.app.state.models
    if models is None:
        raise APIError(
            503,
            "not_ready",
            "The models are still loading; retry shortly (GET /ready answers 200 once they are in).",
            headers={"Retry-After": "1"},
        )
    return models


async def get_collections(request: Request) -> Collections:
    collections = request.app.state.collections
    if collections is None:  # the index directory could not be used (see vistas.serving.lifecycle)
        why = getattr(request.app.state, "collections_error", None) or "the server has no index directory"
        raise APIError(
            503,
            "no_index",
            f"Collections are unavailable: {why}. Give the server a writable directory with --index DIR "
            "(VISTAS_INDEX_DIR) or VISTAS_DATA_DIR, and restart it.",
        )
    return collections


async def get_image_decoding(request: Request) -> ImageDecoding:
    return request.app.state.image_decoding


SettingsDep = Annotated[Settings, Depends(get_settings)]
ImageDecodingDep = Annotated[ImageDecoding, Depends(get_image_decoding)]
ModelsDep = Annotated[dict[str, ServedModel], Depends(get_models)]


async def get_patch_sizes(request: Request) -> PatchSizePolicy:
    return request.app.state.patch_sizes


PatchSizesDep = Annotated[PatchSizePolicy, Depends(get_patch_sizes)]
CollectionsDep = Annotated[Collections, Depends(get_collections)]


def pick_model(models: dict[str, ServedModel], name: str | None, *, space_id: str | None = None) -> ServedModel:
    """The named model; unnamed: the first model of `space_id` if given, else the default model."""
    model = _pick(models, name, space_id)
    if (ctx := current_request()) is not None:
        ctx.model = model.name  # for the access log
    return model


def _pick(models: dict[str, ServedModel], name: str | None, space_id: str | None) -> ServedModel:
    if name is not None:
        if name not in models:
            raise APIError(
                404, "model_not_found", f"No model {name!r}; this server has {sorted(models)} (see /v1/models)."
            )
        return models[name]
    if not models:
        raise APIError(503, "no_model", "This server has no model loaded; start it with a bundle.")
    if space_id is not None:
        for model in models.values():
            if model.space_id == space_id:
                return model
    return next(iter(models.values()))


def open_collection(collections: Collections, name: str) -> Collection:
    """An existing collection, or 404 `collection_not_found`."""
    try:
        return collections.get(check_name(name))
    except CollectionNotFoundError:
        known = collections.names()
        raise APIError(
            404,
            "collection_not_found",
            f"No collection {name!r} (this server has {known or 'none'}); "
            f"add items with POST /v1/collections/{name}/items first.",
        ) from None
    except ValueError as e:
        raise APIError(422, "invalid_collection_name", str(e)) from None


def writable_collection(collections: Collections, name: str, model: ServedModel) -> Collection:
    """The collection `name` for vectors of `model`, created on first write; 409 if it holds another space."""
    try:
        check_name(name)
    except ValueError as e:
        raise APIError(422, "invalid_collection_name", str(e)) from None
    try:
        return collections.get_or_create(name, model.dim, model.space_id)
    except SpaceMismatchError as e:
        raise APIError(409, "space_mismatch", str(e)) from None
    except ValueError as e:  # an existing collection of another dim: another space too
        raise APIError(409, "space_mismatch", str(e)) from None


def check_space(model: ServedModel, coll: Collection) -> None:
    """Vectors of one embedding space only: a model of another space gets 409."""
    if model.space_id != coll.space_id:
        raise APIError(
            409,
            "space_mismatch",
            f"Collection {coll.name!r} holds vectors of space {coll.space_id}, but model {model.name!r} embeds "
            f"into {model.space_id}; use a model of that space (see /v1/models) or another collection.",
        )

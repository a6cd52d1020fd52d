"""POST /v1/embed: images and/or texts -> L2-normalised vectors, in request order."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from vistas.inference.model import ServedModel
from vistas.serving.deps import ImageDecodingDep, ModelsDep, PatchSizesDep, SettingsDep, pick_model
from vistas.serving.errors import APIError
from vistas.serving.parsing import (
    JSON,
    ImageDecoding,
    body_kind,
    check_count,
    check_form_fields,
    check_texts,
    decode_base64,
    decode_images,
    form_bytes,
    form_strings,
    read_form,
    read_json,
    validate,
)
from vistas.serving.schemas import EmbedRequest, EmbedResponse, ErrorResponse
from vistas.serving.settings import Settings

router = APIRouter(tags=["embed"])

_MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "texts": {"type": "array", "items": {"type": "string"}},
        "model": {"type": "string"},
        "patch_size": {"type": "integer"},
    },
}
OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": EmbedRequest.model_json_schema()},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}


async def _parse(request: Request) -> tuple[EmbedRequest, list[tuple[str, bytes]]]:
    """-> (request without images, [(where, image bytes)])."""
    if body_kind(request) == JSON:
        req = validate(EmbedRequest, await read_json(request))
        blobs = [(f"images[{i}]", decode_base64(s, f"images[{i}]")) for i, s in enumerate(req.images or ())]
        return req, blobs
    async with read_form(request) as form:
        check_form_fields(form, {"images", "texts", "model", "patch_size"})
        blobs = [(f"images[{i}]", await form_bytes(v, f"images[{i}]")) for i, v in enumerate(form.getlist("images"))]
        req = validate(EmbedRequest, {"model": form.get("model"), "texts": form_strings(form, "texts"),
                                      "patch_size": form.get("patch_size")})
    return req, blobs


def _check_limits(req: EmbedRequest, n_images: int, settings: Settings) -> None:
    check_count("images", n_images, settings.max_batch_images, "max_batch_images")
    check_count("texts", len(req.texts or ()), settings.max_texts, "max_texts")
    check_texts("texts", req.texts or [], settings.max_text_chars)


def _embed(model: ServedModel, blobs: list[tuple[str, bytes]], texts: list[str], decoding: ImageDecoding,
           patch_size: int):
    inputs = decode_images(blobs, decoding, model.image_need, lambda image: model.image_inputs([image]))
    return model.embed_image_inputs(inputs, patch_size), model.embed_texts(texts)


@router.post(
    "/v1/embed",
    response_model=EmbedResponse,
    openapi_extra=OPENAPI,
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 415: {"model": ErrorResponse}},
)
async def embed(
    request: Request, models: ModelsDep, settings: SettingsDep, decoding: ImageDecodingDep, patch_sizes: PatchSizesDep
) -> EmbedResponse:
    """Embed images and/or texts. JSON with base64 `images`, or multipart with `images` file parts."""
    req, blobs = await _parse(request)
    if not blobs and not req.texts:
        raise APIError(422, "validation_error", "Nothing to embed: give `images` and/or `texts`.")
    _check_limits(req, len(blobs), settings)
    model = pick_model(models, req.model)
    patch_size = patch_sizes.choose(model, req.patch_size, len(blobs))
    img, txt = await run_in_threadpool(_embed, model, blobs, req.texts or [], decoding, patch_size)
    return EmbedResponse(
        model=model.name,
        space=model.space_id,
        dim=model.dim,
        image_embeddings=img.tolist(),
        text_embeddings=txt.tolist(),
        patch_size=patch_size if blobs else None,
    )

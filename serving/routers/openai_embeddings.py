"""POST /v1/embeddings: OpenAI's embeddings API, so the `openai` package works unchanged.

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.embeddings.create(model="siglip-shapes-digits", input=["a red circle", "data:image/png;base64,..."])

`input` is a string or a list of strings; a string that is a base64 data URL of an image
(`data:image/png;base64,...`) is embedded by the image tower, any other by the text tower,
into the same space. `encoding_format="base64"` returns each vector as the base64 of its
little-endian float32 bytes (what the openai package asks for by default and decodes itself).
Errors use OpenAI's shape, a superset of ours: `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import base64
import re
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vistas.inference.model import ServedModel
from vistas.serving.deps import ImageDecodingDep, ModelsDep, PatchSizesDep, SettingsDep, pick_model
from vistas.serving.errors import APIError, validation_message
from vistas.serving.parsing import (
    ImageDecoding,
    body_kind,
    check_count,
    check_texts,
    decode_base64,
    decode_images,
    read_json,
    validate,
)
from vistas.serving.patch_size import PatchSizePolicy

router = APIRouter(tags=["openai"])

IMAGE_PREFIX = "data:image/"


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A model name from /v1/models.")
    input: str | list[str] = Field(
        description="Texts, and images as base64 data URLs ('data:image/png;base64,...'); token arrays are not accepted."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="Must equal the model's dim: vectors are not truncated.")
    user: str | None = Field(None, description="Accepted and ignored.")
    patch_size: int | None = Field(
        None, ge=1, description="vistas extension (openai: extra_body): a FlexiViT bundle's patch size for the images."
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Text tokens (up to the model's text length) plus image patches.")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error(status: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status
    )


def _is_token_array(data: dict) -> bool:
    value = data.get("input")
    return isinstance(value, list) and any(isinstance(v, (int, list)) for v in value)


def _split(inputs: list[str]) -> tuple[list[int], list[int]]:
    """-> (indices of image data URLs, indices of texts)."""
    images = [i for i, s in enumerate(inputs) if s.startswith(IMAGE_PREFIX)]
    texts = [i for i, s in enumerate(inputs) if not s.startswith(IMAGE_PREFIX)]
    return images, texts


def _embed(
    model: ServedModel, inputs: list[str], blobs: dict[int, bytes], decoding: ImageDecoding, patch_size: int
) -> tuple[np.ndarray, int]:
    """-> (float32 (N, D) in input order, prompt tokens)."""
    out = np.empty((len(inputs), model.dim), np.float32)
    tokens = 0
    if blobs:
        rows = sorted(blobs)
        prepared = decode_images(
            [(f"input[{i}]", blobs[i]) for i in rows], decoding, model.image_need, lambda im: model.image_inputs([im])
        )
        out[rows] = model.embed_image_inputs(prepared, patch_size)
        img = model.spec.preprocess.image
        tokens += len(rows) * (img.height // patch_size) * (img.width // patch_size)
    if text_rows := [i for i in range(len(inputs)) if i not in blobs]:
        feeds = model.text_inputs([inputs[i] for i in text_rows])
        out[text_rows] = model.runtime.run("text", feeds)
        tokens += int(sum((ids != model.spec.preprocess.text.pad_id).sum() for ids in feeds.values()))
    return out, tokens


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    responses={400: {"model": OpenAIErrorResponse}, 404: {"model": OpenAIErrorResponse}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": EmbeddingsRequest.model_json_schema()}}}},
)
async def create_embeddings(
    request: Request, models: ModelsDep, settings: SettingsDep, decoding: ImageDecodingDep, patch_sizes: PatchSizesDep
):
    """OpenAI-compatible embeddings of texts and images (base64 data URLs) into one space."""
    try:
        return await _create(request, models, settings, decoding, patch_sizes)
    except APIError as e:
        return openai_error(e.status_code, e.code, e.message, _param(e.message))
    except RequestValidationError as e:
        errors = list(e.errors())
        param = _param(validation_message(errors))
        return openai_error(422, "validation_error", validation_message(errors), param)


def _param(message: str) -> str | None:
    """The request field an error message starts with ("input[2]: ..." -> "input")."""
    head = re.match(r"[a-z_]*", message).group()
    return head if head in EmbeddingsRequest.model_fields else None


async def _create(
    request: Request, models: ModelsDep, settings: SettingsDep, decoding: ImageDecoding, patch_sizes: PatchSizePolicy
) -> JSONResponse:
    body_kind(request, multipart=False)
    data = await read_json(request)
    if _is_token_array(data):
        raise APIError(
            400,
            "unsupported_input",
            "input: token arrays are not accepted (the model's tokenizer is not OpenAI's); send strings.",
        )
    req = validate(EmbeddingsRequest, data)
    model = pick_model(models, req.model)
    if req.dimensions is not None and req.dimensions != model.dim:
        raise APIError(
            400,
            "unsupported_dimensions",
            f"dimensions: model {model.name!r} returns {model.dim}-dim vectors and does not truncate them; "
            f"omit `dimensions` or set it to {model.dim}.",
        )
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise APIError(400, "validation_error", "input: give at least one string.")
    image_rows, text_rows = _split(inputs)
    check_count("input images", len(image_rows), settings.max_batch_images, "max_batch_images")
    check_count("input texts", len(text_rows), settings.max_texts, "max_texts")
    check_texts("input", [inputs[i] for i in text_rows], settings.max_text_chars)
    blobs = {i: decode_base64(inputs[i], f"input[{i}]") for i in image_rows}
    patch_size = patch_sizes.choose(model, req.patch_size, len(blobs))
    vectors, tokens = await run_in_threadpool(_embed, model, inputs, blobs, decoding, patch_size)
    if req.encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        encoded = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        encoded = vectors.tolist()
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
        "model": model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    } | ({"patch_size": patch_size} if blobs else {})
    return JSONResponse(body)

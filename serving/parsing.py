"""Reading request bodies that may be JSON or multipart, and the per-request limits.

FastAPI parses a typed body for JSON-only routes; /v1/embed and /v1/classify
also take multipart/form-data, so they read the body themselves with these helpers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from vistas.images import ImageError, decode_image
from vistas.serving.errors import APIError, image_error

JSON, MULTIPART = "json", "multipart"
M = TypeVar("M", bound=BaseModel)


def body_kind(request: Request, *, multipart: bool = True) -> str:
    """JSON or MULTIPART from Content-Type; anything else is a 415."""
    ctype = request.headers.get("content-type", "")
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json")):
        return JSON
    if multipart and mime == "multipart/form-data":
        return MULTIPART
    accepted = "application/json or multipart/form-data" if multipart else "application/json"
    raise APIError(
        415,
        "unsupported_media_type",
        f"Content-Type {ctype or '(none)'!r} is not supported here; send {accepted}.",
    )


async def require_json(request: Request) -> None:
    """Dependency for JSON-only routes: a wrong Content-Type is 415, not a confusing 422 (async: no thread hop)."""
    body_kind(request, multipart=False)


async def read_json(request: Request) -> dict:
    """The body as a JSON object, or 400 `invalid_json`."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, "invalid_json", f"body: not valid JSON ({e}).") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "body: the JSON nests too deeply.") from None
    if not isinstance(data, dict):
        raise APIError(400, "invalid_json", f"The body must be a JSON object, got {type(data).__name__}.")
    return data


def validate(model: type[M], data: dict) -> M:
    """Pydantic validation with FastAPI's error shape, so it reaches the 422 handler."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = [dict(err, loc=("body", *err["loc"])) for err in e.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def decode_base64(value: str, where: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional, `data:...;base64,` prefix allowed) -> bytes."""
    s = value.strip()
    if s.startswith("data:"):
        header, sep, s = s.partition(",")
        if not sep or not header.endswith(";base64"):
            raise APIError(400, "invalid_base64", f"{where}: a data: URL must be 'data:<mime>;base64,<data>'.")
    s = "".join(s.split())  # line-wrapped base64 (MIME, `base64` CLI) is common
    s += "=" * (-len(s) % 4)
    try:
        altchars = b"-_" if ("-" in s or "_" in s) else None  # URL-safe alphabet
        return base64.b64decode(s.encode("ascii"), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(
            400, "invalid_base64", f"{where}: not valid base64; send the image file's bytes base64-encoded."
        ) from None


def read_form(request: Request):
    """`async with read_form(request) as form:` parses the multipart body and closes its files after.

    The body-size middleware already bounds the total; these only stop pathological part counts.
    """
    return request.form(max_files=10_000, max_fields=10_000)


def check_form_fields(form: FormData, allowed: set[str]) -> None:
    unknown = sorted(set(form.keys()) - allowed)
    if unknown:
        raise APIError(
            422, "validation_error", f"unknown form field(s) {unknown}; expected some of {sorted(allowed)}."
        )


async def form_bytes(value: UploadFile | str, where: str) -> bytes:
    """A multipart image: a file part, or a text part holding base64."""
    if isinstance(value, str):
        return decode_base64(value, where)
    return await value.read()


def form_strings(form: FormData, name: str, *, json_list: bool = False) -> list[str] | None:
    """Repeated text fields -> list; with json_list a single field may hold a JSON list instead."""
    values = form.getlist(name)
    if not values:
        return None
    if any(not isinstance(v, str) for v in values):
        raise APIError(422, "validation_error", f"{name}: must be text fields, not files.")
    if json_list and len(values) == 1 and values[0].lstrip().startswith("["):
        try:
            parsed = json.loads(values[0])
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
            return parsed
    return list(values)


def check_count(name: str, n: int, limit: int, setting: str) -> None:
    if n > limit:
        raise APIError(
            422,
            "too_many_items",
            f"{name} has {n} entries, over this server's limit of {limit} ({setting}); split the request.",
        )


def check_texts(name: str, texts: list[str], max_chars: int) -> None:
    for i, t in enumerate(texts):
        if len(t) > max_chars:
            raise APIError(
                422,
                "text_too_long",
                f"{name}[{i}] is {len(t)} characters, over the limit of {max_chars} (max_text_chars).",
            )


def unit_vector(values: list[float], dim: int, where: str) -> np.ndarray:
    """A client vector -> float32 (dim,), L2-normalised, as every embedding we store and compare."""
    if len(values) != dim:
        raise APIError(422, "dimension_mismatch", f"{where} has {len(values)} values; this space has dim {dim}.")
    v = np.asarray(values, dtype=np.float64)
    scale = float(np.max(np.abs(v))) if len(v) else 0.0
    if not math.isfinite(scale) or scale == 0.0:
        raise APIError(422, "invalid_vector", f"{where} must be finite and non-zero.")
    v = v / scale  # the norm of huge (1e300) but finite values does not overflow
    return (v / np.linalg.norm(v)).astype(np.float32)


def decode_images(blobs: list[tuple[str, bytes]], max_pixels: int) -> list[Image.Image]:
    """(where, image bytes) pairs -> RGB PIL images; the first bad one fails the request,
    named by `where` (e.g. "images[2]"). CPU-bound: call it from the threadpool."""
    images = []
    for where, data in blobs:
        try:
            images.append(decode_image(data, max_pixels=max_pixels))
        except ImageError as e:
            raise image_error(e, where) from None
    return images

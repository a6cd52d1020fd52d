"""Reading request bodies that may be JSON or multipart, and the per-request limits.

FastAPI parses a typed body for JSON-only routes; /v1/embed and /v1/classify
also take multipart/form-data, so they read the body themselves with these helpers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from vistas.images import ImageError, Need, open_image
from vistas.serving.errors import APIError, image_error
from vistas.serving.pixel_budget import PixelBudget, PixelBudgetTimeout
from vistas.unicode import find_lone_surrogate, json_may_hold_surrogate, lone_surrogate, surrogate_message

JSON, MULTIPART = "json", "multipart"
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


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
    """Dependency for JSON-only routes: a wrong Content-Type is 415, not a confusing 422; a string
    that is not Unicode text is 400 (check_json_text). Async: no thread hop."""
    body_kind(request, multipart=False)
    raw = await request.body()  # FastAPI has read and parsed the body already: both are cached
    if json_may_hold_surrogate(raw):
        check_json_text(raw, await request.json())


def check_json_text(raw: bytes, doc) -> None:
    """400 `invalid_text` naming the field and character when a string of the JSON body `doc`
    (parsed from `raw`), key or value, is not Unicode text (vistas.unicode)."""
    if json_may_hold_surrogate(raw) and (message := find_lone_surrogate(doc)) is not None:
        raise APIError(400, "invalid_text", message)


async def read_json(request: Request) -> dict:
    """The body as a JSON object, or 400 `invalid_json`."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, "invalid_json", f"body: not valid JSON ({e}).") from None
    except RecursionError:
        raise APIError(400, "invalid_json", "body: the JSON nests too deeply.") from None
    except ValueError:  # Python's int parsing limit (sys.get_int_max_str_digits), not JSON syntax
        raise APIError(
            400, "invalid_json", f"body: a number has over {sys.get_int_max_str_digits()} digits; send fewer."
        ) from None
    if not isinstance(data, dict):
        raise APIError(400, "invalid_json", f"The body must be a JSON object, got {type(data).__name__}.")
    check_json_text(raw, data)
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
    """Every text a model will see: Unicode text (also where it came as multipart or BYTES), not too long."""
    for i, t in enumerate(texts):
        if (at := lone_surrogate(t)) is not None:
            raise APIError(400, "invalid_text", surrogate_message(f"{name}[{i}]", t, at))
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


@dataclass(frozen=True)
class ImageDecoding:
    """The limits every route decodes request images within (README, Settings: request limits)."""

    max_image_pixels: int
    max_request_pixels: int
    reduce_above_pixels: int
    budget: PixelBudget  # shared by all requests of the app
    wait_s: float  # longest wait for room in the budget

    @classmethod
    def from_settings(cls, settings) -> ImageDecoding:
        return cls(
            settings.max_image_pixels,
            settings.max_request_pixels,
            settings.reduce_above_pixels,
            PixelBudget(settings.max_pixels_in_flight),
            settings.batch_timeout_s,
        )


def decode_images(
    blobs: list[tuple[str, bytes]], decoding: ImageDecoding, need: Need, use: Callable[[Image.Image], T] | None = None
) -> list[T]:
    """(where, image bytes) pairs -> `use(image)` of each upright RGB image, in order.

    Every header is read and the request's pixels checked before any image is decoded. Then the
    images are decoded one at a time, each within the app's pixel budget and reduced for `need`
    (`vistas.images.open_image`), and handed to `use` (say, the model's preprocessing) before
    the next: a request never holds more than one full-size image. The first bad image fails
    the request, named by `where` (e.g. "images[2]"). CPU-bound and blocking: call it from the
    threadpool."""
    pending = []
    for where, data in blobs:
        try:
            pending.append((where, open_image(data, decoding.max_image_pixels, need, decoding.reduce_above_pixels)))
        except ImageError as e:
            raise image_error(e, where) from None
    total = sum(image.pixels for _, image in pending)
    if total > decoding.max_request_pixels:
        raise APIError(
            413,
            "too_many_pixels",
            f"The {len(pending)} images of this request decode to {total} pixels in total, over this "
            f"server's limit of {decoding.max_request_pixels} (max_request_pixels); send fewer or smaller images.",
        )
    out = []
    for where, image in pending:
        try:
            with decoding.budget.hold(image.pixels, decoding.wait_s):
                decoded = image.decode()  # the full-size pixels are gone when this returns
        except ImageError as e:
            raise image_error(e, where) from None
        except PixelBudgetTimeout as e:
            raise APIError(503, "queue_timeout", f"{where}: {e}", headers={"Retry-After": "1"}) from None
        out.append(use(decoded) if use is not None else decoded)
        del decoded  # preprocessed: only what `use` kept stays
    return out

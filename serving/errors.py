"""One error type and the handlers that make every error the same JSON shape.

    {"error": {"code": "invalid_image", "message": "images[1]: The data is not an image ..."}}

`code` is stable and machine-readable (the SDK maps it to exceptions);
`message` says what was wrong and what to do. Unexpected errors are logged
with their traceback and answered with a 500 that reveals no internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vistas.images import ImageError
from vistas.index import CollectionUnavailableError, StorageFullError
from vistas.inference.runtimes import RemoteRuntimeError
from vistas.serving.batching import ClientGone, QueueFull, QueueTimeout, ShuttingDown
from vistas.serving.context import note_error

log = logging.getLogger("vistas.serving")

# Codes for Starlette's own HTTP errors (unknown route, wrong method, bad multipart, ...).
_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    502: "upstream_error",
    415: "unsupported_media_type",
    503: "unavailable",
}

# ImageError codes are 400 except the size guard: the request was well-formed but too big.
_IMAGE_STATUS = {"image_too_large": 413}


class APIError(StarletteHTTPException):
    """An error the client can act on. Subclasses Starlette's HTTPException so that
    FastAPI's body parsing and middlewares pass it through untouched."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    """The one way errors leave the server; the code is noted for the access log and metrics."""
    note_error(code)
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def image_error(err: ImageError, where: str) -> APIError:
    """ImageError from vistas.images -> APIError, naming which image of the request failed."""
    return APIError(_IMAGE_STATUS.get(err.code, 400), err.code, f"{where}: {err.message}")


def _loc(loc: tuple) -> str:
    """("body", "texts", 3) -> "texts[3]"."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_message(errors: list[dict]) -> str:
    """Pydantic errors -> one readable line per field, e.g. "labels: List should have at least 1 item"."""
    parts = []
    for e in errors[:10]:
        loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid":  # loc = ("body", character offset)
            reason = e.get("ctx", {}).get("error", "decode error")
            parts.append(f"body: not valid JSON ({reason} at character {loc[-1] if loc else '?'})")
            continue
        parts.append(f"{_loc(loc)}: {e.get('msg', 'invalid')}")
    if len(errors) > 10:
        parts.append(f"... and {len(errors) - 10} more")
    return "; ".join(parts)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc, APIError):
        return await _api_error(request, exc)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route {request.method} {request.url.path}; see /docs for the API."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API."
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):  # a syntax error, not a wrong field
        return error_response(400, "invalid_json", validation_message(errors))
    return error_response(422, "validation_error", validation_message(errors))


async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
    err = image_error(exc, "image")
    return error_response(err.status_code, err.code, err.message)


async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
    return error_response(429, "queue_full", str(exc), headers={"Retry-After": str(exc.retry_after)})


async def _queue_timeout(request: Request, exc: QueueTimeout) -> JSONResponse:
    return error_response(503, "queue_timeout", str(exc), headers={"Retry-After": "1"})


async def _shutting_down(request: Request, exc: ShuttingDown) -> JSONResponse:
    return error_response(503, "shutting_down", str(exc), headers={"Connection": "close"})


async def _client_gone(request: Request, exc: ClientGone) -> JSONResponse:
    # nginx's 499: nobody reads this answer, but the access log and metrics say what happened.
    return error_response(499, "client_closed_request", str(exc))
async def _remote_error(request: Request, exc: RemoteRuntimeError) -> JSONResponse:
    log.error("remote runtime failed in %s %s: %s", request.method, request.url.path, exc)
    return error_response(502, "upstream_error", f"The inference server behind vistas failed: {exc}")


async def _storage_full(request: Request, exc: StorageFullError) -> JSONResponse:
    # 507 Insufficient Storage (RFC 4918): the request was fine, the server has no room to keep it.
    log.error("%s %s refused, the disk is full: %s", request.method, request.url.path, exc)
    return error_response(
        507,
        "insufficient_storage",
        "The server's disk is full: this write was not stored, and nothing changed. Retry once space is freed "
        "(the server log names the file system).",
    )


async def _collection_unavailable(request: Request, exc: CollectionUnavailableError) -> JSONResponse:
    return error_response(503, "collection_unavailable", str(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "The server failed to handle this request; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(QueueTimeout, _queue_timeout)
    app.add_exception_handler(ShuttingDown, _shutting_down)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(RemoteRuntimeError, _remote_error)
    app.add_exception_handler(StorageFullError, _storage_full)
    app.add_exception_handler(CollectionUnavailableError, _collection_unavailable)
    app.add_exception_handler(Exception, _unexpected)

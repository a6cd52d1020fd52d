"""SDK exceptions, mapped from HTTP status codes.

    VistasError
    ├── APIError(status_code, code, message, request_id)   the server answered with an error
    │   ├── BadRequestError      400, 413, 415, 422
    │   ├── AuthenticationError  401, 403
    │   ├── NotFoundError        404
    │   ├── RateLimitError       429
    │   └── ServerError          5xx
    ├── APIConnectionError                                  no answer: refused, reset, DNS, ...
    │   └── APITimeoutError                                 no answer in time
    └── ResponseValidationError (also a ValueError)         a 2xx reply without a field the SDK needs

`code` and `message` come from the server's `{"error": {"code", "message"}}` body.
"""

from __future__ import annotations

import httpx


class VistasError(Exception):
    """Base of every error this SDK raises."""


class APIError(VistasError):
    def __init__(self, status_code: int, code: str, message: str, request_id: str | None = None):
        self.status_code, self.code, self.message, self.request_id = status_code, code, message, request_id
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{status_code} {code}: {message}{suffix}")


class BadRequestError(APIError):
    """The request was wrong (bad field, bad image, too large): fix it, retrying will not help."""


class AuthenticationError(APIError):
    """Missing or wrong API key (401), or the key may not do this (403)."""


class NotFoundError(APIError):
    """No such collection, item, model or route."""


class RateLimitError(APIError):
    """Too many requests; raised once the retries are used up."""


class ServerError(APIError):
    """The server failed (5xx); raised once the retries are used up."""


class APIConnectionError(VistasError):
    """The server could not be reached or did not answer."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the timeout."""


class ResponseValidationError(VistasError, ValueError):
    """A successful reply lacks a required field or has one of the wrong type (a server of another version?)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    413: BadRequestError,
    415: BadRequestError,
    422: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """An error response -> the matching APIError subclass, carrying the server's code and message."""
    status = response.status_code
    code, message = _error_fields(response)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(status, code, message, response.headers.get("x-request-id"))


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from `{"error": {...}}`, FastAPI's `{"detail": ...}`, or the raw text."""
    fallback_code = f"http_{response.status_code}"
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()[:500]
        return fallback_code, text or response.reason_phrase or "no message"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code", fallback_code)), str(err.get("message", ""))
    if isinstance(body, dict) and "detail" in body:
        return fallback_code, str(body["detail"])
    return fallback_code, str(body)[:500]

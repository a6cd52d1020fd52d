"""What one HTTP request carries through the layers below it: its id, its caller, its outcome.

The `vistas.serving.observe` middleware opens a RequestContext per request and puts it in a
context variable. Context variables follow the request into `run_in_threadpool` threads
(anyio copies the context), so the batcher, the error handlers and the access log all
read the same object without passing it down every call:

    ctx = current_request()      # None outside a request (batch jobs, tests of the runtime)
    ctx.model = "tiny-a"         # the access log and metrics report it
"""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass

# What we accept from a client's X-Request-ID: enough for UUIDs, trace ids and
# "svc-1234/abc" styles, nothing that could break a log line or a header.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/@+=-]{1,128}")


@dataclass
class RequestContext:
    id: str
    model: str | None = None  # the model a route picked
    caller: str | None = None  # API-key id ("key-1a2b3c4d") or client address: who is rate-limited
    error_code: str | None = None  # the `code` of the error response, if one was sent
    client_gone: bool = False  # set from the event loop when the client disconnects

    def gone(self) -> bool:
        """True once the client has disconnected: queued work for it can be dropped."""
        return self.client_gone


_CURRENT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("vistas_request", default=None)


def current_request() -> RequestContext | None:
    return _CURRENT.get()


def enter_request(request_id: str) -> tuple[RequestContext, contextvars.Token]:
    ctx = RequestContext(id=request_id)
    return ctx, _CURRENT.set(ctx)


def leave_request(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a new random one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def note_error(code: str) -> None:
    """Record the error code of the response being sent (for the access log and metrics)."""
    if (ctx := current_request()) is not None:
        ctx.error_code = code

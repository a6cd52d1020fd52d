"""Request body size limit as a pure ASGI middleware.

A declared Content-Length over the limit is refused before one body byte is
read. Chunked bodies (no Content-Length) and bodies that lie about their
length are counted as they stream in, and refused as soon as they pass the
limit, so the server never buffers more than `max_body_bytes`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistas.serving.errors import APIError, error_response


class BodyTooLarge(APIError):
    def __init__(self, limit: int, size: int | None = None):
        got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        super().__init__(
            413,
            "body_too_large",
            f"The request body is {got}, over the limit of {limit} bytes; "
            "send fewer or smaller images per request.",
        )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = content_length(scope)
        if declared == -1:
            await _reply(scope, receive, send, APIError(400, "bad_request", "Content-Length is not a valid integer."))
            return
        if declared is not None and declared > self.limit:
            await _reply(scope, receive, send, BodyTooLarge(self.limit, declared))
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the app's body read: FastAPI passes HTTPExceptions
                    # through, so the app's handler renders it; if not, we do below.
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if response_started:
                raise
            await _reply(scope, receive, send, exc)


def content_length(scope: Scope) -> int | None:
    """The declared body length, None when absent, -1 when malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return -1
            return n if n >= 0 else -1
    return None


async def _reply(scope: Scope, receive: Receive, send: Send, exc: APIError) -> None:
    # Connection: close, since the unread body would otherwise be parsed as the next request.
    response = error_response(exc.status_code, exc.code, exc.message, headers={"Connection": "close"})
    await response(scope, receive, send)

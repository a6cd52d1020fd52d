"""The outermost middleware: request ids, client-disconnect watching, metrics, one log line.

For every HTTP request it
* takes the client's `X-Request-ID` (if it is a sane token) or makes one, puts it in the
  request context (`vistas.serving.context`) and echoes it in the response headers;
* watches for the client going away once the body is read, so the batcher can drop its
  queued rows (`RequestContext.gone`);
* records the HTTP metrics and logs one structured line (logger "vistas.access"):
  {"request_id", "method", "route", "path", "status", "latency_ms", "model", "error", "caller"};
* answers an unexpected exception with the JSON 500 (logged with its traceback), so even
  that response carries the request id.

It is a pure ASGI middleware: Starlette's BaseHTTPMiddleware would run the app in another
task, where the context would not reach, and would buffer streaming bodies.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistas.serving.context import enter_request, leave_request, note_error, request_id_from
from vistas.serving.errors import error_response
from vistas.serving.metrics import Metrics

access_log = logging.getLogger("vistas.access")
log = logging.getLogger("vistas.serving")

REQUEST_ID_HEADER = "x-request-id"


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, REQUEST_ID_HEADER.encode()))
        ctx, token = enter_request(request_id)
        watch = _DisconnectWatch(receive, ctx)
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, watch.receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a JSON 500, logged
            log.exception("unhandled error in %s %s", scope["method"], scope["path"], exc_info=exc)
            if status:  # the response had started: nothing more can be sent
                status = 500
                note_error("internal_error")
            else:
                response = error_response(
                    500, "internal_error", f"The server failed to handle this request; it has been logged under "
                    f"request id {request_id}."
                )
                await response(scope, watch.receive, send_with_id)
        finally:
            watch.stop()
            self.metrics.in_progress.dec()
            seconds = time.perf_counter() - started
            route = _route(scope)
            self.metrics.request_done(scope["method"], route, status, seconds, ctx.error_code)
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "latency_ms": round(seconds * 1000, 2),
                        "model": ctx.model,
                        "error": ctx.error_code,
                        "caller": ctx.caller,
                    }
                },
            )
            leave_request(token)


class _DisconnectWatch:
    """Wraps `receive`: once the app has the whole body, a task waits for `http.disconnect`.

    Starlette's StreamingResponse listens the same way; the app's own later `receive`
    calls are answered from that task so that no message is lost between the two.
    """

    def __init__(self, receive: Receive, ctx):
        self._receive = receive
        self._ctx = ctx
        self._task: asyncio.Task | None = None

    async def receive(self) -> Message:
        if self._task is not None:
            return await asyncio.shield(self._task)
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._ctx.client_gone = True
        elif message["type"] == "http.request" and not message.get("more_body", False):
            self._task = asyncio.create_task(self._listen())
        return message

    async def _listen(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._ctx.client_gone = True
        return message

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _route(scope: Scope) -> str:
    """The route template of the request; paths no route matches share one label.

    A request answered before routing (401, 429, 413 from a middleware) has no route in
    its scope yet, so it is matched here against the app's routes.
    """
    route = scope.get("route")
    if route is None and (app := scope.get("app")) is not None:
        route = next((r for r in _leaf_routes(app.routes) if r.matches(scope)[0] != Match.NONE), None)
    return getattr(route, "path", None) or "unmatched"


def _leaf_routes(routes):
    """Routes with a path, looking inside included routers (FastAPI wraps each in one)."""
    for r in routes:
        if (included := getattr(r, "original_router", None)) is not None:
            yield from _leaf_routes(included.routes)
        elif hasattr(r, "path"):
            yield r

"""Admission control before any work: a per-caller request rate and a cap on requests in progress.

* Rate: a token bucket per caller (the API-key id when keys are configured, else the
  client address): `rate_limit_per_s` tokens per second, at most `rate_limit_burst`
  saved up. A request takes one token; with none left it gets 429 `rate_limited` and
  `Retry-After` = the seconds until the next token.
* Concurrency: beyond `max_concurrent_requests` requests in progress, 429 `server_busy`.
  Each request in progress holds at most one worker thread, and the app sizes its thread
  pool to this cap, so an admitted request never waits for a thread.
* Slow bodies: a request counts against that cap only once its whole body is in (at most
  `max_body_bytes`: BodySizeLimit wraps this middleware), else clients that send headers and
  then trickle the body would hold every slot while the server does nothing (slowloris). The
  body must arrive within `body_timeout_s` of the headers; else 408 `request_timeout`, and
  the connection is closed since the rest of the body may still come.

Public paths (probes, /metrics) are never limited.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vistas.serving.auth import is_public
from vistas.serving.context import current_request
from vistas.serving.errors import error_response
from vistas.serving.limits import content_length

# Bounds the memory of the buckets when callers are client addresses (anyone can be one);
# the least recently seen caller is forgotten first, i.e. gets a full bucket again.
MAX_CALLERS = 10_000


class TokenBuckets:
    """Token buckets per caller, refilled continuously. Thread-safe."""

    def __init__(self, rate_per_s: float, burst: int | None = None, clock=time.monotonic):
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(1, math.ceil(2 * rate_per_s))
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, time)
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there will be."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[caller] = (tokens, now)
            if len(self._buckets) > MAX_CALLERS:
                self._buckets.popitem(last=False)
        return wait


class Admission:
    """Pure ASGI middleware; runs after authentication, so the caller is known."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        public_paths: list[str],
        max_concurrent: int,
        rate_per_s: float | None = None,
        burst: int | None = None,
        body_timeout_s: float = 60.0,
    ):
        self.app = app
        self.public = tuple(public_paths)
        self.max_concurrent = max_concurrent
        self.body_timeout_s = body_timeout_s
        self.buckets = TokenBuckets(rate_per_s, burst) if rate_per_s else None
        self.in_progress = 0  # touched only from the event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"], self.public):
            await self.app(scope, receive, send)
            return
        if self.buckets is not None:
            wait = self.buckets.take(_caller(scope))
            if wait > 0:
                seconds = math.ceil(wait)
                response = error_response(
                    429,
                    "rate_limited",
                    f"Over this server's rate limit of {self.buckets.rate:g} requests/s (burst "
                    f"{self.buckets.burst}); retry in {seconds} s.",
                    headers={"Retry-After": str(seconds)},
                )
                await response(scope, receive, send)
                return
        reader = _BodyReader(receive)
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await reader.read()
        except TimeoutError:
            declared = content_length(scope)
            of = f" of {declared}" if declared is not None else ""
            response = error_response(
                408,
                "request_timeout",
                f"The request body did not arrive within {self.body_timeout_s:g} s (body_timeout_s): "
                f"{reader.size}{of} bytes came. Send the body right after the headers, or ask the operator "
                "for a longer body_timeout_s.",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if body is None:  # the client left before sending its body: nobody to answer
            return
        if self.in_progress >= self.max_concurrent:
            response = error_response(
                429,
                "server_busy",
                f"The server has {self.in_progress} requests in progress, its limit "
                f"(max_concurrent_requests); retry in a second.",
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        replay = _replay(body, receive)
        del body  # the app then holds the only reference (a multipart parser spools it to disk and drops it)
        self.in_progress += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.in_progress -= 1


class _BodyReader:
    def __init__(self, receive: Receive):
        self.receive = receive
        self.size = 0  # bytes so far, for the 408's message

    async def read(self) -> bytes | None:
        """The whole request body, or None when the client disconnects first."""
        chunks = []
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            self.size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then passes through (disconnects)."""
    held = [body]  # handed over, not kept: the request may run long after its body is parsed

    async def replay() -> Message:
        if held:
            return {"type": "http.request", "body": held.pop(), "more_body": False}
        return await receive()

    return replay


def _caller(scope: Scope) -> str:
    ctx = current_request()
    if ctx is not None and ctx.caller:
        return ctx.caller
    client = scope.get("client")
    caller = f"ip-{client[0]}" if client else "ip-unknown"
    if ctx is not None:
        ctx.caller = caller
    return caller

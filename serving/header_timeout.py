"""A deadline for request headers, which uvicorn lacks (slowloris).

uvicorn 0.54 times out only idle keep-alive connections (`timeout_keep_alive`, armed after a
response): a fresh connection that sends nothing, or half a request line and a header now
and then, is kept open forever, each holding a socket and a file descriptor. This protocol
is uvicorn's h11 one plus a timer: the headers of a request must be complete within
`header_timeout_s` of the connection opening, or of the first byte of the next request on a
kept-alive connection (nginx's client_header_timeout, Go's ReadHeaderTimeout). Past it, a
connection that sent part of a request gets 408 `request_timeout`; one that sent nothing is
closed without a word, as there is no request to answer.

The body has its own deadline in the app (vistas.serving.admission, `body_timeout_s`).
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`; uvicorn builds one per connection."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": header_timeout_s})


class HeaderTimeoutH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._partial = False  # some bytes of the awaited request have come

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self.conn.their_state is h11.IDLE  # for the headers of a request
        if waiting:
            self._partial = True
            self._arm()  # the first byte of a kept-alive request starts its clock
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in (or the request failed)
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._on_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._partial = False

    def _on_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._partial:
            self.transport.write(_response_408(self.header_timeout_s))
        self.transport.close()


def _response_408(seconds: float) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "request_timeout",
                "message": f"The request headers did not arrive within {seconds:g} s (header_timeout_s); "
                "send the whole request line and headers at once.",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body

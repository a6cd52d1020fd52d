"""Slow clients against a real uvicorn server, over raw sockets: a body that trickles in takes
no concurrency slot and times out with 408; headers that never finish are cut off; the server
keeps serving everyone else throughout (issue 12, "slow bodies take every slot")."""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack, contextmanager

import httpx

from support.live_server import running_server
from support.poll import wait_for
from support.prom import scrape, value

# Headers of a 1,000-byte JSON body of which a slow client sends only the first 3 bytes.
SLOW_HEAD = b"POST /v1/embed HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"


@contextmanager
def serve(bundles, **settings):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    with running_server(create_app(Settings(bundles=[str(bundles[0])], threads=1, **settings))) as live:
        yield live


def connect(url: str, timeout: float = 30) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def json_of(raw: bytes) -> dict:
    return json.loads(raw.partition(b"\r\n\r\n")[2])


def in_progress(url: str) -> float:
    return value(scrape(url), "vistas_http_requests_in_progress")


def test_slow_bodies_take_no_concurrency_slot(bundles):
    """Before: the trickling bodies held all 4 slots and the normal request got 429 server_busy."""
    slots = 4
    with serve(bundles, max_concurrent_requests=slots, body_timeout_s=120) as live, ExitStack() as stack:
        slow = [stack.enter_context(connect(live.url)) for _ in range(2 * slots)]
        for sock in slow:
            sock.sendall(SLOW_HEAD + b'{"t')
        # Enough slow requests have reached the app to fill every slot (the scrape is one more).
        wait_for(lambda: in_progress(live.url) >= slots + 1, "the slow requests to be in progress")
        ok = httpx.post(f"{live.url}/v1/embed", json={"texts": ["red"]}, timeout=30)
        assert ok.status_code == 200, ok.text
        # Every slow client is still waited for, none was answered (nor refused).
        wait_for(lambda: in_progress(live.url) >= len(slow) + 1, "all the slow requests to be in progress")


def test_slow_body_answers_408_and_the_server_keeps_serving(bundles):
    """Before: no answer ever came (the read below timed out after 20 s)."""
    with serve(bundles, body_timeout_s=2.0) as live:
        with connect(live.url, timeout=20) as sock:
            started = time.monotonic()
            sock.sendall(SLOW_HEAD + b'{"t')
            raw = read_until_closed(sock)  # the server closes after its 408
            waited = time.monotonic() - started
        assert raw.startswith(b"HTTP/1.1 408 "), raw[:200]
        error = json_of(raw)["error"]
        assert error["code"] == "request_timeout"
        assert "body_timeout_s" in error["message"] and "3 of 1000 bytes" in error["message"]
        assert waited >= 2.0
        ok = httpx.post(f"{live.url}/v1/embed", json={"texts": ["red"]}, timeout=30)
        assert ok.status_code == 200, ok.text
        m = scrape(live.url)
        assert value(m, "vistas_http_errors_total", route="/v1/embed", status=408, code="request_timeout") == 1


def test_body_that_arrives_in_time_is_served(bundles):
    """Two parts a moment apart, well within body_timeout_s: the request is answered as usual."""
    body = json.dumps({"texts": ["red"]}).encode()
    head = (b"POST /v1/embed HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))  # fmt: skip
    with serve(bundles, max_concurrent_requests=1, body_timeout_s=60) as live, connect(live.url) as sock:
        sock.sendall(head + body[:5])
        wait_for(lambda: in_progress(live.url) >= 2, "the request to be in progress")
        sock.sendall(body[5:])
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert len(json_of(raw)["text_embeddings"]) == 1


def test_slow_headers_are_cut_off_and_the_server_keeps_serving(bundles):
    """Before: the server waited for the rest of the headers forever (the reads timed out after 20 s)."""
    with serve(bundles, header_timeout_s=2.0) as live:
        started = time.monotonic()  # before the connection: the server's clock starts when it is made
        with connect(live.url, timeout=20) as partial, connect(live.url, timeout=20) as silent:
            partial.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
            raw = read_until_closed(partial)
            assert raw.startswith(b"HTTP/1.1 408 "), raw[:200]
            assert json_of(raw)["error"]["code"] == "request_timeout"
            assert "header_timeout_s" in json_of(raw)["error"]["message"]
            assert time.monotonic() - started >= 2.0
            assert read_until_closed(silent) == b""  # a connection that never sent a byte is just closed
        # A keep-alive connection whose requests come whole is never cut off, however long it is open:
        # requests on one connection for longer than header_timeout_s.
        with httpx.Client(base_url=live.url, timeout=30) as client:
            opened, answered = time.monotonic(), 0
            while time.monotonic() - opened < 3.0 or answered < 3:
                assert client.post("/v1/embed", json={"texts": ["red"]}).status_code == 200
                answered += 1
        assert value(scrape(live.url), "vistas_http_requests_total", route="/v1/embed", status=200) == answered

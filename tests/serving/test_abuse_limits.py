"""Limits an attacker would probe first, against real uvicorn servers (issue 12, "rate limits"):
X-Forwarded-For is believed only from configured proxies, wrong API keys are throttled per
client address, and zero-shot classify is bounded in texts after template expansion."""

from __future__ import annotations

import base64
import socket
from contextlib import contextmanager

import httpx
import pydantic
import pytest

from support.live_server import running_server
from support.serve_process import start_serve
from support.tiny_bundle import COLOR_RGB, png

RED = base64.b64encode(png(COLOR_RGB["red"])).decode()


@contextmanager
def serve(bundles, **settings):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    with running_server(create_app(Settings(bundles=[str(bundles[0])], threads=1, **settings))) as live:
        yield live


def from_address(address: str) -> httpx.Client:
    """A client whose connections come from `address` (every 127.x.y.z is this machine on Linux)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def labels(n: int) -> list[str]:
    return [f"label {i}" for i in range(n)]


def embed(url: str, client=httpx, **headers) -> httpx.Response:
    return client.post(f"{url}/v1/embed", json={"texts": ["red"]}, headers=headers)


# ---- X-Forwarded-For ---------------------------------------------------------------------------


def test_forwarded_for_from_an_unconfigured_peer_is_ignored(bundles):
    """Before: uvicorn believed X-Forwarded-For from 127.0.0.1, so each made-up address got a
    fresh bucket and the second request was 200."""
    with serve(bundles, rate_limit_per_s=0.05, rate_limit_burst=1) as live:
        first = embed(live.url, **{"X-Forwarded-For": "203.0.113.1"})
        second = embed(live.url, **{"X-Forwarded-For": "203.0.113.2"})
    assert first.status_code == 200, first.text
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"


def test_forwarded_for_from_a_trusted_proxy_names_the_client(bundles):
    with serve(bundles, trusted_proxies=["127.0.0.0/8"], rate_limit_per_s=0.05, rate_limit_burst=1) as live:
        one = embed(live.url, **{"X-Forwarded-For": "203.0.113.1"})
        two = embed(live.url, **{"X-Forwarded-For": "203.0.113.2"})  # another client behind the proxy
        # The proxy appends the address it saw; what the client wrote before it is not believed.
        spoofed = embed(live.url, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.1"})
    assert one.status_code == 200 and two.status_code == 200, (one.text, two.text)
    assert spoofed.status_code == 429 and spoofed.json()["error"]["code"] == "rate_limited"


def test_vistas_serve_ignores_forwarded_allow_ips_and_times_out_headers(bundles, tmp_path):
    """The CLI path: uvicorn would believe X-Forwarded-For from $FORWARDED_ALLOW_IPS ("*": anyone).
    Before: the second request, from a made-up address, was 200."""
    env = {"VISTAS_THREADS": "1", "VISTAS_RATE_LIMIT_PER_S": "0.05", "VISTAS_RATE_LIMIT_BURST": "1",
           "VISTAS_HEADER_TIMEOUT_S": "2", "FORWARDED_ALLOW_IPS": "*"}  # fmt: skip
    proc, url = start_serve(bundles[0], env, tmp_path / "server.log")
    try:
        first = embed(url, **{"X-Forwarded-For": "203.0.113.1"})
        second = embed(url, **{"X-Forwarded-For": "203.0.113.2"})
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # and never the blank line
            slow_headers = sock.recv(65536)  # the protocol's 408 (header_timeout_s) comes in one write
    finally:
        proc.kill()
        proc.wait()
    assert first.status_code == 200, first.text
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    assert slow_headers.startswith(b"HTTP/1.1 408 "), slow_headers


def test_trusted_proxies_setting(monkeypatch):
    from vistas.serving.settings import Settings

    monkeypatch.setenv("VISTAS_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "127.0.0.1", "::1"]
    monkeypatch.delenv("VISTAS_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == []  # nobody's X-Forwarded-For is believed by default
    for bad in ("proxy.internal", "*", "10.0.0.0/33"):
        with pytest.raises(pydantic.ValidationError) as err:
            Settings(trusted_proxies=[bad])
        assert repr(bad) in str(err.value) and "CIDR" in str(err.value)


# ---- failed authentication -----------------------------------------------------------------------


def test_wrong_keys_are_throttled_per_client_address(bundles):
    """Before: every wrong guess was answered 401, without end."""
    with serve(bundles, api_keys=["the-right-key"], auth_failure_limit=3, auth_failure_window_s=60) as live:
        with from_address("127.0.0.1") as guesser, from_address("127.0.0.2") as other:
            guesses = [embed(live.url, guesser, Authorization=f"Bearer guess-{i}") for i in range(3)]
            assert [r.status_code for r in guesses] == [401] * 3
            assert all(r.json()["error"]["code"] == "invalid_api_key" for r in guesses)
            blocked = embed(live.url, guesser, Authorization="Bearer guess-3")
            # Even the right key is refused now, or the answer would tell a right guess from a wrong one.
            right_but_blocked = embed(live.url, guesser, Authorization="Bearer the-right-key")
            probe = guesser.get(f"{live.url}/health")
            # Another address is not affected, and a missing key is not a guess.
            elsewhere = embed(live.url, other, Authorization="Bearer the-right-key")
            no_key = [embed(live.url, other).status_code for _ in range(4)]
    for r in (blocked, right_but_blocked):
        assert r.status_code == 429, r.text
        error = r.json()["error"]
        assert error["code"] == "too_many_auth_failures"
        assert "3 requests with a wrong API key" in error["message"] and "auth_failure_limit" in error["message"]
        assert 1 <= int(r.headers["retry-after"]) <= 60
    assert probe.status_code == 200  # public paths need no key, so they are never throttled
    assert elsewhere.status_code == 200, elsewhere.text
    assert no_key == [401] * 4


def test_failure_window_forgets_old_failures():
    from vistas.serving.auth_throttle import FailedAuth

    now = [0.0]
    failed = FailedAuth(limit=2, window_s=10, clock=lambda: now[0])
    assert failed.blocked_for("a") == 0
    failed.record("a")
    now[0] = 4.0
    failed.record("a")
    assert failed.blocked_for("a") == pytest.approx(6.0)  # until the first failure is 10 s old
    assert failed.blocked_for("b") == 0  # per address
    now[0] = 10.5
    assert failed.blocked_for("a") == 0  # one failure left in the window
    failed.record("a")
    assert failed.blocked_for("a") == pytest.approx(3.5)


# ---- classify: labels x templates --------------------------------------------------------------


def test_classify_bounds_texts_after_template_expansion_by_default(bundles):
    """1,000 labels x 100 templates is within max_labels and max_templates but 100,000 texts.
    Before: all 100,000 went through the text tower and the answer was 200."""
    templates = [f"a photo {j} of a {{}}." for j in range(100)]
    with serve(bundles) as live:
        r = httpx.post(f"{live.url}/v1/classify", json={"image": RED, "labels": labels(1000), "templates": templates},
                       timeout=600)  # fmt: skip
        assert httpx.post(f"{live.url}/v1/classify", json={"image": RED, "labels": ["red", "blue"]}).status_code == 200
    assert r.status_code == 400, r.text[:300]
    error = r.json()["error"]
    assert error["code"] == "too_many_texts"
    for part in ("1000 labels", "100 templates", "100000 texts", "2000", "max_classify_texts"):
        assert part in error["message"], error["message"]


def test_classify_expansion_limit_counts_default_templates_and_multipart(bundles):
    with serve(bundles, max_labels=100, max_templates=10, max_classify_texts=100) as live:
        url = f"{live.url}/v1/classify"
        templates = [f"{{}} {j}" for j in range(10)]
        fits = httpx.post(url, json={"image": RED, "labels": labels(10), "templates": templates})
        over = httpx.post(url, json={"image": RED, "labels": labels(11), "templates": templates})
        # No templates: each label is phrased with the default ones (2), so 60 labels are 120 texts.
        defaults = httpx.post(url, json={"image": RED, "labels": labels(60)})
        files = {"image": ("red.png", png(COLOR_RGB["red"]), "image/png")}
        multipart = httpx.post(url, files=files, data={"labels": labels(60)})
    assert fits.status_code == 200, fits.text
    assert over.status_code == 400 and "11 labels x 10 templates = 110 texts" in over.json()["error"]["message"]
    for r in (defaults, multipart):
        assert r.status_code == 400, r.text
        assert "60 labels x 2 templates (the default ones) = 120 texts" in r.json()["error"]["message"]

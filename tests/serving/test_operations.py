"""Operations against real uvicorn servers: batching seen in /metrics, overload answers (429),
API keys (401), per-key rate limits, request ids, readiness, metrics by route and code."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from support.live_server import running_server
from support.poll import wait_for
from support.prom import scrape, value
from support.tiny_bundle import COLOR_RGB, DIM, build_bundle, png

RED = base64.b64encode(png(COLOR_RGB["red"])).decode()


@pytest.fixture(scope="module")
def heavy_bundle(tmp_path_factory):
    """~7 ms per image on one thread (tests/support/tiny_bundle.py `heavy`): queues fill up."""
    return build_bundle(tmp_path_factory.mktemp("heavy"), "heavy", heavy=(512, 16))


@contextmanager
def serve(bundles, **settings):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    with running_server(create_app(Settings(bundles=[str(b) for b in bundles], threads=1, **settings))) as live:
        yield live


def concurrently(n: int, fn) -> list:
    """fn(i) for i < n, all released at once."""
    start = threading.Barrier(n)

    def call(i):
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def wait_until_running(url: str, rows: int) -> None:
    """Until the heavy model's image tower is running a call of at least `rows` rows."""
    wait_for(lambda: value(scrape(url), "vistas_batch_rows_running", model="heavy", tower="image") >= rows,
             what=f"a {rows}-row image batch running", every=0.01)


# ---- batching -------------------------------------------------------------------------------


def test_concurrent_requests_are_batched_per_model(bundles):
    with serve(bundles, batch_max_delay_ms=100, batch_max_size=16) as live:
        colors = list(COLOR_RGB)

        def embed(i):
            model = ("tiny-a", "tiny-b")[i % 2]
            body = {"model": model, "images": [base64.b64encode(png(COLOR_RGB[colors[i % 3]])).decode()]}
            r = httpx.post(f"{live.url}/v1/embed", json=body, timeout=30)
            assert r.status_code == 200, r.text
            return model, colors[i % 3], r.json()["image_embeddings"][0]

        results = concurrently(12, embed)
        m = scrape(live.url)
        models = httpx.get(f"{live.url}/v1/models").json()["models"]
        # Sequential requests answer the same vectors as the batched ones.
        for model, color, vec in results[:4]:
            image = base64.b64encode(png(COLOR_RGB[color])).decode()
            alone = httpx.post(f"{live.url}/v1/embed", json={"model": model, "images": [image]})
            alone = alone.json()["image_embeddings"][0]
            np.testing.assert_allclose(vec, alone, atol=1e-6)
    assert [x["name"] for x in models] == ["tiny-a", "tiny-b"]
    for model in ("tiny-a", "tiny-b"):  # each model has its own queue: 6 requests each
        requests = value(m, "vistas_batch_requests_sum", model=model, tower="image")
        calls = value(m, "vistas_batch_requests_count", model=model, tower="image")
        assert requests == 6 and calls < 6, (model, requests, calls)
        assert value(m, "vistas_batch_size_rows_sum", model=model, tower="image") == 6
        assert value(m, "vistas_model_seconds_count", model=model, tower="image") == calls
        assert value(m, "vistas_queue_wait_seconds_count", model=model, tower="image") == 6
    assert value(m, "vistas_queue_depth", model="tiny-a", tower="image") == 0


def test_over_full_queue_answers_429_with_retry_after(heavy_bundle):
    with serve([heavy_bundle], batch_queue_size=1, batch_max_size=16) as live:

        def embed(i):
            return httpx.post(f"{live.url}/v1/embed", json={"images": [RED] * 16}, timeout=60)  # ~0.1 s a call

        answers = concurrently(8, embed)
        m = scrape(live.url)
        after = httpx.post(f"{live.url}/v1/embed", json={"images": [RED]})
    refused = [r for r in answers if r.status_code == 429]
    assert refused and all(r.status_code in (200, 429) for r in answers), [r.status_code for r in answers]
    assert len(answers) - len(refused) >= 2  # one ran, one waited in the queue of 1
    for r in refused:
        assert r.json()["error"]["code"] == "queue_full" and int(r.headers["retry-after"]) >= 1
    assert value(m, "vistas_http_errors_total", route="/v1/embed", status=429, code="queue_full") == len(refused)
    assert after.status_code == 200  # and the server goes on serving


def test_queue_timeout_answers_503(heavy_bundle):
    with serve([heavy_bundle], batch_max_size=64, batch_timeout_s=0.05) as live:
        with ThreadPoolExecutor(1) as pool:
            long = pool.submit(httpx.post, f"{live.url}/v1/embed", json={"images": [RED] * 64}, timeout=60)
            wait_until_running(live.url, 64)
            late = httpx.post(f"{live.url}/v1/embed", json={"images": [RED]}, timeout=60)
            assert long.result().status_code == 200
    assert late.status_code == 503 and late.json()["error"]["code"] == "queue_timeout"
    assert "batch_timeout_s" in late.json()["error"]["message"] and late.headers["retry-after"] == "1"


def test_rate_limit_per_address_without_keys(bundles):
    with serve(bundles[:1], rate_limit_per_s=0.2, rate_limit_burst=1) as live:
        first = httpx.post(f"{live.url}/v1/embed", json={"texts": ["red"]})
        second = httpx.post(f"{live.url}/v1/embed", json={"texts": ["red"]})
        assert httpx.get(f"{live.url}/ready").status_code == 200
    assert first.status_code == 200 and second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited" and int(second.headers["retry-after"]) in (4, 5)


def test_concurrency_cap_answers_429_server_busy(heavy_bundle):
    with serve([heavy_bundle], max_concurrent_requests=1) as live:
        answers = concurrently(4, lambda i: httpx.post(f"{live.url}/v1/embed", json={"images": [RED] * 32}, timeout=60))
        assert httpx.get(f"{live.url}/health").status_code == 200  # probes are never refused
    codes = sorted(r.status_code for r in answers)
    assert codes[0] == 200 and codes[-1] == 429, codes
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.json()["error"]["code"] == "server_busy" and busy.headers["retry-after"] == "1"


def test_departed_client_takes_no_batch_slot(heavy_bundle):
    with serve([heavy_bundle], batch_max_size=64) as live:
        with ThreadPoolExecutor(2) as pool:
            long = pool.submit(httpx.post, f"{live.url}/v1/embed", json={"images": [RED] * 64}, timeout=60)
            wait_until_running(live.url, 64)
            # A raw socket, so the client leaves exactly when its request is queued behind the long one.
            body = json.dumps({"images": [RED] * 3}).encode()
            host, port = live.url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                for _ in range(1000):
                    if value(scrape(live.url), "vistas_queue_depth", model="heavy", tower="image") >= 1:
                        break
                    threading.Event().wait(0.005)
                else:
                    pytest.fail("the short request never queued behind the long one")
            assert long.result().status_code == 200
        m = scrape(live.url)
        for _ in range(100):  # the dropped request is answered (to nobody) once the long batch is done
            if value(m, "vistas_batch_dropped_total", model="heavy", tower="image") >= 1:
                break
            threading.Event().wait(0.05)
            m = scrape(live.url)
    assert value(m, "vistas_batch_dropped_total", model="heavy", tower="image") == 1
    assert value(m, "vistas_batch_size_rows_sum", model="heavy", tower="image") == 64  # its 3 rows never ran
    assert value(m, "vistas_http_requests_total", route="/v1/embed", status=499) == 1


# ---- auth and rate limits --------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(bundles, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text("# one key per line\nfile-key-2\n\n")
    with serve(bundles[:1], api_keys=["env-key-1"], api_keys_file=str(keys_file), rate_limit_per_s=0.5,
               rate_limit_burst=3) as live:  # fmt: skip
        yield live


def test_api_keys(keyed):
    url = f"{keyed.url}/v1/embed"
    missing = httpx.post(url, json={"texts": ["red"]})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(url, json={"texts": ["red"]}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    basic = httpx.post(url, json={"texts": ["red"]}, headers={"Authorization": "Basic ZW52LWtleS0xOg=="})
    assert basic.status_code == 401
    for key in ("env-key-1", "file-key-2"):  # from settings and from the file
        ok = httpx.post(url, json={"texts": ["red"]}, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200, ok.text
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):  # public by default
        assert httpx.get(f"{keyed.url}{path}").status_code == 200, path
    assert httpx.get(f"{keyed.url}/v1/models").status_code == 401


def test_sdk_sends_the_key(keyed):
    from vistas_client import AuthenticationError, Client

    with Client(keyed.url, api_key="file-key-2", max_retries=0) as c:
        assert len(c.embed_texts(["red"]).text_embeddings[0]) == DIM
    with Client(keyed.url, max_retries=0) as c, pytest.raises(AuthenticationError) as err:
        c.embed_texts(["red"])
    assert err.value.code == "missing_api_key" and err.value.request_id


def test_rate_limit_is_per_key(keyed):
    def embed(key):
        return httpx.post(f"{keyed.url}/v1/embed", json={"texts": ["red"]}, headers={"Authorization": f"Bearer {key}"})

    # 0.5 requests/s with a burst of 3 (one token may have been spent by the tests above).
    statuses = [embed("env-key-1").status_code for _ in range(4)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    limited = embed("env-key-1")
    assert limited.json()["error"]["code"] == "rate_limited" and 1 <= int(limited.headers["retry-after"]) <= 2
    assert "0.5 requests/s" in limited.json()["error"]["message"]
    assert embed("file-key-2").status_code == 200  # another key has its own bucket
    assert httpx.get(f"{keyed.url}/metrics").status_code == 200  # public paths are never limited


def test_token_bucket_refills():
    from vistas.serving.admission import TokenBuckets

    now = [0.0]
    buckets = TokenBuckets(2.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # 1 token at 2/s
    assert buckets.take("b") == 0.0
    now[0] = 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0


# ---- request ids, readiness, metrics --------------------------------------------------------


def test_request_ids(client):
    given = client.post("/v1/embed", json={"texts": ["red"]}, headers={"X-Request-ID": "trace-42/a.b"})
    assert given.headers["x-request-id"] == "trace-42/a.b"
    made = client.get("/v1/models")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    unsafe = client.get("/health", headers={"X-Request-ID": "no spaces\tor tabs"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])  # replaced, not echoed
    error = client.post("/v1/embed", json={"model": "nope", "texts": ["a"]}, headers={"X-Request-ID": "e-1"})
    assert error.status_code == 404 and error.headers["x-request-id"] == "e-1"
    assert client.get("/nowhere").headers["x-request-id"]


def test_ready_turns_503_while_draining(bundles):
    from vistas.serving.lifecycle import begin_drain

    with serve(bundles[:1]) as live:
        assert httpx.get(f"{live.url}/ready").json() == {"status": "ready"}
        assert value(scrape(live.url), "vistas_ready") == 1
        begin_drain(live.app)
        r = httpx.get(f"{live.url}/ready")
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
        assert httpx.get(f"{live.url}/health").status_code == 200
        assert httpx.post(f"{live.url}/v1/embed", json={"texts": ["red"]}).status_code == 200  # still serving
        assert value(scrape(live.url), "vistas_ready") == 0


def test_background_loading_and_a_failed_load(tmp_path):
    """With load_in_background the server listens at once; a load that fails keeps /ready 503."""
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    app = create_app(Settings(bundles=[str(tmp_path / "missing")], load_in_background=True))
    with running_server(app, wait_ready=False) as live:
        r = httpx.get(f"{live.url}/ready")
        for _ in range(200):
            if r.json()["error"]["code"] != "loading":
                break
            threading.Event().wait(0.02)
            r = httpx.get(f"{live.url}/ready")
        assert r.status_code == 503 and r.json()["error"]["code"] == "load_failed"
        assert "not a vistas bundle" in r.json()["error"]["message"]
        assert httpx.get(f"{live.url}/health").status_code == 200
        embed = httpx.post(f"{live.url}/v1/embed", json={"texts": ["red"]})
        assert embed.status_code == 503 and embed.json()["error"]["code"] == "not_ready"


def test_metrics_by_route_status_and_code(server, client):
    client.post("/v1/embed", json={"texts": ["red", "blue"]})
    client.get("/v1/collections/never-made")
    client.post("/v1/embed", json={"texts": ["x" * 500]})
    m = scrape(server.url)
    assert value(m, "vistas_http_requests_total", method="POST", route="/v1/embed", status=200) >= 1
    # The route template, not the path: ids and names do not make new series.
    assert value(m, "vistas_http_requests_total", route="/v1/collections/{name}", status=404) >= 1
    assert not any("never-made" in str(labels) for labels, _ in m["vistas_http_requests_total"])
    assert value(m, "vistas_http_errors_total", route="/v1/embed", status=422, code="text_too_long") >= 1
    assert value(m, "vistas_http_errors_total", route="/v1/collections/{name}", code="collection_not_found") >= 1
    assert value(m, "vistas_http_request_duration_seconds_count", method="POST", route="/v1/embed") >= 2
    assert value(m, "vistas_model_seconds_count", model="tiny-a", tower="text") >= 1
    assert value(m, "vistas_http_requests_in_progress") == 1  # this scrape


def test_requests_refused_before_routing_keep_their_route_label(keyed):
    httpx.post(f"{keyed.url}/v1/embed", json={"texts": ["red"]})  # 401 from the auth middleware
    m = scrape(keyed.url)
    assert value(m, "vistas_http_errors_total", route="/v1/embed", status=401, code="missing_api_key") >= 1

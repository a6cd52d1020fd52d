"""Graceful shutdown of a real `vistas serve` process: SIGTERM while requests are in flight.

Every request the server accepted gets its complete 200 answer, /ready turns 503 during
the drain while the server still serves, the process exits 0, and its stderr holds one
JSON access-log line per request with the request id the client sent.
"""

from __future__ import annotations

import base64
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from support.prom import scrape, value
from support.serve_process import start_serve
from support.tiny_bundle import COLOR_RGB, DIM, build_bundle, png

RED = base64.b64encode(png(COLOR_RGB["red"])).decode()
N_REQUESTS, IMAGES = 10, 16  # ~0.2 s of model time each, one at a time: ~2 s of queued work


@pytest.fixture
def server_process(tmp_path):
    bundle = build_bundle(tmp_path / "heavy", "heavy", heavy=(512, 32))
    env = {
        "VISTAS_THREADS": "1",
        "VISTAS_BATCH_MAX_SIZE": str(IMAGES),  # one request per model call: the queue stays long
        # The /ready probe and the late request must land inside this window; on a loaded CI
        # machine the busy server can take over a second to answer them, so leave room.
        "VISTAS_SHUTDOWN_DELAY_S": "3.0",
        "VISTAS_LOG_FORMAT": "json",
    }
    log = tmp_path / "server.log"  # the test reads it once the server is gone
    proc, url = start_serve(bundle, env, log)
    try:
        yield proc, log, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_mid_load_loses_no_accepted_request(server_process):
    proc, log, url = server_process
    done_at: dict[int, float] = {}

    def embed(i: int) -> httpx.Response:
        r = httpx.post(f"{url}/v1/embed", json={"images": [RED] * IMAGES}, headers={"X-Request-ID": f"load-{i}"},
                       timeout=60)  # fmt: skip
        done_at[i] = time.monotonic()
        return r

    with ThreadPoolExecutor(N_REQUESTS) as pool:
        futures = [pool.submit(embed, i) for i in range(N_REQUESTS)]
        deadline = time.monotonic() + 30
        while value(scrape(url), "vistas_http_requests_in_progress") < N_REQUESTS + 1:  # the scrape is one more
            assert time.monotonic() < deadline, "the requests never were all in progress at once"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        ready = httpx.get(f"{url}/ready", timeout=5)  # within shutdown_delay_s: still listening
        late = httpx.post(f"{url}/v1/embed", json={"texts": ["red"]}, headers={"X-Request-ID": "late"}, timeout=60)
        answers = [f.result() for f in futures]
    proc.wait(60)
    stderr = log.read_text()

    assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
    assert late.status_code == 200  # accepted during the drain delay: served too
    for r in answers:
        assert r.status_code == 200, r.text
        emb = np.asarray(r.json()["image_embeddings"])
        assert emb.shape == (IMAGES, DIM) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert max(done_at.values()) > sigterm_at, "all requests finished before SIGTERM: nothing was drained"
    assert proc.returncode == 0, stderr[-3000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)

    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = {rec["request_id"]: rec for rec in lines if rec["logger"] == "vistas.access"}
    for i in range(N_REQUESTS):
        rec = access[f"load-{i}"]
        assert (rec["status"], rec["route"], rec["model"], rec["method"]) == (200, "/v1/embed", "heavy", "POST")
        assert rec["latency_ms"] > 0
    assert access["late"]["status"] == 200
    assert any("draining" in rec["message"] for rec in lines)
    assert len([ln for ln in stderr.splitlines() if ln.strip()]) == len(lines), "every log line is JSON"


def test_a_second_sigterm_skips_the_rest_of_the_drain_delay(tmp_path):
    bundle = build_bundle(tmp_path / "tiny", "tiny")
    proc, url = start_serve(bundle, {"VISTAS_THREADS": "1", "VISTAS_SHUTDOWN_DELAY_S": "120"}, tmp_path / "server.log")
    try:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/ready", timeout=5).status_code != 503:  # draining, still serving
            assert time.monotonic() < deadline, "/ready never turned 503 after SIGTERM"
            time.sleep(0.05)
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0  # well before the 120 s delay
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

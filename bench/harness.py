"""What every benchmark shares: timing, a `vistas serve` subprocess, HTTP load, test images.

The server runs as its own process (the CLI path users run), so the load generator's Python
never competes with the server's for one GIL; the bench process stays idle while it waits.

The load generator shares the machine's cores with the server, which real clients would not,
so it is kept lean, as wrk or hey would be: bodies are JSON-encoded before the clock starts
and sent with the standard library's http.client (~0.7 ms of CPU per request here, against
~2.5 ms for httpx with `json=`; with 8 client threads contending for their GIL, ~3x that).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median of each measurement over `rounds`, taken A, B, A, B...: on a shared machine, load
    that comes and goes then hits every side alike instead of whichever ran during it."""
    samples: dict[str, list[float]] = {k: [] for k in measures}
    for _ in range(rounds):
        for k, fn in measures.items():
            samples[k].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


def photos(n: int, fmt: str = "JPEG") -> list[bytes]:
    """n encoded real photos (scikit-image's sample images, native sizes 300-1000 px), cycled."""
    import numpy as np
    import skimage.data
    from PIL import Image

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat"]
    out = []
    for i in range(n):
        arr = getattr(skimage.data, names[i % len(names)])()
        img = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
        if i >= len(names):  # distinct bytes per request: no cache anywhere can shortcut a repeat
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if (i // len(names)) % 2 else img.rotate(i)
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=90)
        out.append(buf.getvalue())
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Client:
    """One keep-alive connection with TCP_NODELAY (headers and body leave at once) that POSTs
    JSON bodies already encoded: the cheapest client the standard library has."""

    def __init__(self, url: str, timeout: float = 600):
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, path: str, body: bytes) -> tuple[int, bytes]:
        """-> (status, response body), whatever the status."""
        self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, r.read()

    def post(self, path: str, body: bytes) -> bytes:
        """-> the response body; an error status raises with the server's JSON error."""
        status, data = self.send(path, body)
        if status != 200:
            raise RuntimeError(f"POST {path} answered {status}: {data[:500].decode(errors='replace')}")
        return data

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode(bodies: list[dict]) -> list[bytes]:
    return [json.dumps(b).encode() for b in bodies]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(bundle: str | Path, threads: int, env: dict[str, str] | None = None, timeout: float = 300) -> Iterator[str]:
    """`vistas serve BUNDLE` in a subprocess with `threads` onnxruntime threads -> its URL."""
    port = _free_port()
    full_env = {**os.environ, "VISTAS_THREADS": str(threads), "VISTAS_LOG_LEVEL": "warning", **(env or {})}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vistas.cli", "serve", str(bundle), "--port", str(port)],
            env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"`vistas serve {bundle}` exited with {proc.returncode}:\n{log.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"`vistas serve {bundle}` was not ready within {timeout:.0f} s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sequential_latencies(url: str, bodies: list[dict], path: str = "/v1/embed", warmup: int = 3) -> list[float]:
    """One request at a time on one keep-alive connection -> seconds per request."""
    out, raw = [], encode(bodies)
    with Client(url) as c:
        for body in raw[:warmup]:
            c.post(path, body)
        for body in raw:
            t0 = time.perf_counter()
            c.post(path, body)
            out.append(time.perf_counter() - t0)
    return out


def concurrent_throughput(url: str, bodies: list[dict], concurrency: int, path: str = "/v1/embed") -> float:
    """`concurrency` clients, each on its own connection, share `bodies` -> requests per second.

    Each client warms its connection first; the clock runs from the first timed request to the last answer.
    """
    raw = encode(bodies)
    lock, queue = threading.Lock(), list(reversed(raw))
    clients = [Client(url) for _ in range(concurrency)]
    for c in clients:
        c.post(path, raw[0])

    def worker(c: Client) -> None:
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            c.post(path, body)

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(worker, clients))
        return len(bodies) / (time.perf_counter() - t0)
    finally:
        for c in clients:
            c.close()


def open_loop(url: str, bodies: list[dict], rate: float, duration: float, seed: int = 0,
              path: str = "/v1/embed", max_outstanding: int = 512) -> list[tuple[float, int]]:
    """Poisson arrivals at `rate` per second for `duration` s, each request sent at its time
    whether or not earlier ones were answered (bodies cycled) -> (seconds, status) per request.

    Latency runs from the scheduled arrival, so a request the client could not send at once is
    charged its wait (no coordinated omission). Up to `max_outstanding` requests are in flight,
    each on a connection of its own, kept alive for the next; status 0: no answer (connection lost).
    """
    import numpy as np

    raw = encode(bodies)
    gaps = np.random.default_rng(seed).exponential(1 / rate, int(rate * duration * 1.5) + 16)
    arrivals = [float(t) for t in np.cumsum(gaps) if t < duration]
    local, clients = threading.local(), []

    def send(body: bytes, due: float) -> tuple[float, int]:
        for _ in range(2):  # a kept-alive connection the server closed while idle: reconnect once
            client = getattr(local, "client", None)
            try:
                if client is None:
                    client = local.client = Client(url)
                    clients.append(client)
                status, _ = client.send(path, body)
                return time.perf_counter() - due, status
            except (OSError, http.client.HTTPException):  # ConnectionError is an OSError
                if client is not None:
                    client.close()
                local.client = None
        return time.perf_counter() - due, 0

    try:
        with ThreadPoolExecutor(max_outstanding) as pool:
            futures = []
            t0 = time.perf_counter()
            for i, t in enumerate(arrivals):
                time.sleep(max(0.0, t0 + t - time.perf_counter()))
                futures.append(pool.submit(send, raw[i % len(raw)], t0 + t))
            return [f.result() for f in futures]
    finally:
        for c in clients:
            c.close()

"""The log never stalls the server: lines go through a bounded queue to a writer thread.

The fault is produced for real: stderr is a pipe nobody reads, which holds 64 KiB on Linux
and then blocks every write. With blocking writes (`log_queue_size = 0`) that freezes the
server's event loop; with the queue the server keeps answering and counts what it drops.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from support.prom import scrape, value
from support.serve_process import ROOT, start_serve
from support.tiny_bundle import build_bundle
from vistas.serving.logs import JsonFormatter, QueuedLineHandler


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _read_all(fd: int, out: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as f:
        out.append(f.read())


def test_logging_to_an_unread_pipe_never_blocks_and_counts_what_it_drops():
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    handler = QueuedLineHandler(stream, maxsize=50, close_timeout_s=30)
    handler.setFormatter(JsonFormatter())
    log = _logger(handler, "test.logs.unread")
    n = 5000  # ~100 bytes a line: ~500 KB, many times what the pipe and the queue hold

    def log_all():
        for i in range(n):
            log.info("line %d", i)

    t = threading.Thread(target=log_all)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "logging blocked on a pipe nobody reads"
    assert 0 < handler.dropped < n

    # Once someone reads, every line that was not dropped arrives, whole and in order.
    data: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(read_fd, data))
    reader.start()
    handler.close()
    stream.close()
    reader.join(timeout=30)
    lines = data[0].decode().splitlines()
    assert len(lines) + handler.dropped == n
    numbers = [int(json.loads(line)["message"].split()[1]) for line in lines]
    assert numbers == sorted(numbers) and numbers[0] == 0


def test_close_gives_up_on_a_stream_that_never_drains():
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    handler = QueuedLineHandler(stream, maxsize=10, close_timeout_s=0.5)
    log = _logger(handler, "test.logs.stalled")
    for _ in range(3000):
        log.info("x" * 100)
    closer = threading.Thread(target=handler.close)  # the writer is stuck in write()
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive(), "close() waited for a stream that never drains"
    os.close(read_fd)


def test_a_broken_stream_counts_lost_lines_instead_of_raising():
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    os.close(read_fd)  # the reader is gone: writes raise BrokenPipeError (SIGPIPE is ignored by Python)
    handler = QueuedLineHandler(stream, maxsize=100, close_timeout_s=10)
    log = _logger(handler, "test.logs.broken")
    for _ in range(20):
        log.info("lost")
    handler.close()
    assert handler.dropped == 20


def _start(bundle: Path, queue_size: int) -> tuple[subprocess.Popen, str]:
    env = {"VISTAS_THREADS": "1", "VISTAS_LOG_LEVEL": "info", "VISTAS_LOG_QUEUE_SIZE": str(queue_size),
           "VISTAS_SHUTDOWN_DELAY_S": "0"}
    return start_serve(bundle, env, log=None)  # stderr on a pipe never read: the fault


def _hammer(url: str, n: int) -> int:
    """n GET /health on one connection -> how many were answered before one timed out."""
    with httpx.Client(base_url=url, timeout=5) as client:
        for i in range(n):
            try:
                assert client.get("/health").status_code == 200
            except httpx.TimeoutException:
                return i
    return n


@pytest.fixture
def bundle(tmp_path):
    return build_bundle(tmp_path / "tiny", "tiny")


def test_server_with_an_unread_stderr_keeps_serving(bundle):
    # The fault is real: with blocking writes the server stops answering once the pipe is full.
    proc, url = _start(bundle, queue_size=0)
    try:
        answered = _hammer(url, 1000)
        assert answered < 1000, "a blocking log write on a full pipe should have stalled this server"
    finally:
        proc.kill()
        proc.wait()

    # With the queue (small here, so it overflows quickly), every request is answered.
    proc, url = _start(bundle, queue_size=20)
    try:
        assert _hammer(url, 1000) == 1000
        assert value(scrape(url), "vistas_log_records_dropped_total") > 0
        proc.send_signal(signal.SIGTERM)  # and it still shuts down: close() gives up on the pipe
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_SIGNAL_LOGGER = r"""
import logging, os, signal, sys, threading, time
from vistas.serving.logs import JsonFormatter, QueuedLineHandler

handler = QueuedLineHandler(open(os.devnull, "w"), maxsize=1000)
handler.setFormatter(JsonFormatter())
log = logging.getLogger("reentrant")
log.handlers[:] = [handler]
log.propagate = False
log.setLevel(logging.INFO)
signal.signal(signal.SIGUSR1, lambda *_: log.info("from the signal handler"))  # as uvicorn's SIGTERM

done = threading.Event()
def send():
    while not done.is_set():
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.0005)
threading.Thread(target=send, daemon=True).start()
for i in range(200_000):
    log.info("line %d", i)
done.set()
handler.close()
print("finished")
"""


def test_logging_from_a_signal_handler_mid_emit_does_not_deadlock():
    # uvicorn's SIGTERM handler logs (the drain message) from the main thread, between any two
    # bytecodes of whatever that thread was doing: often a log call of its own. A handler holding
    # a plain lock there (queue.Queue.put does) deadlocks the event loop for good.
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_LOGGER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "finished", proc.stderr[-2000:]

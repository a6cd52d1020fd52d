"""`vistas serve` as a user first meets it, in real subprocesses: its refusals and its console.

* a bundle path that is not a bundle: one line on stderr and exit 2, as `vistas eval` (it was a
  5.9 KB JSON traceback and exit 3);
* a port another process listens on: one line saying so, exit 2;
* the log: human-readable lines when stderr is a terminal (a pty here), JSON lines otherwise.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading

import pytest

from support.poll import wait_for
from support.serve_process import ROOT, free_port, start_serve


def serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vistas.cli", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("what", ["missing", "not_a_bundle", "file"])
def test_serve_refuses_a_path_that_is_not_a_bundle_in_one_line(tmp_path, what):
    path = tmp_path / "bundle"
    if what == "not_a_bundle":
        path.mkdir()
    elif what == "file":
        path.write_text("not a directory")
    res = serve(str(path), "--port", str(free_port()))
    line = one_line(res.stderr)
    assert res.returncode == 2, res.stderr
    assert line.startswith("vistas serve: error:") and str(path) in line and "vistas export" in line, line


def test_serve_refuses_a_busy_port_in_one_line(bundles):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = serve(str(bundles[0]), "--port", str(port))
    line = one_line(res.stderr)
    assert res.returncode == 2, res.stderr
    assert f"127.0.0.1:{port}" in line and "already in use" in line and "--port" in line, line


def test_console_log_is_human_readable_on_a_terminal(bundles, tmp_path):
    port = free_port()
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vistas.cli", "serve", str(bundles[0]), "--port", str(port), "--index",
         str(tmp_path / "index")],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    seen: list[str] = []

    def read_terminal():
        buffer = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the server closed its end
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            seen.extend(line.decode(errors="replace").rstrip("\r") for line in lines)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        import httpx

        wait_for(lambda: any("Uvicorn running" in line for line in seen), "the server to start", timeout=60, every=0.05)
        httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-request-id": "pty-check"}, timeout=10)
        access = wait_for(lambda: [line for line in seen if "GET /v1/models 200" in line], "the access line", every=0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        os.close(controller)
    for line in seen:
        if line.strip():
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
    # time, level, logger, message, then the request's fields
    assert " INFO " in access[0] and "vistas.access" in access[0] and "request_id=pty-check" in access[0], access
    assert "latency_ms=" in access[0], access


def test_log_is_json_lines_when_stderr_is_not_a_terminal(bundles, tmp_path):
    log = tmp_path / "serve.log"
    proc, url = start_serve(bundles[0], {"VISTAS_INDEX_DIR": str(tmp_path / "index")}, log)
    try:
        import httpx

        httpx.get(f"{url}/v1/models", timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert any(r.get("route") == "/v1/models" and r.get("status") == 200 for r in records)


def test_a_signal_during_a_request_does_not_tag_the_drain_log_with_that_request(bundles, tmp_path):
    """Python runs uvicorn's signal handler between two bytecodes of the main thread, the code of
    a request included; the drain it hands to the event loop must not run in that request's
    context, or its log line says it belongs to the request (seen on 1 of 3 SIGTERMs after a
    request). The handler is called here where Python would call it: inside a request's context."""
    import asyncio
    import logging

    from vistas.serving.app import create_app
    from vistas.serving.context import enter_request, leave_request
    from vistas.serving.logs import JsonFormatter
    from vistas.serving.server import DrainingServer, uvicorn_config
    from vistas.serving.settings import Settings

    app = create_app(Settings(bundles=[str(bundles[0])], index_dir=str(tmp_path / "index")))
    lines: list[dict] = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(JsonFormatter().format(record)))

    capture = Capture()
    logger = logging.getLogger("vistas.serving")
    logger.addHandler(capture)
    level, logger.level = logger.level, logging.INFO
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = DrainingServer(uvicorn_config(app), app)
        server._loop = loop  # what serve() sets once uvicorn's loop runs
        ctx, token = enter_request("a-request-in-flight")
        try:
            server.handle_exit(signal.SIGTERM, None)
        finally:
            leave_request(token)
        drain = wait_for(lambda: [r for r in lines if r["message"].startswith("draining")], "the drain log line")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        logger.removeHandler(capture)
        logger.level = level
    assert "request_id" not in drain[0], drain[0]

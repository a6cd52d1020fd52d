"""`vistas serve` as a real subprocess (the CLI path users run), ready to take requests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(bundle: Path, env: dict[str, str], log: Path | None, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """`vistas serve BUNDLE` with VISTAS_* `env` on a free port -> (process, url) once /ready is 200.

    log: the file the server logs into; None: a pipe nobody reads (it fills at 64 KiB, then
    every write to it blocks). The caller kills the process; one that exits or never gets
    ready is killed here, and the error holds the log's tail.
    """
    port = free_port()
    sink = log.open("wb") if log is not None else subprocess.PIPE
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vistas.cli", "serve", str(bundle), "--port", str(port)],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    finally:
        if log is not None:
            sink.close()  # the child has its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        problem = None
        if proc.poll() is not None:
            problem = f"exited with {proc.returncode} before it was ready"
        else:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                problem = f"was not ready within {timeout:.0f} s"
        if problem:
            proc.kill()
            proc.wait()
            tail = log.read_text()[-3000:] if log is not None else ""
            raise AssertionError(f"`vistas serve` {problem}\n{tail}")
        time.sleep(0.1)

"""Reading a child process's output while it runs.

A child whose stdout/stderr is a pipe nobody reads blocks in its next write once the pipe
buffer (64 KiB on Linux) is full. For a server that logs one line per request from its
event loop, that is a hang after a few hundred requests: every later request times out.
"""

from __future__ import annotations

import subprocess
import threading


class Drain:
    """Reads a Popen's text-mode stdout and stderr into strings from two threads."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._threads = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
            if stream is not None
        ]
        for t in self._threads:
            t.start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self._chunks[name].append(line)

    def text(self, name: str = "stderr") -> str:
        """What `name` has printed so far."""
        return "".join(self._chunks[name])

    def wait(self, timeout: float) -> tuple[str, str]:
        """Wait for the process to exit and its pipes to close -> (stdout, stderr)."""
        self.proc.wait(timeout)
        for t in self._threads:
            t.join(timeout)
        return self.text("stdout"), self.text("stderr")

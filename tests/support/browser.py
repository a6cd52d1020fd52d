"""Headless Chromium for page tests (Debian's `chromium`): one-shot runs (--dump-dom, --screenshot)
and a DevTools-protocol session over a pipe for tests that drive the page."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time

from support.components import missing

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1000,700", "--virtual-time-budget=20000",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing("chromium is not installed; `make test` installs it when run as root (apt-get install chromium)")
    return path


def run_chromium(args: list[str], tmp_path) -> str:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout



class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
    messages separated by NUL on fds 3 and 4), so no websocket library is needed."""

    def __init__(self, tmp_path):
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def child_fds():  # the protocol's fixed descriptors: commands on 3, replies on 4
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        cmd = [chromium(), *CHROMIUM_FLAGS[:-1], f"--user-data-dir={tmp_path / 'cdp-profile'}",
               "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(cmd, preexec_fn=child_fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"no DevTools answer to {method} in 60 s"
                self._buffer += os.read(self._read, 1 << 20)
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        os.close(self._write)
        os.close(self._read)

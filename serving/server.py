"""`vistas serve`: run the app under uvicorn; `running_server` for a server inside a process."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def serve(
    bundles: list[str],
    index_dir: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    **settings_overrides,
) -> None:
    """Serve `bundles` (the first is the default model) and the collections under `index_dir`.

    `settings_overrides` are `serving.settings.Settings` fields (max_body_bytes=..., threads=...);
    fields not given come from VISTAS_* environment variables, then the defaults.
    """
    import uvicorn

    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings(bundles=list(bundles), index_dir=index_dir, host=host, port=port, **settings_overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


@dataclass
class LiveServer:
    url: str
    app: object
    uvicorn: object = None  # the uvicorn.Server (its server_state lists open connections)


@contextmanager
def running_server(app, *, host: str = "127.0.0.1", timeout: float = 60) -> Iterator[LiveServer]:
    """A real uvicorn server for `app` on a free port, in a background thread (tests, benchmarks)."""
    import uvicorn

    # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it Nagle holds uvicorn's response body (a second small write) until the
    # client's delayed ACK, ~40 ms later: every request took 44 ms instead of ~1 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((host, 0))  # the OS picks a free port; uvicorn serves on this very socket
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start within {timeout:.0f} s")
        time.sleep(0.02)
    try:
        yield LiveServer(url=f"http://{host}:{port}", app=app, uvicorn=srv)
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        sock.close()

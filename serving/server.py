"""`vistas serve`: run the app under uvicorn; `running_server` for a server inside a process.

Graceful shutdown on SIGTERM (or Ctrl-C):
1. /ready turns 503 `draining` at once (vistas.serving.lifecycle.begin_drain);
2. for `shutdown_delay_s` the server keeps accepting and serving, so load balancers that
   poll /ready stop sending before the listening socket closes;
3. uvicorn stops accepting, finishes every request it has accepted (those waiting in a
   batching queue included), for at most `shutdown_timeout_s`;
4. the lifespan drains the batching queues, releases the runtimes, snapshots the indexes;
   the process exits 0. A second signal during 2 skips the rest of the delay.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from vistas.serving.lifecycle import begin_drain

log = logging.getLogger("vistas.serving")


def serve(
    bundles: list[str],
    index_dir: str | None = None,
    host: str | None = None,
    port: int | None = None,
    settings_file: str | None = None,
    **settings_overrides,
) -> None:
    """Serve `bundles` (the first is the default model) and the collections under `index_dir`.

    `settings_overrides` are `vistas.serving.settings.Settings` fields (max_body_bytes=..., threads=...);
    fields not given come from VISTAS_* environment variables, then the settings file
    (`settings_file` or $VISTAS_SETTINGS_FILE), then the defaults.
    """
    from vistas.serving.logs import configure_logging
    from vistas.serving.preflight import check_bundles, listen_socket
    from vistas.serving.settings import Settings

    given = {"index_dir": index_dir, "host": host, "port": port}
    overrides = {"bundles": list(bundles), **{k: v for k, v in given.items() if v is not None}, **settings_overrides}
    settings = Settings.from_file(settings_file, **overrides)
    # Mistakes fixed from one sentence (vistas.serving.preflight.CannotServe) fail here, before any log line.
    check_bundles(settings.bundles)
    sock = listen_socket(settings.host, settings.port)
    handler = configure_logging(settings.log_level, settings.log_format, settings.log_queue_size)
    try:
        _run(settings, sock)
    finally:
        sock.close()
        handler.close()  # write the lines still queued (bounded wait: stderr may never drain)


def _run(settings, sock: socket.socket) -> None:
    from vistas.serving.app import create_app

    app = create_app(settings)
    config = uvicorn_config(
        app,
        settings,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours (configure_logging)
        access_log=False,  # vistas.serving.observe logs one structured line per request instead
    )
    server = DrainingServer(config, app, delay_s=settings.shutdown_delay_s)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: the lifespan failed (its error is logged above)


def uvicorn_config(app, settings=None, **kwargs) -> uvicorn.Config:
    """uvicorn's Config as vistas runs it (`vistas serve` and `running_server` alike).

    * `http`: uvicorn's h11 protocol plus a deadline on request headers (header_timeout_s).
    * `proxy_headers=False`: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1
      (or from $FORWARDED_ALLOW_IPS, "*" included), so a client on the same host could pick
      its address for the rate limits; the app does it only for `trusted_proxies`.
    """
    from vistas.serving.header_timeout import header_timeout_protocol
    from vistas.serving.settings import Settings

    settings = settings if settings is not None else Settings()
    kwargs.setdefault("timeout_graceful_shutdown", settings.shutdown_timeout_s)
    return uvicorn.Config(app, http=header_timeout_protocol(settings.header_timeout_s), proxy_headers=False, **kwargs)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT starts a drain (see the module docstring).

    uvicorn re-raises the signal it caught once it has shut down, so the process would die
    of SIGTERM; a drained shutdown is a clean exit, so the signal is not recorded.

    uvicorn installs `handle_exit` with signal.signal, so it runs in the main thread between
    any two bytecodes of whatever that thread was doing: inside a log call, a thread start,
    a metric update, each holding a lock that the drain (which logs, starts a timer and sets
    a gauge) would take again and wait on forever. The handler only hands the signal to the
    event loop, which acts on it at its next iteration.
    """

    def __init__(self, config: uvicorn.Config, app, *, delay_s: float = 0.0):
        super().__init__(config)
        self.app = app
        self.delay_s = delay_s
        self._timer: threading.Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and sockets:  # uvicorn names the address only of sockets it bound itself
            host, port = self.config.host, sockets[0].getsockname()[1]
            url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", url)

    def handle_exit(self, sig: int, frame) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            # A context of its own: the one current here may be a request's, whose id the drain's
            # log line would then carry.
            loop.call_soon_threadsafe(self._on_signal, sig, context=contextvars.Context())
        else:  # before the loop runs or after it stopped: nothing of ours can be mid-call
            self._on_signal(sig)

    def _on_signal(self, sig: int) -> None:
        if self._timer is not None or self.should_exit:  # a second signal: stop waiting
            if self._timer is not None:
                self._timer.cancel()
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a third Ctrl-C gives up on the requests in flight
            self.should_exit = True
            return
        begin_drain(self.app)
        if self.delay_s > 0:
            log.info("draining: still serving for %.1f s (shutdown_delay_s), then finishing", self.delay_s)
            self._timer = threading.Timer(self.delay_s, self._stop)
            self._timer.start()
        else:
            self.should_exit = True

    def _stop(self) -> None:
        self.should_exit = True


@dataclass
class LiveServer:
    url: str
    app: object
    uvicorn: object = None  # the uvicorn.Server (its server_state lists open connections)


@contextmanager
def running_server(
    app, *, host: str = "127.0.0.1", timeout: float = 60, wait_ready: bool = True
) -> Iterator[LiveServer]:
    """A real uvicorn server for `app` on a free port, in a background thread (tests, benchmarks).

    Returns once /ready stops answering 503 (models loaded), or once listening without
    `wait_ready`; on exit the app drains like on SIGTERM.
    """
    import httpx

    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose `proto` says
    # TCP, and a bare socket.socket() says 0; without it, Nagle's algorithm and delayed ACKs
    # add ~40 ms to every keep-alive request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((host, 0))  # the OS picks a free port; uvicorn serves on this very socket
    port = sock.getsockname()[1]
    settings = getattr(getattr(app, "state", None), "settings", None)  # a vistas app's; else defaults
    srv = uvicorn.Server(
        uvicorn_config(app, settings, log_level="warning", lifespan="on", timeout_graceful_shutdown=30)
    )
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while not (srv.started and (not wait_ready or _ready(httpx, url))):
        if not thread.is_alive() or time.monotonic() > deadline:
            srv.should_exit = True
            raise RuntimeError(f"the server did not start and become ready within {timeout:.0f} s")
        time.sleep(0.02)
    try:
        yield LiveServer(url=url, app=app, uvicorn=srv)
    finally:
        if hasattr(getattr(app, "state", None), "phase"):  # a vistas app: /ready turns 503 first
            begin_drain(app)
        srv.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _ready(httpx, url: str) -> bool:
    try:
        status = httpx.get(f"{url}/ready", timeout=5).status_code
    except httpx.TransportError:
        return False
    return status != 503  # 200, or an app without /ready (404) or behind auth (401)

"""The server's life: loading -> ready -> draining, and the lifespan that moves it along.

    loading    models are being loaded (only seen with `load_in_background`: otherwise
               the server does not listen before they are in); /ready is 503 `loading`.
    ready      /ready is 200.
    draining   SIGTERM arrived (`begin_drain`, called by vistas.serving.server): /ready is 503
               `draining` so load balancers stop sending, while every request already
               accepted, queued or running still gets its answer.

Collections live under `settings.index_path()` (by default `<data_dir>/index`). A collection that
cannot be opened is reported, not fatal (vistas.index.registry); an index directory that cannot
be used at all (no permission) leaves the embedding routes serving and the collection routes
answering 503 `no_index` with the reason.

At shutdown the batching queues are drained before the runtimes are released, and the
collections write their FAISS snapshots.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from vistas.index import Collections
from vistas.inference.model import load_models
from vistas.serving.batching import BatchingRuntime
from vistas.serving.settings import Settings

log = logging.getLogger("vistas.serving")

LOADING, READY, DRAINING = "loading", "ready", "draining"


def set_phase(app: FastAPI, phase: str) -> None:
    app.state.phase = phase
    app.state.metrics.ready.set(1 if phase == READY else 0)


def begin_drain(app: FastAPI) -> None:
    """From now on /ready answers 503; nothing else changes until the server stops accepting."""
    if app.state.phase != DRAINING:
        log.info("draining: /ready now answers 503; in-flight and queued requests will finish")
        set_phase(app, DRAINING)


def _load(app: FastAPI, settings: Settings) -> None:
    batching, observer = settings.batch_config(), app.state.metrics.batch_observer

    def batched(runtime, name: str):  # each model gets its own batching queues and metrics
        return BatchingRuntime(runtime, batching, name=name, observer=observer(name)) if batching else runtime

    models = load_models(
        settings.bundles,
        options=settings.ort_options(),
        max_batch=settings.inference_batch_size,
        cache_size=settings.classify_cache_size,
        wrap=batched,
        runtime=settings.runtime,
    )
    app.state.metrics.watch_queues(models)
    app.state.models = models


def lifespan_for(settings: Settings):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        # Every request in progress holds at most one thread (admission caps them), so none
        # waits for a thread behind requests that wait for their batch.
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(40, settings.max_concurrent_requests)
        owned_models = state.models is None
        state.load_error = None
        loader = None
        if not owned_models:
            state.metrics.watch_queues(state.models)
        if owned_models:
            set_phase(app, LOADING)
            if settings.load_in_background:
                loader = threading.Thread(target=_load_logged, args=(app, settings), name="model-loader", daemon=True)
                loader.start()
            else:
                await run_in_threadpool(_load, app, settings)
        owned_collections = state.collections is None
        if owned_collections:
            state.collections = await run_in_threadpool(_open_collections, app, settings)
        state.metrics.watch_collections(lambda: state.collections)
        if loader is None:
            set_phase(app, READY)
        try:
            yield
        finally:
            begin_drain(app)
            if loader is not None:
                loader.join()
            if owned_models and state.models:
                # Uvicorn has finished the requests it accepted; this drains anything still queued.
                for model in state.models.values():
                    await run_in_threadpool(model.close)
            if owned_collections and state.collections is not None:
                state.collections.close()  # writes the FAISS snapshots: a fast start next time

    return lifespan


def _open_collections(app: FastAPI, settings: Settings) -> Collections | None:
    root = settings.index_path()
    try:
        collections = Collections(root)
    except OSError as e:  # the root itself: no permission, a read-only or full file system
        app.state.collections_error = f"the index directory {str(root)!r} cannot be used ({e})"
        log.error("collections are off: %s; set index_dir (VISTAS_INDEX_DIR) or data_dir (VISTAS_DATA_DIR) "
                  "to a writable directory", app.state.collections_error)
        return None
    unavailable = collections.unavailable()
    log.info("collections in %s: %d served%s", root, len(collections.names()),
             f", {len(unavailable)} unavailable ({', '.join(unavailable)})" if unavailable else "")
    return collections


def _load_logged(app: FastAPI, settings: Settings) -> None:
    try:
        _load(app, settings)
    except Exception as e:
        log.exception("loading the models failed; /ready stays 503")
        app.state.load_error = f"{type(e).__name__}: {e}"
        return
    if app.state.phase == LOADING:
        set_phase(app, READY)
    log.info("models loaded: %s", ", ".join(app.state.models))
